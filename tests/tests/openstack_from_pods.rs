//! The operator runs in a pod of the management cluster and calls the cloud named in a NodePool's
//! clouds.yaml: the test cloud's Keystone (clouds.yaml's `auth_url`) and the public endpoints of
//! its catalog that nestplane's client uses (compute, network, image) answer from such a pod, and
//! their version documents link back to the address the pod used.
//!
//! Needs the management cluster and the test cloud (`make openstack-up`).

use anyhow::{Context, Result, ensure};
use nestplane_e2e::openstack::cloud_config;
use nestplane_e2e::{SMOKE_IMAGE, run_pod, with_temp_namespace};
use nestplane_openstack::client::Auth;
use serde_json::{Value, json};

/// Catalog service types nestplane's client calls, and the path under each public endpoint of a
/// document that needs no token (Glance answers its root with 300 Multiple Choices).
const SERVICES: [(&str, &str); 3] = [("compute", ""), ("network", ""), ("image", "/versions")];

/// The public URL of every service in the catalog of a token for cloud `nestplane`, asked for from
/// this host: `(service type, URL)`.
async fn public_endpoints(auth_url: &str, auth: &Auth) -> Result<Vec<(String, String)>> {
    let Auth::ApplicationCredential { id, secret } = auth else {
        anyhow::bail!("cloud nestplane of the test clouds.yaml holds no application credential");
    };
    let body = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret},
    }}});
    let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
    let response = reqwest::Client::new().post(&url).json(&body).send().await?;
    ensure!(
        response.status().is_success(),
        "POST {url}: {}",
        response.status()
    );
    let token: Value = response.json().await?;
    let catalog = token["token"]["catalog"]
        .as_array()
        .with_context(|| format!("no catalog in the token from {url}"))?;
    Ok(catalog
        .iter()
        .flat_map(|service| {
            let kind = service["type"].as_str().unwrap_or_default().to_owned();
            service["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["interface"] == "public")
                .filter_map(move |e| Some((kind.clone(), e["url"].as_str()?.to_owned())))
        })
        .collect())
}

/// `scheme://host:port` of `url`.
fn origin(url: &str) -> Result<&str> {
    let rest = url
        .split_once("://")
        .with_context(|| format!("{url}: no scheme"))?
        .1;
    let end = rest.find('/').unwrap_or(rest.len());
    Ok(&url[..url.len() - rest.len() + end])
}

#[tokio::test]
async fn cloud_public_endpoints_answer_from_a_pod() -> Result<()> {
    let cloud = cloud_config("nestplane")?;
    let endpoints = public_endpoints(&cloud.auth_url, &cloud.auth).await?;
    let mut probes = vec![("identity".to_owned(), cloud.auth_url.clone())];
    for (kind, path) in SERVICES {
        let url = endpoints
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, url)| url)
            .with_context(|| format!("no public {kind} endpoint in the catalog: {endpoints:?}"))?;
        probes.push((kind.to_owned(), format!("{}{path}", url.trim_end_matches('/'))));
    }

    with_temp_namespace("openstack-reach", |client, ns| async move {
        for (kind, url) in &probes {
            let (phase, logs) = run_pod(&client, &ns, kind, SMOKE_IMAGE, &["fetch", url]).await?;
            ensure!(
                phase == "Succeeded",
                "GET {url} ({kind}) from a pod: {phase}: {logs}"
            );
            ensure!(
                logs.contains("status 200 body {"),
                "GET {url} ({kind}): no JSON answer: {logs}"
            );
            // Clients follow these links (version discovery): they must not lead back to loopback.
            let link = format!("\"href\": \"{}/", origin(url)?);
            ensure!(
                logs.contains(&link),
                "GET {url} ({kind}): no link to {link}: {logs}"
            );
        }
        Ok(())
    })
    .await
}
