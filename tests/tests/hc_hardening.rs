//! What a security review of a hosted API server checks: Secrets are stored encrypted in etcd,
//! requests without a credential reach only the health endpoints and kubeadm's discovery
//! ConfigMap, every request is in a size-bounded audit log, kubelets are verified against the
//! cluster CA, several API servers get a PodDisruptionBudget, and a ClusterIP Service on a port
//! of the user's choosing still gives a working control plane.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{
    admin_kubeconfig, available, create_available, eventually, hosted_client, sample,
};
use nestplane_e2e::{kubeconfig_path, wait_until, with_temp_namespace};
use serde_json::json;

/// Where the kubelet keeps a pod's emptyDir volumes on the node the tests run on.
const KUBELET_PODS: &str = "/var/lib/kubelet/pods";

#[tokio::test]
async fn secrets_encrypted_anonymous_limited_requests_audited() -> Result<()> {
    with_temp_namespace("hc-hardening", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let kubeconfig = admin_kubeconfig(&client, &hc).await?;
        let hosted = hosted_client(&kubeconfig).await?;

        secrets_are_encrypted_in_etcd(&client, &ns, &name, &hosted).await?;
        anonymous_requests_reach_health_and_discovery_only(&kubeconfig).await?;
        requests_are_audited_in_a_bounded_log(&client, &ns, &name, &hosted).await?;
        kubelets_are_verified(&client, &ns, &name).await?;
        two_api_servers_get_a_disruption_budget(&client, &ns, &name).await
    })
    .await
}

/// (a) The raw etcd value of a Secret is secretbox ciphertext, without the plaintext.
async fn secrets_are_encrypted_in_etcd(client: &Client, ns: &str, name: &str, hosted: &Client) -> Result<()> {
    let plaintext = "nestplane-e2e-plaintext-value";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "e2e-encrypted" },
        "stringData": { "password": plaintext },
    }))?;
    Api::<Secret>::namespaced(hosted.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await?;
    ensure!(
        Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(&format!("{name}-encryption"))
            .await?
            .is_some(),
        "no Secret {name}-encryption holds the key"
    );

    // The etcd server certificate also authenticates clients, and names localhost.
    let pki = "/etc/kubernetes/pki/etcd";
    let pod = format!("{name}-etcd-0");
    let (cacert, cert, key) = (
        format!("--cacert={pki}/ca.crt"),
        format!("--cert={pki}/server.crt"),
        format!("--key={pki}/server.key"),
    );
    let stored = kubectl(&[
        "-n",
        ns,
        "exec",
        &pod,
        "-c",
        "etcd",
        "--",
        "/usr/local/bin/etcdctl",
        "--endpoints=https://127.0.0.1:2379",
        &cacert,
        &cert,
        &key,
        "get",
        "/registry/secrets/default/e2e-encrypted",
        "--print-value-only",
    ])
    .await?;
    let stored = String::from_utf8_lossy(&stored);
    ensure!(
        stored.starts_with("k8s:enc:secretbox:v1:"),
        "the Secret is not stored encrypted; etcd holds {:?}",
        stored.chars().take(80).collect::<String>()
    );
    ensure!(
        !stored.contains(plaintext),
        "etcd holds the Secret's plaintext value"
    );
    // And it still reads back through the API.
    let read = Api::<Secret>::namespaced(hosted.clone(), "default")
        .get("e2e-encrypted")
        .await?;
    let password = read.data.unwrap_or_default().get("password").map(|v| v.0.clone());
    ensure!(
        password.as_deref() == Some(plaintext.as_bytes()),
        "the Secret does not read back: {password:?}"
    );
    Ok(())
}

