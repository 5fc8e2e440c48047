//! A worker's kubelet serving certificate, without a VM: a kubelet of the Worker's server (the
//! test acts as it, with the hosted admin impersonating `system:node:<name>`) registers its Node
//! and asks for a serving certificate; the operator approves it and the hosted controller
//! manager signs it with the cluster CA. A request for an address the server does not have stays
//! pending, with an event on the Worker that says why. The Worker shows its Node's readiness and
//! kubelet version.
//!
//! The server is on the test cloud's fake compute host (zone `nestplane-fake`): it goes ACTIVE and
//! nothing boots.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::{NodePool, Worker};
use nestplane_e2e::hosted::{admin_kubeconfig, create_available, eventually, hosted_client, sample};
use nestplane_e2e::kubeadm;
use nestplane_e2e::node_pools::{STEP, create_cloud_secret, pool};
use nestplane_e2e::openstack::clouds_yaml;
use nestplane_e2e::{wait_until, with_temp_namespace};
use serde_json::json;

const POOL: &str = "workers";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const KUBELET_VERSION: &str = "v1.35.4";

#[tokio::test]
async fn a_workers_kubelet_gets_its_serving_certificate() -> Result<()> {
    with_temp_namespace("np-serving-certs", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let hc_name = hc.name_any();
        create_cloud_secret(&client, &ns, "cloud", &clouds_yaml()?).await?;
        Api::<NodePool>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &pool(&ns, POOL, &hc_name, "nestplane", "nestplane.tiny", 1)?,
            )
            .await
            .context("creating the NodePool")?;
        let worker = worker_with_addresses(&client, &ns).await?;
        let status = worker.status.clone().unwrap_or_default();
        let server_id = status.server_id.clone().context("status.serverId")?;
        let node_name = status.node_name.clone().context("status.nodeName")?;
        let address = status.addresses.first().cloned().context("status.addresses")?;

        let admin = admin_kubeconfig(&client, &hc).await?;
        let ca_pem = ca_of(&admin)?;
        let kubelet = client_as_node(&admin, &node_name).await?;
        register_node(&kubelet, &node_name, &server_id).await?;

        // What the kubelet asks for: its name and the server's address.
        let good = post_serving_csr(&kubelet, &node_name, &[node_name.as_str(), address.as_str()]).await?;
        // An address that is not the server's.
        let forged = post_serving_csr(&kubelet, &node_name, &[node_name.as_str(), "192.0.2.99"]).await?;

        let hosted_admin = hosted_client(&admin).await?;
        let csrs = Api::<CertificateSigningRequest>::all(hosted_admin);
        let issued = wait_until(&csrs, &good, STEP, kubeadm::csr_issued).await?;
        let approval = issued
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .find(|c| c.type_ == "Approved")
            .and_then(|c| c.reason.clone());
        ensure!(
            approval.as_deref() == Some("NestplaneWorkerApproved"),
            "CSR {good} was approved by {approval:?}, not by the operator"
        );
        check_serving_certificate(
            &kubeadm::issued_certificate(&issued)?,
            &ca_pem,
            &node_name,
            &address,
        )?;

        let why = not_approved_event(&client, &ns, &worker.name_any()).await?;
        ensure!(
            why.contains(&forged) && why.contains("192.0.2.99"),
            "the event does not say why CSR {forged} was left pending: {why}"
        );
        let forged_now = csrs.get(&forged).await?;
        ensure!(
            forged_now
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(Vec::is_empty),
            "CSR {forged} for an address that is not the server's was decided: {:?}",
            forged_now.status
        );

        // The Worker shows its Node's readiness and kubelet version (`kubectl get wk`).
        let workers = Api::<Worker>::namespaced(client.clone(), &ns);
        eventually(Duration::from_secs(120), || async {
            let status = workers.get(&worker.name_any()).await?.status.unwrap_or_default();
            ensure!(
                status.kubelet_version.as_deref() == Some(KUBELET_VERSION) && status.node_ready.is_some(),
                "Worker status kubeletVersion {:?}, nodeReady {:?}",
                status.kubelet_version,
                status.node_ready
            );
            Ok(())
        })
        .await
    })
    .await
}

