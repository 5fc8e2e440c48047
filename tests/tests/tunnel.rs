//! The reverse tunnel, as a user of a cloud whose workers the management cluster cannot route to
//! would see it. A HostedCluster starts without the tunnel and one worker VM joins (QEMU zone);
//! the agent's image comes from the test registry through the pool's registry mirror. Then this
//! machine drops every new connection from the management cluster's pods to the worker network
//! (an nftables rule the test installs and removes), and `kubectl logs` to the worker's pod
//! fails. With the tunnel enabled, and the rule still in place, everything a user does through
//! the API server to a worker works again: `kubectl logs -f`, `exec -i`, `port-forward`, `cp`, an
//! admission webhook and an aggregated API served by a pod on the worker. Killing the agent or
//! the API server pod ends open streams and new ones work again soon after; 50 concurrent
//! `kubectl exec` round trips pass through the one agent.
//!
//! Prints the exec round-trip latency through the tunnel against the same exec routed directly
//! (measured before the block, in the same run), and the tunnel server's memory with 50 streams
//! open, as a `tunnel_bench` line.
//!
//! Slow by nature: the guest runs under software emulation (TCG) on this machine.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::{HostedCluster, NodePool};
use nestplane_e2e::hosted::{self, admin_kubeconfig, eventually, hosted_client};
use nestplane_e2e::node_pools::{agree, create_cloud_secret, pool};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::{registry, tunnel_backend, wait_until, with_temp_namespace};
use nestplane_openstack::Client as Nova;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const IMAGE: &str = "nestplane-worker";
const FLAVOR: &str = "nestplane.worker";
const ZONE: &str = "nestplane-qemu";
const POOL: &str = "workers";
const JOIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const STEP_TIMEOUT: Duration = Duration::from_secs(8 * 60);
/// Busybox (a shell, httpd, tar) preloaded on the workers.
const WORKLOAD_IMAGE: &str = "ghcr.io/flannel-io/flannel:v0.28.10";
/// The namespace of the test's workloads in the hosted cluster.
const APP_NAMESPACE: &str = "tunnel-e2e";
const TALKER: &str = "talker";
const AGENT_SELECTOR: &str = "k8s-app=nestplane-tunnel-agent";
const CONCURRENT_EXECS: usize = 50;
const LATENCY_SAMPLES: usize = 15;
/// hack/network.env: the management cluster's pod range and the test cloud's guest network.
const NETWORK_ENV: &str = include_str!("../../hack/network.env");

#[tokio::test]
async fn workers_behind_a_firewall_are_reached_through_the_tunnel() -> Result<()> {
    with_temp_namespace("tunnel", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let mut spec = hosted::sample(&namespace)?;
        spec.spec.api_server.tunnel.enabled = false;
        let hc = hosted::create_available(&client, &spec).await?;
        let name = hc.name_any();
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let created = Api::<NodePool>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &qemu_pool(&namespace, &name)?)
            .await?;
        let kubectl = Kubectl::new(&namespace, &admin_kubeconfig(&client, &hc).await?)?;
        let hosted = hosted_client(&admin_kubeconfig(&client, &hc).await?).await?;

        let workers = agree(&client, &nova, &created, 1).await?;
        let node = node_ready(&hosted, &workers[0].name_any()).await?;
        start_talker(&hosted).await?;

        // Routed directly, before the block: logs work, and the baseline for the latency ratio.
        let direct_logs = kubectl.run(&["logs", TALKER, "--tail=1"]).await?;
        ensure!(
            direct_logs.status.success(),
            "kubectl logs, direct: {}",
            stderr(&direct_logs)
        );
        let direct = exec_latency(&kubectl).await?;

        let block = BlockedWorkerNetwork::install()?;
        let blocked = kubectl
            .run(&["logs", TALKER, "--tail=1", "--request-timeout=20s"])
            .await?;
        ensure!(
            !blocked.status.success(),
            "kubectl logs worked with the worker network blocked and no tunnel: {}",
            stdout(&blocked)
        );
        println!(
            "without the tunnel: kubectl logs fails: {}",
            stderr(&blocked).trim()
        );

        let hc = enable_tunnel(&client, &namespace, &name).await?;
        agent_ready(&hosted).await?;

        logs_follow(&kubectl).await?;
        exec_round_trip(&kubectl, "through the tunnel").await?;
        port_forward(&kubectl).await?;
        copy_both_ways(&kubectl).await?;
        webhook_and_aggregated_api(&hosted, &kubectl, &node).await?;
        let through = exec_latency(&kubectl).await?;
        let memory = concurrent_execs(&client, &hc, &kubectl).await?;
        agent_killed(&hosted, &kubectl).await?;
        api_server_killed(&client, &hc, &kubectl).await?;
        println!(
            "tunnel_bench exec_direct_ms={:.1} exec_tunnel_ms={:.1} exec_tunnel_vs_direct={:.2} \
             tunnel_server_mib_idle={:.1} tunnel_server_mib_{CONCURRENT_EXECS}_streams={:.1}",
            direct.as_secs_f64() * 1e3,
            through.as_secs_f64() * 1e3,
            through.as_secs_f64() / direct.as_secs_f64(),
            memory.0,
            memory.1,
        );
        drop(block);
        Ok(())
    })
    .await
}