/// (b) Without a client certificate: the health checks answer, the API does not (401), and the
/// discovery ConfigMap is authenticated as anonymous and left to RBAC (so not 401).
async fn anonymous_requests_reach_health_and_discovery_only(kubeconfig: &str) -> Result<()> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let mut http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10));
    for der in config.root_cert.iter().flatten() {
        http = http.add_root_certificate(reqwest::Certificate::from_der(der)?);
    }
    let http = http.build()?;
    let base = config.cluster_url.to_string();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{}{path}", base.trim_end_matches('/')));
        async move {
            let response = http
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = response.status().as_u16();
            Ok::<_, anyhow::Error>((status, response.text().await?))
        }
    };

    for path in ["/readyz", "/livez", "/healthz"] {
        let (status, body) = get(path).await?;
        ensure!(
            status == 200 && body.trim() == "ok",
            "anonymous GET {path}: {status} {body:?}"
        );
    }
    for path in ["/api", "/api/v1/namespaces/default/secrets", "/version"] {
        let (status, body) = get(path).await?;
        ensure!(
            status == 401,
            "anonymous GET {path} answered {status}, not 401: {body:?}"
        );
    }
    let path = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    let (status, body) = get(path).await?;
    ensure!(
        status != 401,
        "anonymous GET {path} was not authenticated as anonymous: {status} {body:?}"
    );
    Ok(())
}

/// (c) A request made as the admin is in the audit log on the API server's emptyDir, and the
/// log's rotation keeps it within the volume's size limit.
async fn requests_are_audited_in_a_bounded_log(
    client: &Client,
    ns: &str,
    name: &str,
    hosted: &Client,
) -> Result<()> {
    let marker = "e2e-audited-request";
    let config: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": marker } }))?;
    Api::<ConfigMap>::namespaced(hosted.clone(), "default")
        .create(&PostParams::default(), &config)
        .await?;

    // The request went to one of the API servers (one, unless a rollout is under way).
    let pods = apiserver_pods(client, ns, name).await?;
    let logs: Vec<String> = pods
        .iter()
        .filter_map(|pod| pod.uid())
        .map(|uid| format!("{KUBELET_PODS}/{uid}/volumes/kubernetes.io~empty-dir/audit-log/audit.log"))
        .collect();
    let line = eventually(Duration::from_secs(30), || async {
        for log in &logs {
            let Ok(text) = std::fs::read_to_string(log) else {
                continue;
            };
            let recorded = text
                .lines()
                .find(|l| l.contains(&format!("\"name\":\"{marker}\"")) && l.contains("\"verb\":\"create\""));
            if let Some(line) = recorded {
                return Ok(line.to_string());
            }
        }
        bail!("no audit log of {logs:?} records the create of ConfigMap {marker}")
    })
    .await?;
    let pod = pods.first().context("no kube-apiserver pod")?;
    let event: serde_json::Value = serde_json::from_str(&line)?;
    ensure!(
        event["level"] == "Metadata" && event["user"]["username"] == "kubernetes-admin",
        "unexpected audit event: {line}"
    );

    let args = pod
        .spec
        .as_ref()
        .map(|s| s.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    let flag = |name: &str| -> Result<u64> {
        let prefix = format!("--{name}=");
        args.iter()
            .find_map(|a| a.strip_prefix(&prefix))
            .with_context(|| format!("kube-apiserver has no --{name}"))?
            .parse()
            .with_context(|| format!("--{name}"))
    };
    let (size_mib, backups) = (flag("audit-log-maxsize")?, flag("audit-log-maxbackup")?);
    let limit = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "audit-log"))
        .and_then(|v| v.empty_dir.as_ref())
        .and_then(|e| e.size_limit.as_ref())
        .map(|q| q.0.clone())
        .context("the audit-log volume has no sizeLimit")?;
    let limit_mib: u64 = limit
        .strip_suffix("Mi")
        .with_context(|| format!("sizeLimit {limit} is not in Mi"))?
        .parse()?;
    ensure!(
        backups > 0 && (backups + 1) * size_mib < limit_mib,
        "{backups} backups of {size_mib} MiB and the current file do not fit in {limit}"
    );
    Ok(())
}

/// (d) The running API server verifies kubelets' serving certificates against the cluster CA.
async fn kubelets_are_verified(client: &Client, ns: &str, name: &str) -> Result<()> {
    for pod in apiserver_pods(client, ns, name).await? {
        let args = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].args.clone())
            .unwrap_or_default();
        ensure!(
            args.iter()
                .any(|a| a == "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt"),
            "pod {} runs without --kubelet-certificate-authority: {args:?}",
            pod.name_any()
        );
    }
    Ok(())
}

