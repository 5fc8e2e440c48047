//! The join path of a NodePool's worker, without a VM: the user-data nestplane sent to Nova for
//! the worker's server carries a JoinConfiguration with which the real kubeadm's preflight and
//! discovery succeed against the hosted API server, and with whose bootstrap token a kubelet's
//! node client certificate is approved and signed by the hosted controller manager.
//!
//! The servers are on the test cloud's fake compute host (zone `nestplane-fake`): they go ACTIVE
//! and nothing boots, so kubeadm runs here, in a private mount namespace
//! (`nestplane_e2e::kubeadm`), as root.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use nestplane_api::{NodePool, Worker};
use nestplane_e2e::hosted::{admin_kubeconfig, create_available, eventually, hosted_client, sample};
use nestplane_e2e::kubeadm::{self, MANAGEMENT_NODE_PREFLIGHT_ERRORS};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::{wait_until, with_temp_namespace};
use nestplane_openstack::Compute;
use serde_yaml::Value;

const POOL: &str = "workers";
const CLOUD_SECRET: &str = "cloud";
/// The label that names a Worker's NodePool.
const NODE_POOL_LABEL: &str = "nestplane.io/node-pool";
const JOIN_CONFIG_PATH: &str = "/etc/kubernetes/kubeadm-join.yaml";
/// What cloud-init replaces with the server ID when it renders the user-data.
const INSTANCE_ID: &str = "{{ v1.instance_id }}";
const LABEL: (&str, &str) = ("example.com/pool", "join-path");
const TAINT: (&str, &str, &str) = ("example.com/dedicated", "join-path", "NoSchedule");

#[tokio::test]
async fn a_workers_user_data_joins_the_hosted_cluster() -> Result<()> {
    with_temp_namespace("np-join-path", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let hc_name = hc.metadata.name.clone().context("HostedCluster name")?;
        create_cloud_secret(&client, &ns).await?;
        create_node_pool(&client, &ns, &hc_name).await?;

        let worker = first_worker_with_server(&client, &ns).await?;
        let status = worker.status.clone().unwrap_or_default();
        let server_id = status.server_id.context("status.serverId")?;

        let os = nestplane_openstack::Client::new(cloud_config("nestplane")?)?;
        let server = os
            .get_server(&server_id)
            .await?
            .ok_or_else(|| anyhow!("Worker's server {server_id} is not in Nova"))?;
        // The Node is named after the server; the Worker names it too once it knows it.
        let node_name = server.name.clone();
        if let Some(recorded) = &status.node_name {
            ensure!(
                *recorded == node_name,
                "Worker's nodeName {recorded} is not its server's name {node_name}"
            );
        }
        let user_data = os
            .get_user_data(&server_id)
            .await?
            .ok_or_else(|| anyhow!("server {server_id} has no user-data"))?;
        let join = join_configuration(&String::from_utf8(user_data)?, &server_id)?;

        // What the worker was told: the hosted endpoint, the cluster CA's pin, its own name,
        // the pool's labels and taints, and its server as provider ID.
        let endpoint = hc
            .status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .context("status.endpoint")?;
        let admin = admin_kubeconfig(&client, &hc).await?;
        let ca_pem = ca_of(&admin)?;
        ensure!(
            join.endpoint == endpoint.trim_start_matches("https://"),
            "apiServerEndpoint {} is not the HostedCluster's endpoint {endpoint}",
            join.endpoint
        );
        ensure!(
            join.ca_cert_hashes == vec![kubeadm::ca_cert_hash(&ca_pem)?],
            "caCertHashes {:?} do not pin the hosted cluster's CA",
            join.ca_cert_hashes
        );
        ensure!(
            join.node_name == node_name,
            "node name {} is not the Worker's {node_name}",
            join.node_name
        );
        ensure!(
            join.kubelet_args.get("provider-id") == Some(&format!("openstack:///{server_id}")),
            "provider-id {:?} is not the server's",
            join.kubelet_args.get("provider-id")
        );
        let labels = join.kubelet_args.get("node-labels").cloned().unwrap_or_default();
        ensure!(
            labels.split(',').any(|l| l == format!("{}={}", LABEL.0, LABEL.1)),
            "node-labels {labels:?} lack the pool's label"
        );
        ensure!(
            join.taints
                .contains(&(TAINT.0.into(), TAINT.1.into(), TAINT.2.into())),
            "taints {:?} lack the pool's taint",
            join.taints
        );

        // The real kubeadm: preflight, discovery (the JWS signature of cluster-info checked with
        // the token, the CA against the pin) and the kubeadm-config and kubelet-config reads.
        let run = kubeadm::join(
            &join.text,
            &["phase", "preflight", "--v=1"],
            MANAGEMENT_NODE_PREFLIGHT_ERRORS,
        )
        .await?;
        ensure!(
            run.success,
            "kubeadm join phase preflight failed:\n{}",
            run.output
        );
        ensure!(
            run.output
                .contains("Cluster info signature and contents are valid"),
            "kubeadm did not validate cluster-info:\n{}",
            run.output
        );

        // The kubelet's TLS bootstrap, with the token: approved and signed by the hosted CA.
        let hosted_admin = hosted_client(&admin).await?;
        let bootstrap = kubeadm::bootstrap_client(&endpoint, &ca_pem, &join.token).await?;
        let created = Api::<CertificateSigningRequest>::all(bootstrap)
            .create(&PostParams::default(), &kubeadm::node_client_csr(&node_name)?)
            .await
            .context("creating a node client CSR with the bootstrap token")?;
        let token_id = join.token.split('.').next().unwrap_or_default();
        ensure!(
            created.spec.username.as_deref() == Some(&format!("system:bootstrap:{token_id}")),
            "the CSR was not made as the bootstrap token: {:?}",
            created.spec.username
        );
        let csr_name = created.metadata.name.context("CSR name")?;
        let csrs = Api::<CertificateSigningRequest>::all(hosted_admin);
        let issued = wait_until(&csrs, &csr_name, Duration::from_secs(60), kubeadm::csr_issued).await?;
        check_signed_by(&kubeadm::issued_certificate(&issued)?, &ca_pem, &node_name)
    })
    .await
}