fn qemu_pool(namespace: &str, cluster: &str) -> Result<NodePool> {
    let mut pool = pool(namespace, POOL, cluster, "nestplane", FLAVOR, 1)?;
    pool.spec.openstack.image = IMAGE.into();
    pool.spec.openstack.availability_zone = Some(ZONE.into());
    // The agent's image (and the test's backend) come from the test registry.
    pool.spec.registry_mirrors = vec![registry::mirror()?];
    Ok(pool)
}

fn network_env(name: &str) -> Result<&'static str> {
    NETWORK_ENV
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .ok_or_else(|| anyhow!("no {name} in hack/network.env"))
}

/// An nftables table that drops every packet of connections the management cluster's pods open
/// to the worker network (those already open too: the API server keeps its connections to a
/// kubelet), as a tenant network behind NAT would; removed when dropped. Connections the workers
/// open (the kubelet and the agent dialing the API server) still pass, replies included.
struct BlockedWorkerNetwork;

const BLOCK_TABLE: &str = "nestplane_e2e_tunnel";

impl BlockedWorkerNetwork {
    fn install() -> Result<Self> {
        let (pods, workers) = (network_env("POD_CIDR")?, network_env("OS_NET_CIDR")?);
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", BLOCK_TABLE])
            .stderr(Stdio::null())
            .status();
        let rules = format!(
            "table inet {BLOCK_TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    \
             ct original ip saddr {pods} ct original ip daddr {workers} counter drop\n  }}\n}}\n"
        );
        let mut nft = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("running nft")?;
        std::io::Write::write_all(
            nft.stdin.as_mut().ok_or_else(|| anyhow!("nft stdin"))?,
            rules.as_bytes(),
        )?;
        ensure!(nft.wait()?.success(), "nft refused the rules:\n{rules}");
        Ok(BlockedWorkerNetwork)
    }
}

impl Drop for BlockedWorkerNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", BLOCK_TABLE])
            .status();
    }
}

/// kubectl with the hosted cluster's admin kubeconfig, in the test's namespace there.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn new(namespace: &str, kubeconfig: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("nestplane-e2e-{namespace}.kubeconfig"));
        std::fs::write(&path, kubeconfig)?;
        Ok(Kubectl { kubeconfig: path })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", APP_NAMESPACE])
            .args(args)
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.command(args).output().await?)
    }

    /// `kubectl exec -i <pod> -- cat`, stdin and stdout piped.
    fn cat(&self) -> Result<Child> {
        Ok(self
            .command(&["exec", "-i", TALKER, "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn node_ready(hosted: &Client, name: &str) -> Result<Node> {
    let nodes: Api<Node> = Api::all(hosted.clone());
    eventually(JOIN_TIMEOUT, || async {
        let node = nodes.get(name).await?;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        ensure!(ready, "{name} is not Ready");
        Ok(node)
    })
    .await
    .context("the worker's Node becoming Ready")
}

/// A pod on the worker that prints a numbered line every second and serves its name over HTTP.
async fn start_talker(hosted: &Client) -> Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(hosted.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": APP_NAMESPACE } }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(hosted.clone(), APP_NAMESPACE);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": TALKER },
            "spec": {
                "containers": [{
                    "name": TALKER,
                    "image": WORKLOAD_IMAGE,
                    "command": ["/bin/sh", "-c",
                        "mkdir -p /tmp/www && hostname > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && \
                         i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 1; done"],
                    "ports": [{ "containerPort": 8080 }],
                }],
            },
        }))?,
    )
    .await?;
    wait_until(&pods, TALKER, STEP_TIMEOUT, nestplane_e2e::pod_ready)
        .await
        .context("the talker pod on the worker")?;
    Ok(())
}

