//! The objects nestplane keeps inside a hosted cluster, against a real kube-apiserver (with
//! bootstrap-token authentication, as a hosted one runs): a second apply changes nothing, what
//! is no longer built goes, bootstrap tokens rotate, and the RBAC lets a bootstrap token do what
//! `kubeadm join` does and an anonymous client read `cluster-info`, and no more.
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use nestplane::builders::hosted::bootstrap_token::{BootstrapToken, node_pool_selector};
use nestplane::builders::hosted::{HostedInput, HostedObject};
use nestplane::controllers::hosted_objects::{
    self, AddonsStatus, build_objects, delete_bootstrap_tokens, ensure_bootstrap_token, parse_endpoint,
};
use nestplane_testenv::TestEnv;
use serde_json::json;
use time::{Duration, OffsetDateTime};

const TTL: Duration = hosted_objects::BOOTSTRAP_TOKEN_TTL;
const RENEW_BEFORE: Duration = hosted_objects::BOOTSTRAP_TOKEN_RENEW_BEFORE;
const POOL_NAMESPACE: &str = "team-a";

#[test]
fn hosted_objects_on_a_real_api_server() -> Result<()> {
    let Some(mut env) = TestEnv::start("hosted-objects") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let admin = env.client().await;
        let input = input_for(&env)?;
        let token = tokens_rotate_and_go_with_their_pool(&admin).await?;
        second_apply_changes_nothing(&admin, &input).await?;
        objects_no_longer_built_are_pruned_tokens_stay(&admin, &input, &token).await?;
        bootstrap_token_does_what_join_needs(&env, &admin, &token).await?;
        anonymous_reads_cluster_info_only(&env).await
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

/// The builders' input for the test API server, as `resolve` would make it for a hosted one.
fn input_for(env: &TestEnv) -> Result<HostedInput> {
    Ok(HostedInput {
        cluster_name: "demo".into(),
        version: "v1.35.4".into(),
        endpoint: parse_endpoint(env.server()).ok_or_else(|| anyhow!("server {}", env.server()))?,
        ca_pem: env.bundle().ca.cert_pem.clone(),
        service_cidr: nestplane_testenv::SERVICE_CIDR.into(),
        pod_cidr: "10.244.0.0/16".into(),
        dns_domain: "cluster.local".into(),
        dns_service_ip: nestplane::builders::hosted::join::dns_service_ip(nestplane_testenv::SERVICE_CIDR)?,
        cni: nestplane::api::Cni::Flannel,
        image_registry: "registry.k8s.io".into(),
        apiserver_kubelet_client_user: "kube-apiserver-kubelet-client".into(),
        // Applied for real too: the agent's DaemonSet, account and binding are valid objects.
        tunnel: Some(nestplane::builders::tunnel::AgentInput {
            server_url: "https://192.0.2.2:31132".into(),
            image: "ghcr.io/nestplane/nestplane:test".into(),
        }),
    })
}

async fn token_ids(admin: &Client, pool: &str) -> Result<Vec<String>> {
    let secrets = Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .list(&ListParams::default().labels(&node_pool_selector(POOL_NAMESPACE, pool)))
        .await?;
    let mut ids: Vec<String> = secrets
        .items
        .iter()
        .filter_map(BootstrapToken::from_secret)
        .map(|t| t.id)
        .collect();
    ids.sort();
    Ok(ids)
}

/// An expired token is replaced and deleted; a fresh one is kept; one within the renewal window
/// is replaced and kept until it expires; deleting a pool's tokens leaves other pools' alone. Returns a valid token.
async fn tokens_rotate_and_go_with_their_pool(admin: &Client) -> Result<BootstrapToken> {
    let now = OffsetDateTime::now_utc();
    let ensure = |at: OffsetDateTime, pool: &'static str| {
        ensure_bootstrap_token(admin, POOL_NAMESPACE, pool, at, TTL, RENEW_BEFORE)
    };

    let expired = ensure(now - Duration::hours(30), "workers").await?;
    ensure!(expired.expires < now, "a token made 30 hours ago has expired");
    let fresh = ensure(now, "workers").await?;
    ensure!(fresh.id != expired.id, "the expired token was kept");
    ensure!(
        token_ids(admin, "workers").await? == vec![fresh.id.clone()],
        "the expired token was not deleted"
    );
    let again = ensure(now, "workers").await?;
    ensure!(again == fresh, "a fresh token was replaced");

    let other = ensure(now, "other").await?;
    let renewed = ensure(now + TTL - RENEW_BEFORE + Duration::minutes(1), "workers").await?;
    ensure!(
        renewed.id != fresh.id,
        "a token inside the renewal window was kept"
    );
    let mut both = vec![fresh.id.clone(), renewed.id.clone()];
    both.sort();
    ensure!(
        token_ids(admin, "workers").await? == both,
        "a token being replaced must stay until it expires (a server made with it still joins)"
    );

    delete_bootstrap_tokens(admin, POOL_NAMESPACE, "workers").await?;
    ensure!(
        token_ids(admin, "workers").await?.is_empty(),
        "the pool's tokens are left"
    );
    ensure!(
        token_ids(admin, "other").await? == vec![other.id.clone()],
        "another pool's token went with it"
    );
    Ok(other)
}