/// (e) Two API servers: a drain may take one at a time. Back to one: the budget goes, or it
/// would block every drain of that node.
async fn two_api_servers_get_a_disruption_budget(client: &Client, ns: &str, name: &str) -> Result<()> {
    let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let budget_name = format!("{name}-kube-apiserver");
    ensure!(
        budgets.get_opt(&budget_name).await?.is_none(),
        "one API server already has a PodDisruptionBudget"
    );
    let scale = |replicas: i32| {
        let patch = json!({ "spec": { "apiServer": { "replicas": replicas } } });
        let hcs = hcs.clone();
        async move {
            hcs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };

    scale(2).await?;
    let budget = eventually(Duration::from_secs(60), || async {
        budgets
            .get_opt(&budget_name)
            .await?
            .with_context(|| format!("no PodDisruptionBudget {budget_name}"))
    })
    .await?;
    let spec = budget.spec.unwrap_or_default();
    ensure!(
        spec.max_unavailable == Some(IntOrString::Int(1)),
        "maxUnavailable: {:?}",
        spec.max_unavailable
    );
    let selected = spec.selector.and_then(|s| s.match_labels).unwrap_or_default();
    ensure!(
        selected.get("app.kubernetes.io/component").map(String::as_str) == Some("kube-apiserver")
            && selected.get("app.kubernetes.io/instance") == Some(&name.to_string()),
        "the budget selects {selected:?}"
    );
    wait_until(&hcs, name, Duration::from_secs(180), available).await?;

    scale(1).await?;
    eventually(Duration::from_secs(60), || async {
        match budgets.get_opt(&budget_name).await? {
            None => Ok(()),
            Some(_) => bail!("PodDisruptionBudget {budget_name} is still there with one API server"),
        }
    })
    .await?;
    wait_until(&hcs, name, Duration::from_secs(180), available).await?;
    Ok(())
}

/// (f) A ClusterIP Service on port 7443: clients reach the API server on that port, and the
/// cluster becomes Available (its controller manager and scheduler dial the pods' own port).
#[tokio::test]
async fn cluster_ip_service_on_its_own_port_becomes_available() -> Result<()> {
    with_temp_namespace("hc-cluster-ip", |client, ns| async move {
        let mut hc = sample(&ns)?;
        hc.spec.api_server.service.type_ = nestplane_api::ApiServerServiceType::ClusterIP;
        hc.spec.api_server.service.port = Some(7443);
        let hc = create_available(&client, &hc).await?;
        let name = hc.name_any();
        let kubeconfig = admin_kubeconfig(&client, &hc).await?;

        let service = Api::<Service>::namespaced(client.clone(), &ns)
            .get(&format!("{name}-apiserver"))
            .await?;
        let spec = service.spec.unwrap_or_default();
        let port = spec.ports.unwrap_or_default().first().map(|p| p.port);
        ensure!(
            spec.type_.as_deref() == Some("ClusterIP") && port == Some(7443),
            "Service {name}-apiserver: type {:?}, port {port:?}",
            spec.type_
        );
        let endpoint = hc.status.and_then(|s| s.endpoint).unwrap_or_default();
        ensure!(endpoint.ends_with(":7443"), "status.endpoint {endpoint}");

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        for component in ["kube-controller-manager", "kube-scheduler"] {
            let deployment = deployments.get(&format!("{name}-{component}")).await?;
            let status = deployment.status.unwrap_or_default();
            ensure!(
                status.ready_replicas.unwrap_or(0) >= 1,
                "{component} is not ready: {status:?}"
            );
        }
        // The controller manager works through that port: it publishes the hosted cluster's
        // `kube-root-ca.crt` ConfigMap in every namespace. (The ClusterIP is reachable from the
        // management node, where the tests run.)
        let hosted = hosted_client(&kubeconfig).await?;
        eventually(Duration::from_secs(60), || async {
            Ok(Api::<ConfigMap>::namespaced(hosted.clone(), "default")
                .get("kube-root-ca.crt")
                .await?)
        })
        .await?;
        Ok(())
    })
    .await
}

async fn apiserver_pods(client: &Client, ns: &str, name: &str) -> Result<Vec<Pod>> {
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=kube-apiserver");
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    ensure!(!pods.is_empty(), "no kube-apiserver pod for {name}");
    Ok(pods)
}

/// Runs kubectl against the management cluster; returns its standard output.
async fn kubectl(args: &[&str]) -> Result<Vec<u8>> {
    let output = tokio::process::Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig_path()))
        .args(args)
        .output()
        .await
        .context("running kubectl")?;
    ensure!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}