/// The median time of a `kubectl exec -i … cat` round trip (from starting kubectl to reading
/// back the line it sent) through the hosted API server.
async fn exec_latency(kubectl: &Kubectl) -> Result<Duration> {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let line = format!("sample {i}\n");
        let started = Instant::now();
        let mut cat = kubectl.cat()?;
        let mut stdin = cat.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(line.as_bytes()).await?;
        let mut out = BufReader::new(cat.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut echoed = String::new();
        tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut echoed))
            .await
            .context("kubectl exec did not echo")??;
        samples.push(started.elapsed());
        ensure!(echoed == line, "kubectl exec echoed {echoed:?}");
        drop(stdin);
        let status = tokio::time::timeout(Duration::from_secs(60), cat.wait()).await??;
        ensure!(status.success(), "kubectl exec sample {i} failed");
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

async fn enable_tunnel(client: &Client, namespace: &str, name: &str) -> Result<HostedCluster> {
    let api: Api<HostedCluster> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "spec": { "apiServer": { "tunnel": { "enabled": true } } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let apiserver = format!("{name}-kube-apiserver");
    eventually(STEP_TIMEOUT, || async {
        let deployment = deployments.get(&apiserver).await?;
        let containers: Vec<String> = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        ensure!(
            containers.iter().any(|c| c == "tunnel-server"),
            "containers {containers:?}"
        );
        let status = deployment.status.unwrap_or_default();
        ensure!(
            status.updated_replicas == Some(1)
                && status.ready_replicas == Some(1)
                && status.replicas == Some(1),
            "{apiserver} rolling out: {status:?}"
        );
        Ok(())
    })
    .await?;
    let hc = wait_until(&api, name, STEP_TIMEOUT, |hc: Option<&HostedCluster>| {
        hosted::available(hc)
            && hc
                .and_then(|h| h.status.as_ref()?.tunnel_endpoint.as_ref())
                .is_some()
    })
    .await?;
    let endpoint = hc
        .status
        .as_ref()
        .and_then(|s| s.tunnel_endpoint.clone())
        .unwrap_or_default();
    println!("tunnel enabled; agents dial {endpoint}");
    Ok(hc)
}

/// The agent DaemonSet is ready on the worker (its image pulled through the mirror, connected).
async fn agent_ready(hosted: &Client) -> Result<()> {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(hosted.clone(), "kube-system");
    eventually(STEP_TIMEOUT, || async {
        let status = daemon_sets
            .get("nestplane-tunnel-agent")
            .await?
            .status
            .unwrap_or_default();
        ensure!(
            status.desired_number_scheduled == 1 && status.number_ready == 1,
            "agent: {} of {} ready",
            status.number_ready,
            status.desired_number_scheduled
        );
        Ok(())
    })
    .await
    .context("the tunnel agent on the worker")
}

/// `kubectl logs -f` streams: three consecutive ticks arrive, each about a second apart.
async fn logs_follow(kubectl: &Kubectl) -> Result<()> {
    let mut follow = eventually(STEP_TIMEOUT, || async {
        let mut child = kubectl
            .command(&["logs", "-f", TALKER, "--tail=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(out).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("no line from kubectl logs -f")??;
        match first {
            Some(line) => Ok((child, lines, line)),
            None => {
                let output = child.wait_with_output().await?;
                bail!("kubectl logs -f ended: {}", stderr(&output))
            }
        }
    })
    .await?;
    let tick = |line: &str| -> Result<u64> {
        line.strip_prefix("tick ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| anyhow!("not a tick: {line:?}"))
    };
    let mut last = tick(&follow.2)?;
    let started = Instant::now();
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(10), follow.1.next_line())
            .await
            .context("kubectl logs -f stopped following")??
            .ok_or_else(|| anyhow!("kubectl logs -f ended"))?;
        let next = tick(&line)?;
        ensure!(next == last + 1, "tick {next} after {last}");
        last = next;
    }
    println!("kubectl logs -f followed 3 new lines in {:?}", started.elapsed());
    follow.0.kill().await?;
    Ok(())
}

/// `kubectl exec -i … cat`: what goes in on stdin comes back on stdout.
async fn exec_round_trip(kubectl: &Kubectl, how: &str) -> Result<()> {
    let mut cat = kubectl.cat()?;
    let line = format!("round trip {how} {}\n", std::process::id());
    let mut stdin = cat.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(line.as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), cat.wait_with_output())
        .await
        .context("kubectl exec did not end")??;
    ensure!(output.status.success(), "kubectl exec {how}: {}", stderr(&output));
    ensure!(
        stdout(&output) == line,
        "kubectl exec {how} echoed {:?}",
        stdout(&output)
    );
    Ok(())
}

/// `kubectl port-forward` to the talker's httpd: the page names the pod.
async fn port_forward(kubectl: &Kubectl) -> Result<()> {
    let mut forward = kubectl
        .command(&["port-forward", &format!("pod/{TALKER}"), ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = forward.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(out).lines();
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| anyhow!("no port in {line:?}"));
            }
        }
        bail!("kubectl port-forward ended")
    })
    .await
    .context("kubectl port-forward did not listen")??;
    let page = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    ensure!(page.trim() == TALKER, "port-forward served {page:?}");
    forward.kill().await?;
    Ok(())
}