async fn resource_versions(admin: &Client, objects: &[HostedObject]) -> Result<BTreeMap<String, String>> {
    let mut versions = BTreeMap::new();
    for object in objects {
        let name = object.object.name_any();
        let api: Api<DynamicObject> = match object.object.namespace() {
            Some(ns) => Api::namespaced_with(admin.clone(), &ns, &object.resource),
            None => Api::all_with(admin.clone(), &object.resource),
        };
        let live = api
            .get(&name)
            .await
            .with_context(|| format!("{} {name}", object.resource.kind))?;
        versions.insert(
            format!(
                "{} {}/{name}",
                object.resource.kind,
                object.object.namespace().unwrap_or_default()
            ),
            live.resource_version().unwrap_or_default(),
        );
    }
    Ok(versions)
}

async fn second_apply_changes_nothing(admin: &Client, input: &HostedInput) -> Result<()> {
    let status = hosted_objects::apply(admin, input).await?;
    let objects = build_objects(input)?;
    let first = resource_versions(admin, &objects).await?;
    ensure!(first.len() == objects.len(), "every object exists once applied");
    // Nothing schedules here: no node, so the add-ons wait for workers.
    ensure!(!status.is_ready() && status.waits_for_workers(), "{status:?}");
    let mut kinds: Vec<&str> = status.workloads.iter().map(|w| w.kind.as_str()).collect();
    kinds.sort();
    ensure!(
        kinds == ["DaemonSet", "DaemonSet", "DaemonSet", "Deployment"],
        "kube-proxy, flannel (the default CNI), the tunnel agent and CoreDNS: {kinds:?}"
    );
    let again: AddonsStatus = hosted_objects::apply(admin, input).await?;
    ensure!(again == status);
    let second = resource_versions(admin, &objects).await?;
    let changed: Vec<&String> = first.keys().filter(|k| first.get(*k) != second.get(*k)).collect();
    ensure!(changed.is_empty(), "the second apply wrote {changed:?}");
    Ok(())
}

async fn objects_no_longer_built_are_pruned_tokens_stay(
    admin: &Client,
    input: &HostedInput,
    token: &BootstrapToken,
) -> Result<()> {
    let config_maps = Api::<ConfigMap>::namespaced(admin.clone(), "kube-system");
    let labelled = |name: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": "nestplane" } },
        }))?)
    };
    config_maps
        .create(&PostParams::default(), &labelled("left-over")?)
        .await?;
    let unlabelled: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "someone-elses" } }))?;
    config_maps.create(&PostParams::default(), &unlabelled).await?;

    hosted_objects::apply(admin, input).await?;
    ensure!(
        config_maps.get_opt("left-over").await?.is_none(),
        "a labelled object no longer built was kept"
    );
    ensure!(
        config_maps.get_opt("someone-elses").await?.is_some(),
        "an object without nestplane's label was deleted"
    );
    ensure!(
        token_ids(admin, "other").await? == vec![token.id.clone()],
        "the prune took a NodePool's token"
    );
    Ok(())
}

