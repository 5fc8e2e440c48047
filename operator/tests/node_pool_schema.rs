//! What the NodePool CRD's schema accepts in `registryMirrors`, against a real kube-apiserver
//! (the CEL rules and list-map keys are enforced there, not by the operator).
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use anyhow::{Result, anyhow, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use nestplane::api::NodePool;
use nestplane_testenv::TestEnv;
use serde_json::{Value, json};

#[test]
fn registry_mirrors_schema_on_a_real_api_server() -> Result<()> {
    let Some(mut env) = TestEnv::start("node-pool-schema") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let admin = env.client().await;
        install_crd(&admin).await?;
        accepts_mirrors_and_refuses_what_containerd_cannot_use(&admin).await
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = nestplane::api::node_pool_crd();
    crds.create(&PostParams::default(), &crd).await?;
    let name = crd.name_any();
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(std::time::Duration::from_secs(30), established).await??;
    Ok(())
}

fn pool(mirrors: Value) -> Result<NodePool> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1",
        "kind": "NodePool",
        "metadata": { "name": "workers", "namespace": "default" },
        "spec": {
            "clusterName": "demo",
            "openstack": {
                "cloudSecretRef": { "name": "cloud" },
                "flavor": "m1.small",
                "image": "nestplane-worker",
                "networks": ["net"],
            },
            "registryMirrors": mirrors,
        },
    }))?)
}

/// The API server's answer to creating the pool (a dry run): `Ok(())` or its message.
async fn create(client: &Client, mirrors: Value) -> Result<Result<(), String>> {
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<NodePool>::namespaced(client.clone(), "default")
        .create(&params, &pool(mirrors)?)
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(Err(status.message)),
        Err(other) => Err(anyhow!(other)),
    }
}

async fn accepts_mirrors_and_refuses_what_containerd_cannot_use(client: &Client) -> Result<()> {
    let ca = private_ca()?;
    let good = json!([
        { "registry": "registry.k8s.io", "endpoints": ["https://mirror.example.com/registry.k8s.io", "https://backup.example.com:5000"] },
        { "registry": "docker.io", "endpoints": ["https://mirror.example.com"] },
        { "registry": "registry.example.com:5000", "endpoints": ["https://mirror.example.com"] },
        { "registry": "ghcr.io", "endpoints": ["https://172.31.250.1:5443"], "caBundle": ca },
    ]);
    let answer = create(client, good).await?;
    ensure!(
        answer.is_ok(),
        "mirrors a platform engineer writes were refused: {answer:?}"
    );

    let refused = [
        (
            json!([{ "registry": "ghcr.io", "endpoints": ["http://mirror.example.com"] }]),
            "https URL",
        ),
        (
            json!([{ "registry": "ghcr.io", "endpoints": ["https://user:pw@mirror.example.com"] }]),
            "https URL",
        ),
        (
            json!([{ "registry": "ghcr.io", "endpoints": ["https://mirror.example.com/?x=1"] }]),
            "https URL",
        ),
        (json!([{ "registry": "ghcr.io", "endpoints": [] }]), "endpoints"),
        (
            json!([{ "registry": "https://ghcr.io", "endpoints": ["https://m.example.com"] }]),
            "registry host",
        ),
        (
            json!([{ "registry": "../etc", "endpoints": ["https://m.example.com"] }]),
            "registry host",
        ),
        (
            json!([
                { "registry": "ghcr.io", "endpoints": ["https://m.example.com"] },
                { "registry": "ghcr.io", "endpoints": ["https://n.example.com"] },
            ]),
            "Duplicate",
        ),
        (
            json!([{ "registry": "ghcr.io", "endpoints": ["https://m.example.com"], "caBundle": "MIIB..." }]),
            "caBundle must hold PEM certificates",
        ),
        (
            json!([{
                "registry": "ghcr.io",
                "endpoints": ["https://m.example.com"],
                "caBundle": ca.repeat(16384 / ca.len() + 1),
            }]),
            "Too long",
        ),
    ];
    for (mirrors, says) in refused {
        match create(client, mirrors.clone()).await? {
            Ok(()) => return Err(anyhow!("{mirrors} was accepted")),
            Err(message) => ensure!(message.contains(says), "{mirrors}: {message}"),
        }
    }
    Ok(())
}

/// A CA certificate of a private mirror, as its operator would paste it.
fn private_ca() -> Result<String> {
    let ca = nestplane_pki::generate_ca(
        "mirror-ca",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(30),
    )?;
    Ok(ca.cert_pem)
}