/// `kubectl cp` there and back: 256 KiB of pseudo-random bytes arrive unchanged.
async fn copy_both_ways(kubectl: &Kubectl) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nestplane-e2e-cp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (sent, received) = (dir.join("sent.bin"), dir.join("received.bin"));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&sent, &bytes)?;
    let remote = format!("{TALKER}:/tmp/copied.bin");
    let up = kubectl.run(&["cp", &sent.to_string_lossy(), &remote]).await?;
    ensure!(up.status.success(), "kubectl cp to the pod: {}", stderr(&up));
    let down = kubectl.run(&["cp", &remote, &received.to_string_lossy()]).await?;
    ensure!(
        down.status.success(),
        "kubectl cp from the pod: {}",
        stderr(&down)
    );
    let back = std::fs::read(&received)?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(
        back == bytes,
        "kubectl cp returned {} bytes that differ",
        back.len()
    );
    Ok(())
}

/// A validating webhook and an aggregated API served by one pod on the worker, its image pulled
/// from the test registry through the mirror.
async fn webhook_and_aggregated_api(hosted: &Client, kubectl: &Kubectl, node: &Node) -> Result<()> {
    let image = registry::push_test_image(env!("CARGO_BIN_EXE_tunnel-backend"), "e2e-tunnel-backend").await?;
    let certs = tunnel_backend::Certificates::issue(APP_NAMESPACE)?;
    for object in tunnel_backend::objects(APP_NAMESPACE, &image, &certs)? {
        apply(hosted, &object).await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(hosted.clone(), APP_NAMESPACE);
    eventually(STEP_TIMEOUT, || async {
        let status = deployments
            .get(tunnel_backend::NAME)
            .await?
            .status
            .unwrap_or_default();
        ensure!(status.ready_replicas == Some(1), "backend: {status:?}");
        Ok(())
    })
    .await
    .context("the backend pod on the worker")?;
    let backend_pod = Api::<Pod>::namespaced(hosted.clone(), APP_NAMESPACE)
        .list(&ListParams::default().labels(&format!("app={}", tunnel_backend::NAME)))
        .await?
        .items
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no backend pod"))?;

    // The webhook: a marked ConfigMap is refused with its message, an unmarked one admitted
    // (failurePolicy Fail: admitted only because the webhook answered).
    let config_maps: Api<ConfigMap> = Api::namespaced(hosted.clone(), APP_NAMESPACE);
    let config_map = |name: &str, marked: bool| -> Result<ConfigMap> {
        let mut labels = BTreeMap::new();
        if marked {
            labels.insert(tunnel_backend::REJECT_LABEL.to_string(), "true".to_string());
        }
        Ok(serde_json::from_value(
            json!({ "metadata": { "name": name, "labels": labels } }),
        )?)
    };
    let refused = eventually(STEP_TIMEOUT, || async {
        config_maps
            .create(&PostParams::default(), &config_map("plain", false)?)
            .await
            .context("an unmarked ConfigMap")?;
        match config_maps
            .create(&PostParams::default(), &config_map("marked", true)?)
            .await
        {
            Ok(_) => bail!("the webhook admitted a marked ConfigMap"),
            Err(kube::Error::Api(status)) => Ok(status.message),
            Err(other) => Err(other.into()),
        }
    })
    .await
    .context("the admission webhook on the worker")?;
    ensure!(
        refused.contains("refused by the e2e webhook") && refused.contains(&backend_pod.name_any()),
        "the marked ConfigMap was refused for another reason: {refused}"
    );

    // The aggregated API: the list names the pod and node that served it.
    let raw = eventually(STEP_TIMEOUT, || async {
        let output = kubectl
            .run(&[
                "get",
                "--raw",
                &format!(
                    "/apis/{}/{}/echoes",
                    tunnel_backend::GROUP,
                    tunnel_backend::VERSION
                ),
            ])
            .await?;
        ensure!(output.status.success(), "kubectl get --raw: {}", stderr(&output));
        Ok(stdout(&output))
    })
    .await
    .context("the aggregated API on the worker")?;
    let list: Value = serde_json::from_str(&raw)?;
    ensure!(
        list["items"][0]["metadata"]["name"] == backend_pod.name_any().as_str()
            && list["items"][0]["node"] == node.name_any().as_str(),
        "the aggregated API answered {raw}"
    );
    Ok(())
}

/// Server-side apply of one object of the hosted cluster.
async fn apply(hosted: &Client, object: &Value) -> Result<()> {
    let api_version = object["apiVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("no apiVersion"))?;
    let kind = object["kind"].as_str().ok_or_else(|| anyhow!("no kind"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(hosted, &gvk).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("no name"))?;
    let api: Api<kube::api::DynamicObject> =
        match (capabilities.scope, object["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(hosted.clone(), ns, &resource)
            }
            _ => Api::all_with(hosted.clone(), &resource),
        };
    api.patch(
        name,
        &PatchParams::apply("nestplane-e2e").force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// 50 `kubectl exec -i … cat` at once, all open together through the one agent: each echoes its
/// own line. Returns the tunnel server's memory (MiB) before and while the 50 streams are open.
async fn concurrent_execs(client: &Client, hc: &HostedCluster, kubectl: &Kubectl) -> Result<(f64, f64)> {
    let idle = tunnel_server_memory_mib(client, hc).await?;
    let mut children = Vec::with_capacity(CONCURRENT_EXECS);
    for _ in 0..CONCURRENT_EXECS {
        children.push(kubectl.cat()?);
    }
    let mut opened = Vec::with_capacity(CONCURRENT_EXECS);
    for (i, mut child) in children.into_iter().enumerate() {
        let line = format!("stream {i}\n");
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(line.as_bytes()).await?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        opened.push((i, child, stdin, BufReader::new(out), line));
    }
    // Every stream has echoed its line while all 50 are still open.
    for (i, _, _, out, line) in opened.iter_mut() {
        let mut echoed = String::new();
        tokio::time::timeout(Duration::from_secs(120), out.read_line(&mut echoed))
            .await
            .with_context(|| format!("exec {i} did not echo"))??;
        ensure!(echoed == *line, "exec {i} echoed {echoed:?}");
    }
    let busy = tunnel_server_memory_mib(client, hc).await?;
    // The server's own count: every exec is a stream through the one agent.
    let metrics = tunnel_server_metrics(client, hc).await?;
    let gauge = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    let streams =
        gauge("nestplane_tunnel_streams_open").ok_or_else(|| anyhow!("no open-streams gauge:\n{metrics}"))?;
    let agents = gauge("nestplane_tunnel_agent_connections");
    ensure!(
        streams >= CONCURRENT_EXECS as f64 && agents == Some(1.0),
        "with {CONCURRENT_EXECS} execs open the server counts {streams} streams over {agents:?} agents"
    );
    println!(
        "tunnel server with {CONCURRENT_EXECS} streams open ({streams} relayed, 1 agent): {busy:.1} MiB"
    );
    // The round trips are done; the 50 kubectl processes are stopped. (Closing all 50 stdins at
    // once has left some execs waiting on the API server past kubectl's ping timeout under
    // emulation; a single exec's clean end on closed stdin is checked by exec_round_trip.)
    drop(opened);
    Ok((idle, busy))
}

async fn apiserver_pod(client: &Client, hc: &HostedCluster) -> Result<Pod> {
    let namespace = hc.namespace().unwrap_or_default();
    Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component=kube-apiserver",
            hc.name_any()
        )))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| anyhow!("no kube-apiserver pod"))
}

/// The tunnel server's /metrics, through the management API server's pod proxy.
async fn tunnel_server_metrics(client: &Client, hc: &HostedCluster) -> Result<String> {
    let pod = apiserver_pod(client, hc).await?;
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}:8134/proxy/metrics",
        pod.namespace().unwrap_or_default(),
        pod.name_any()
    );
    Ok(client
        .request_text(http::Request::get(path).body(Vec::new())?)
        .await?)
}