/// A client for the test API server with `user` (a kubeconfig `user` entry).
async fn client_as(env: &TestEnv, user: serde_json::Value) -> Result<Client> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(&env.bundle().ca.cert_pem);
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "test", "cluster": { "server": env.server(), "certificate-authority-data": ca } }],
        "users": [{ "name": "user", "user": user }],
        "contexts": [{ "name": "test", "context": { "cluster": "test", "user": "user" } }],
        "current-context": "test",
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// What `kubeadm join` does with the token: read kubeadm-config and kubelet-config, get its
/// Node, post a node client CSR. It may not read Secrets.
async fn bootstrap_token_does_what_join_needs(
    env: &TestEnv,
    admin: &Client,
    token: &BootstrapToken,
) -> Result<()> {
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "worker-0" } }))?;
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await?;
    let joining = client_as(env, json!({ "token": token.token() })).await?;
    let config_maps = Api::<ConfigMap>::namespaced(joining.clone(), "kube-system");
    // The authenticator reads token Secrets through a watch: give it a moment.
    let mut last = None;
    for _ in 0..40 {
        match config_maps.get("kubeadm-config").await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    }
    if let Some(error) = last {
        bail!("the bootstrap token cannot read kubeadm-config: {error}");
    }
    config_maps
        .get("kubelet-config")
        .await
        .context("the bootstrap token cannot read kubelet-config")?;
    Api::<Node>::all(joining.clone())
        .get("worker-0")
        .await
        .context("the bootstrap token cannot get Nodes")?;
    let csr = kubelet_client_csr("worker-0")?;
    let created = Api::<CertificateSigningRequest>::all(joining.clone())
        .create(&PostParams::default(), &csr)
        .await
        .context("the bootstrap token cannot post a CSR")?;
    ensure!(
        created.spec.username.as_deref() == Some(&format!("system:bootstrap:{}", token.id)),
        "the CSR was posted as {:?}",
        created.spec.username
    );
    let secrets = Api::<Secret>::namespaced(joining, "kube-system")
        .list(&ListParams::default())
        .await;
    ensure!(
        secrets.as_ref().err().and_then(status_code) == Some(403),
        "the bootstrap token may list Secrets: {:?}",
        secrets.map(|l| l.items.len())
    );
    Ok(())
}

/// A node client CSR as the kubelet makes it during TLS bootstrap.
fn kubelet_client_csr(node: &str) -> Result<CertificateSigningRequest> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key)?.pem()?;
    Ok(serde_json::from_value(json!({
        "metadata": { "generateName": "node-csr-" },
        "spec": {
            "request": ByteString(request.into_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }))?)
}

async fn anonymous_reads_cluster_info_only(env: &TestEnv) -> Result<()> {
    let anonymous = client_as(env, json!({})).await?;
    let cluster_info = Api::<ConfigMap>::namespaced(anonymous.clone(), "kube-public")
        .get("cluster-info")
        .await
        .context("anonymous cannot read cluster-info")?;
    let kubeconfig = cluster_info
        .data
        .and_then(|d| d.get("kubeconfig").cloned())
        .ok_or_else(|| anyhow!("cluster-info has no kubeconfig"))?;
    ensure!(
        kubeconfig.contains(env.server()),
        "cluster-info names another server: {kubeconfig}"
    );
    let denied = Api::<ConfigMap>::namespaced(anonymous, "kube-system")
        .get("kubeadm-config")
        .await;
    ensure!(
        denied.as_ref().err().and_then(status_code) == Some(403),
        "anonymous may read kubeadm-config: {:?}",
        denied.map(|c| c.name_any())
    );
    Ok(())
}
