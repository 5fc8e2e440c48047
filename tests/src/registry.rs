//! The test cloud's registry mirror (`hack/openstack/registry.sh`, started by
//! `make openstack-up`): workers reach nothing but this machine, so a NodePool that runs the
//! operator's own image on its workers (the tunnel agent) names this mirror for the image's
//! registry, with the mirror's CA, and `make operator-up` pushes the image there.

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use nestplane_api::RegistryMirror;

use crate::operator_namespace;

/// The registry the operator image is named under; the mirror serves its paths.
pub const MIRRORED_REGISTRY: &str = "ghcr.io";
/// The mirror on the provider network's gateway (`OS_NET_GATEWAY` in hack/network.env,
/// `PORT_REGISTRY` in hack/openstack/lib.sh): where guests reach this machine.
pub const ENDPOINT: &str = "https://172.31.250.1:5443";
/// The CA that signs the mirror's certificate, made once per machine.
pub const DEFAULT_CA: &str = "/var/lib/nestplane/registry/ca.crt";
/// The operator's Deployment and its container: the chart's release name.
const OPERATOR: &str = "nestplane";

/// Path of the mirror's CA certificate (`NESTPLANE_E2E_REGISTRY_CA`, default [`DEFAULT_CA`]).
pub fn ca_path() -> String {
    std::env::var("NESTPLANE_E2E_REGISTRY_CA").unwrap_or_else(|_| DEFAULT_CA.into())
}

/// The mirror's CA certificate (PEM).
pub fn ca_pem() -> Result<String> {
    let path = ca_path();
    std::fs::read_to_string(&path).with_context(|| {
        format!("no registry CA at {path}: start the test cloud's registry with `make openstack-up`")
    })
}

/// The mirror entry for a NodePool's `spec.registryMirrors`: `ghcr.io` through [`ENDPOINT`],
/// trusting the mirror's CA (`pool.spec.registry_mirrors = vec![registry::mirror()?]`).
pub fn mirror() -> Result<RegistryMirror> {
    Ok(RegistryMirror {
        registry: MIRRORED_REGISTRY.into(),
        endpoints: vec![ENDPOINT.into()],
        ca_bundle: Some(ca_pem()?),
    })
}

/// The image the deployed operator runs (`ghcr.io/nestplane/nestplane:dev-<hash>`), read from its
/// Deployment in the management cluster.
pub async fn operator_image(client: &Client) -> Result<String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), &operator_namespace())
        .get(OPERATOR)
        .await
        .context("the operator's Deployment; install it with `make up`")?;
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == OPERATOR))
        .and_then(|c| c.image)
        .ok_or_else(|| anyhow!("the operator's Deployment has no {OPERATOR} container with an image"))
}

/// The manifest URL under which the mirror serves `image` (`<registry>/<path>:<tag>`, a
/// [`MIRRORED_REGISTRY`] image): `<ENDPOINT>/v2/<path>/manifests/<tag>`.
pub fn manifest_url(image: &str) -> Result<String> {
    let path = image
        .strip_prefix(MIRRORED_REGISTRY)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| anyhow!("{image} is not a {MIRRORED_REGISTRY} image: the mirror does not serve it"))?;
    let (repository, tag) = path
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .ok_or_else(|| anyhow!("{image} has no tag"))?;
    Ok(format!("{ENDPOINT}/v2/{repository}/manifests/{tag}"))
}

/// Checks that the mirror serves `image` as a worker would ask for it: over TLS verified with the
/// mirror's CA only, an OCI or Docker manifest for its tag.
pub async fn ensure_served(image: &str) -> Result<()> {
    let url = manifest_url(image)?;
    let ca = reqwest::Certificate::from_pem(ca_pem()?.as_bytes()).context("the registry CA")?;
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()?;
    let response = http
        .head(&url)
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .with_context(|| format!("HEAD {url}: is the registry up (`make openstack-up`)?"))?;
    ensure!(
        response.status().is_success(),
        "HEAD {url}: {}; `make operator-up` pushes the operator image when the registry is up",
        response.status()
    );
    Ok(())
}

/// Packages `binary` (a test program built with the tests) as the image `<name>:<hash>` under
/// the mirrored registry and pushes it to the test registry (`hack/push-test-image.sh`), so that a
/// worker pulls it through its mirror. Returns the image reference.
pub async fn push_test_image(binary: &str, name: &str) -> Result<String> {
    let script = crate::repo_root().join("hack/push-test-image.sh");
    let output = tokio::process::Command::new(&script)
        .arg(binary)
        .arg(format!("{MIRRORED_REGISTRY}/nestplane/{name}"))
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let image = String::from_utf8(output.stdout)?.trim().to_string();
    ensure_served(&image).await?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_serves_a_ghcr_image_under_its_path() {
        assert_eq!(
            manifest_url("ghcr.io/nestplane/nestplane:dev-4bfa4b4587b3").expect("url"),
            "https://172.31.250.1:5443/v2/nestplane/nestplane/manifests/dev-4bfa4b4587b3"
        );
        assert!(manifest_url("registry.k8s.io/pause:3.10.1").is_err());
        assert!(manifest_url("ghcr.io/nestplane/nestplane").is_err());
        assert!(manifest_url("ghcr.io.evil.example/nestplane/nestplane:x").is_err());
    }
}