async fn create_cloud_secret(client: &Client, ns: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": CLOUD_SECRET },
        "stringData": { "clouds.yaml": clouds_yaml()? },
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

async fn create_node_pool(client: &Client, ns: &str, cluster: &str) -> Result<()> {
    let pool: NodePool = serde_json::from_value(serde_json::json!({
        "apiVersion": "nestplane.io/v1alpha1",
        "kind": "NodePool",
        "metadata": { "name": POOL, "namespace": ns },
        "spec": {
            "clusterName": cluster,
            "replicas": 1,
            "openstack": {
                "cloudSecretRef": { "name": CLOUD_SECRET },
                "cloud": "nestplane",
                "flavor": "nestplane.tiny",
                "image": "nestplane-tiny",
                "networks": ["nestplane-net"],
                "availabilityZone": "nestplane-fake",
            },
            "nodeLabels": { LABEL.0: LABEL.1 },
            "nodeTaints": [{ "key": TAINT.0, "value": TAINT.1, "effect": TAINT.2 }],
        },
    }))?;
    Api::<NodePool>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pool)
        .await
        .context("creating the NodePool")?;
    Ok(())
}

/// The pool's only Worker, once it records its server.
async fn first_worker_with_server(client: &Client, ns: &str) -> Result<Worker> {
    let workers = Api::<Worker>::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("{NODE_POOL_LABEL}={POOL}"));
    eventually(Duration::from_secs(180), || async {
        let list = workers.list(&selector).await?;
        ensure!(
            list.items.len() == 1,
            "{} Workers of pool {POOL}, expected 1",
            list.items.len()
        );
        let worker = list.items.into_iter().next().context("a Worker")?;
        ensure!(
            worker.status.as_ref().is_some_and(|s| s.server_id.is_some()),
            "Worker without status.serverId: {:?}",
            worker.status
        );
        Ok(worker)
    })
    .await
}

/// The JoinConfiguration a worker reads from its user-data, rendered as cloud-init renders it on
/// server `server_id`.
struct JoinConfiguration {
    text: String,
    endpoint: String,
    token: String,
    ca_cert_hashes: Vec<String>,
    node_name: String,
    taints: Vec<(String, String, String)>,
    kubelet_args: BTreeMap<String, String>,
}