/// The tunnel-server container's working set, from the kubelet's summary (cAdvisor).
async fn tunnel_server_memory_mib(client: &Client, hc: &HostedCluster) -> Result<f64> {
    let pod = apiserver_pod(client, hc).await?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| anyhow!("the kube-apiserver pod is not scheduled"))?;
    let path = format!("/api/v1/nodes/{node}/proxy/stats/summary");
    let summary: Value = serde_json::from_str(
        &client
            .request_text(http::Request::get(path).body(Vec::new())?)
            .await?,
    )?;
    let bytes = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["podRef"]["name"] == pod.name_any().as_str())
        .flat_map(|p| p["containers"].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == "tunnel-server")
        .and_then(|c| c["memory"]["workingSetBytes"].as_f64())
        .ok_or_else(|| anyhow!("no tunnel-server memory in the kubelet's summary"))?;
    Ok(bytes / (1024.0 * 1024.0))
}

/// An exec stream open while its path dies must end (not hang), within `within`.
async fn ends_within(mut cat: Child, within: Duration, what: &str) -> Result<Duration> {
    let started = Instant::now();
    tokio::time::timeout(within, cat.wait())
        .await
        .with_context(|| format!("an open kubectl exec kept hanging after {what}"))??;
    Ok(started.elapsed())
}

