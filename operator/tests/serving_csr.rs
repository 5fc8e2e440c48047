//! A worker's kubelet serving CSRs against a real kube-apiserver (`Node,RBAC` as a hosted one
//! runs): CSRs posted as the Node itself, through the API's own field selector and approval
//! subresource, as the Worker pass does it with the hosted cluster's admin client.
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use anyhow::{Context as _, Result, anyhow, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use nestplane::controllers::worker::serving_csr::{
    APPROVAL_REASON, KUBELET_SERVING_SIGNER, Outcome, ServingIdentity, approve_serving_csrs,
};
use nestplane_testenv::TestEnv;
use serde_json::json;

const NODE: &str = "pool-abcde";
const SERVER_ID: &str = "0f3c7e8a-5b7d-4a8e-9d61-2b1f4c6a9e10";
const SERVER_IP: &str = "172.31.250.17";

#[test]
fn serving_csrs_of_a_worker_on_a_real_api_server() -> Result<()> {
    let Some(mut env) = TestEnv::start("serving-csr") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let admin = env.client().await;
        approves_the_workers_own_request_only(&env, &admin).await
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

async fn approves_the_workers_own_request_only(env: &TestEnv, admin: &Client) -> Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": NODE },
        "spec": { "providerID": format!("openstack:///{SERVER_ID}") },
    }))?;
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await?;
    // The provider ID as the Worker pass reads it from the registered Node.
    let provider_id = Api::<Node>::all(admin.clone())
        .get(NODE)
        .await?
        .spec
        .and_then(|s| s.provider_id);
    let identity = ServingIdentity {
        node_name: NODE.into(),
        provider_id: format!("openstack:///{SERVER_ID}"),
        addresses: vec![SERVER_IP.parse()?],
    };

    let kubelet = client_as_node(env, NODE).await?;
    let good = post(&kubelet, &[NODE, SERVER_IP]).await?;
    let foreign_ip = post(&kubelet, &[NODE, "10.0.0.1"]).await?;
    let other_node = post(
        &client_as_node(env, "pool-zzzzz").await?,
        &["pool-zzzzz", SERVER_IP],
    )
    .await?;

    let outcomes = approve_serving_csrs(admin, &identity, provider_id.as_deref(), now()).await?;
    ensure!(
        outcomes.contains(&Outcome::Approved { csr: good.clone() }),
        "the kubelet's own request was not approved: {outcomes:?}"
    );
    ensure!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::LeftPending { csr, reason } if *csr == foreign_ip && reason.contains("10.0.0.1"))),
        "the request for an address the server does not have was not reported: {outcomes:?}"
    );
    ensure!(
        outcomes.len() == 2,
        "another Node's request was judged: {outcomes:?}"
    );

    let csrs = Api::<CertificateSigningRequest>::all(admin.clone());
    ensure!(
        approval(&csrs.get(&good).await?) == Some(APPROVAL_REASON.to_string()),
        "CSR {good} has no Approved condition"
    );
    for pending in [&foreign_ip, &other_node] {
        let csr = csrs.get(pending).await?;
        ensure!(
            csr.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(Vec::is_empty),
            "CSR {pending} was decided: {:?}",
            csr.status
        );
    }

    let again = approve_serving_csrs(admin, &identity, provider_id.as_deref(), now()).await?;
    ensure!(
        again
            == vec![Outcome::LeftPending {
                csr: foreign_ip.clone(),
                reason: reason_of(&outcomes, &foreign_ip)?,
            }],
        "a second pass approved or judged again what was decided: {again:?}"
    );
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn reason_of(outcomes: &[Outcome], name: &str) -> Result<String> {
    outcomes
        .iter()
        .find_map(|o| match o {
            Outcome::LeftPending { csr, reason } if csr == name => Some(reason.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no outcome for {name}"))
}

fn approval(csr: &CertificateSigningRequest) -> Option<String> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Approved" && c.status == "True")
        .and_then(|c| c.reason.clone())
}

/// A client that the API server takes for the kubelet of `node` (the admin impersonates it, as
/// the node's client certificate would authenticate it).
async fn client_as_node(env: &TestEnv, node: &str) -> Result<Client> {
    let mut kubeconfig = Kubeconfig::read_from(env.admin_kubeconfig())?;
    for named in &mut kubeconfig.auth_infos {
        if let Some(user) = named.auth_info.as_mut() {
            user.impersonate = Some(format!("system:node:{node}"));
            user.impersonate_groups = Some(vec!["system:nodes".into(), "system:authenticated".into()]);
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Posts a serving CSR as the kubelet makes it (ECDSA key, CN and O of the Node, its names);
/// returns its name.
async fn post(kubelet: &Client, sans: &[&str]) -> Result<String> {
    let username = kubelet_user(kubelet).await?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(
        sans.iter()
            .filter(|s| s.parse::<std::net::IpAddr>().is_err())
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )?;
    for ip in sans.iter().filter_map(|s| s.parse().ok()) {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, username);
    let request = params.serialize_request(&key)?.pem()?;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": { "generateName": "csr-" },
        "spec": {
            "request": ByteString(request.into_bytes()),
            "signerName": KUBELET_SERVING_SIGNER,
            "usages": ["digital signature", "server auth"],
        },
    }))?;
    let created = Api::<CertificateSigningRequest>::all(kubelet.clone())
        .create(&PostParams::default(), &csr)
        .await
        .context("a Node cannot post a CSR")?;
    Ok(created.name_any())
}

/// Who the API server takes `client` for.
async fn kubelet_user(client: &Client) -> Result<String> {
    let review: serde_json::Value = client
        .request(
            http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&json!({
                    "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"
                }))?)?,
        )
        .await?;
    review["status"]["userInfo"]["username"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no username in {review}"))
}