fn join_configuration(user_data: &str, server_id: &str) -> Result<JoinConfiguration> {
    let body = user_data
        .strip_prefix("## template: jinja\n")
        .context("user-data is not a Jinja template: the provider ID could not be filled in")?;
    let document = body
        .strip_prefix("#cloud-config\n")
        .context("user-data is not a cloud-config")?;
    let other_delimiters = document.replacen(INSTANCE_ID, "", 1);
    ensure!(
        !["{{", "{%", "{#"].iter().any(|d| other_delimiters.contains(d)),
        "user-data has template delimiters other than the instance ID"
    );
    let config: Value = serde_yaml::from_str(document).context("user-data is not YAML")?;
    let file = config["write_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|f| f["path"].as_str() == Some(JOIN_CONFIG_PATH))
        .with_context(|| format!("user-data writes no {JOIN_CONFIG_PATH}"))?;
    ensure!(
        file["permissions"].as_str() == Some("0600"),
        "{JOIN_CONFIG_PATH} is not 0600: it holds the token"
    );
    let joins = config["runcmd"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|c| serde_yaml::to_string(c).ok())
        .any(|c| c.contains("kubeadm join --config") && c.contains(JOIN_CONFIG_PATH));
    ensure!(joins, "runcmd does not run kubeadm join with {JOIN_CONFIG_PATH}");

    let text = file["content"]
        .as_str()
        .context("JoinConfiguration content")?
        .replace(INSTANCE_ID, server_id);
    let join: Value = serde_yaml::from_str(&text).context("JoinConfiguration is not YAML")?;
    ensure!(
        join["apiVersion"].as_str() == Some("kubeadm.k8s.io/v1beta4"),
        "apiVersion {:?}",
        join["apiVersion"]
    );
    ensure!(
        join["kind"].as_str() == Some("JoinConfiguration"),
        "kind {:?}",
        join["kind"]
    );
    let discovery = &join["discovery"]["bootstrapToken"];
    let registration = &join["nodeRegistration"];
    let string = |v: &Value, what: &str| v.as_str().map(String::from).with_context(|| format!("no {what}"));
    Ok(JoinConfiguration {
        endpoint: string(&discovery["apiServerEndpoint"], "apiServerEndpoint")?,
        token: string(&discovery["token"], "token")?,
        ca_cert_hashes: serde_yaml::from_value(discovery["caCertHashes"].clone())?,
        node_name: string(&registration["name"], "nodeRegistration.name")?,
        taints: registration["taints"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|t| {
                let field = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (field("key"), field("value"), field("effect"))
            })
            .collect(),
        kubelet_args: registration["kubeletExtraArgs"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["name"].as_str()?.to_string(), a["value"].as_str()?.to_string())))
            .collect(),
        text,
    })
}

/// The hosted cluster's CA, from its admin kubeconfig.
fn ca_of(kubeconfig: &str) -> Result<String> {
    let config: Value = serde_yaml::from_str(kubeconfig)?;
    let data = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .context("admin kubeconfig without certificate-authority-data")?;
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(data)?,
    )?)
}

/// The issued certificate names the Node as the kubelet asked and is signed by the hosted CA.
fn check_signed_by(der: &[u8], ca_pem: &str, node_name: &str) -> Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).context("issued certificate")?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).context("CA PEM")?;
    let ca = ca.parse_x509().context("CA certificate")?;
    cert.verify_signature(Some(ca.public_key()))
        .context("the issued certificate is not signed by the hosted cluster's CA")?;
    let common_names: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    let organizations: Vec<&str> = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    ensure!(
        common_names == [format!("system:node:{node_name}")],
        "CN {common_names:?}"
    );
    ensure!(organizations == ["system:nodes"], "O {organizations:?}");
    Ok(())
}

/// Needs no cluster: the parser above reads the user-data the operator's builder renders (its
/// golden file), so a change of format on either side fails here first.
#[test]
fn reads_the_user_data_the_operator_renders() -> Result<()> {
    const GOLDEN: &str = include_str!("../../operator/src/builders/testdata/user-data.yaml");
    let server_id = "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
    let join = join_configuration(GOLDEN, server_id)?;
    ensure!(join.endpoint == "192.0.2.2:31030", "{}", join.endpoint);
    ensure!(join.token == "abcdef.0123456789abcdef", "{}", join.token);
    ensure!(join.node_name == "workers-x7k2p", "{}", join.node_name);
    ensure!(join.ca_cert_hashes.len() == 1 && join.ca_cert_hashes[0].starts_with("sha256:"));
    ensure!(
        join.kubelet_args.get("provider-id") == Some(&format!("openstack:///{server_id}")),
        "{:?}",
        join.kubelet_args
    );
    ensure!(
        join.taints
            .contains(&("dedicated".into(), "gpu".into(), "NoSchedule".into()))
    );
    ensure!(!join.text.contains(INSTANCE_ID), "the instance ID is filled in");
    Ok(())
}