/// Waits until a new exec round trip works; returns how long that took.
async fn exec_works_again(kubectl: &Kubectl, how: &str) -> Result<Duration> {
    let started = Instant::now();
    eventually(STEP_TIMEOUT, || exec_round_trip(kubectl, how)).await?;
    Ok(started.elapsed())
}

/// A `kubectl exec -i … cat` that has echoed a first line and stays open (its stdin is returned).
async fn open_exec(kubectl: &Kubectl) -> Result<(Child, tokio::process::ChildStdin)> {
    let mut cat = kubectl.cat()?;
    let mut stdin = cat.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(b"open\n").await?;
    let mut out = BufReader::new(cat.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut first))
        .await
        .context("the exec to hold open did not echo")??;
    ensure!(first == "open\n", "the open exec echoed {first:?}");
    Ok((cat, stdin))
}

/// Deleting the agent pod: an open exec ends, the DaemonSet's new agent connects, and a new exec
/// works soon after it is Ready.
async fn agent_killed(hosted: &Client, kubectl: &Kubectl) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(hosted.clone(), "kube-system");
    let agent = pods
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await?
        .items
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no agent pod"))?;
    let (cat, stdin) = open_exec(kubectl).await?;
    pods.delete(&agent.name_any(), &DeleteParams::default()).await?;
    let ended = ends_within(cat, Duration::from_secs(90), "the agent was deleted").await?;
    agent_ready(hosted).await?;
    let again = exec_works_again(kubectl, "after the agent restarted").await?;
    println!(
        "agent deleted: the open exec ended after {ended:?}; a new exec worked {again:?} after the new agent was Ready"
    );
    drop(stdin);
    Ok(())
}

/// Deleting the kube-apiserver pod (with its tunnel server): an open exec ends, and once the
/// new pod is Ready the agent reconnects and a new exec works.
async fn api_server_killed(client: &Client, hc: &HostedCluster, kubectl: &Kubectl) -> Result<()> {
    let pod = apiserver_pod(client, hc).await?;
    let (cat, stdin) = open_exec(kubectl).await?;
    Api::<Pod>::namespaced(client.clone(), &pod.namespace().unwrap_or_default())
        .delete(&pod.name_any(), &DeleteParams::default())
        .await?;
    let ended = ends_within(cat, Duration::from_secs(90), "the API server pod was deleted").await?;
    let api: Api<HostedCluster> = Api::namespaced(client.clone(), &hc.namespace().unwrap_or_default());
    let name = hc.name_any();
    eventually(STEP_TIMEOUT, || async {
        let new = apiserver_pod(client, hc).await?;
        ensure!(new.name_any() != pod.name_any(), "the old pod is still there");
        ensure!(
            nestplane_e2e::pod_ready(Some(&new)),
            "{} is not Ready",
            new.name_any()
        );
        Ok(())
    })
    .await?;
    let ready_at = Instant::now();
    wait_until(&api, &name, STEP_TIMEOUT, hosted::available).await?;
    exec_works_again(kubectl, "after the API server restarted").await?;
    println!(
        "API server pod deleted: the open exec ended after {ended:?}; a new exec worked {:?} after the new pod was Ready",
        ready_at.elapsed()
    );
    drop(stdin);
    Ok(())
}