/// The pool's only Worker, once it records its server's addresses and Node name.
async fn worker_with_addresses(client: &Client, ns: &str) -> Result<Worker> {
    let workers = Api::<Worker>::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("nestplane.io/node-pool={POOL}"));
    eventually(Duration::from_secs(180), || async {
        let list = workers.list(&selector).await?;
        let worker = list.items.into_iter().next().context("no Worker yet")?;
        let status = worker.status.clone().unwrap_or_default();
        ensure!(
            status.server_id.is_some() && status.node_name.is_some() && !status.addresses.is_empty(),
            "Worker status without server, Node name or addresses: {status:?}"
        );
        Ok(worker)
    })
    .await
}

/// A client the hosted API server takes for the kubelet of `node` (Node authorizer included):
/// the admin, impersonating it.
async fn client_as_node(admin_kubeconfig: &str, node: &str) -> Result<Client> {
    let mut kubeconfig: serde_yaml::Value = serde_yaml::from_str(admin_kubeconfig)?;
    let users = kubeconfig
        .get_mut("users")
        .and_then(|u| u.as_sequence_mut())
        .ok_or_else(|| anyhow!("the admin kubeconfig has no users"))?;
    for user in users.iter_mut().filter_map(|u| u.get_mut("user")) {
        let user = user
            .as_mapping_mut()
            .ok_or_else(|| anyhow!("a kubeconfig user is not a mapping"))?;
        user.insert("as".into(), format!("system:node:{node}").into());
        user.insert(
            "as-groups".into(),
            serde_yaml::to_value(["system:nodes", "system:authenticated"])?,
        );
    }
    hosted_client(&serde_yaml::to_string(&kubeconfig)?).await
}

/// What the kubelet does at registration: its Node with the server as provider ID, and a status
/// with its version.
async fn register_node(kubelet: &Client, name: &str, server_id: &str) -> Result<()> {
    let nodes = Api::<Node>::all(kubelet.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "providerID": format!("openstack:///{server_id}") },
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .context("the kubelet cannot register its Node")?;
    let status = json!({ "status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        }],
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
            "bootID": "", "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("the kubelet cannot report its Node's status")?;
    Ok(())
}

/// Posts a serving CSR as the kubelet's certificate manager makes it (a P-256 key, CN and O of
/// the Node, its names); returns its name.
async fn post_serving_csr(kubelet: &Client, node: &str, sans: &[&str]) -> Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    for san in sans {
        params.subject_alt_names.push(match san.parse() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName((*san).try_into()?),
        });
    }
    let request = params.serialize_request(&key)?.pem()?;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": { "generateName": "csr-" },
        "spec": {
            "request": ByteString(request.into_bytes()),
            "signerName": SERVING_SIGNER,
            "usages": ["digital signature", "server auth"],
        },
    }))?;
    let created = Api::<CertificateSigningRequest>::all(kubelet.clone())
        .create(&PostParams::default(), &csr)
        .await
        .context("the kubelet cannot post a serving CSR")?;
    ensure!(
        created.spec.username.as_deref() == Some(&format!("system:node:{node}")),
        "the CSR was not posted as the Node: {:?}",
        created.spec.username
    );
    Ok(created.name_any())
}

/// The note of the Worker's `ServingCertificateNotApproved` event, once there is one.
async fn not_approved_event(client: &Client, ns: &str, worker: &str) -> Result<String> {
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let selector = ListParams::default().fields(&format!("involvedObject.name={worker}"));
    eventually(Duration::from_secs(120), || async {
        events
            .list(&selector)
            .await?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ServingCertificateNotApproved"))
            .and_then(|e| e.message)
            .ok_or_else(|| anyhow!("no ServingCertificateNotApproved event on Worker {worker}"))
    })
    .await
}

fn ca_of(kubeconfig: &str) -> Result<String> {
    use base64::Engine;
    let parsed: serde_yaml::Value = serde_yaml::from_str(kubeconfig)?;
    let data = parsed["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .context("certificate-authority-data")?;
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(data)?,
    )?)
}

/// The certificate is signed by the hosted cluster's CA, is a server certificate and names the
/// Node and the server's address.
fn check_serving_certificate(der: &[u8], ca_pem: &str, node: &str, address: &str) -> Result<()> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).context("the issued certificate")?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).context("CA PEM")?;
    let ca = ca.parse_x509().context("CA certificate")?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| anyhow!("not signed by the hosted cluster's CA: {e}"))?;
    let server_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.server_auth);
    ensure!(server_auth, "the certificate is not for server auth");
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes)?).to_string()),
                    16 => ips.push(std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes)?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    ensure!(
        dns_names == [node] && ips == [address],
        "the certificate names {dns_names:?} and {ips:?}, not {node} and {address}"
    );
    Ok(())
}
