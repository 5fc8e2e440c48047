//! Kubeconfig Secrets, rendered from the PKI plan's kubeconfigs: the admin's (external endpoint)
//! and those of the controller manager and scheduler (the API server's in-cluster Service).
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use nestplane_pki::{CertKeyPair, PlannedKubeconfig};

use super::BuildError;
use super::secrets::{TLS_CERT, TLS_KEY, secret};
use crate::api::HostedCluster;

/// Key of the kubeconfig file in its Secret (`status.kubeconfigSecretRef.key`).
pub const KUBECONFIG_KEY: &str = "value";
/// Annotation: hash of the CA the kubeconfig embeds, so a new CA rebuilds it.
pub const CA_HASH_ANNOTATION: &str = "nestplane.io/ca-hash";
/// Annotation: the server URL the kubeconfig points at, so a moved endpoint rebuilds it.
pub const SERVER_ANNOTATION: &str = "nestplane.io/server";

/// True when a stored kubeconfig Secret still embeds this CA and points at this server.
/// (Whether its client certificate is still good is for `pki::check`.)
pub fn is_current(secret: &Secret, plan: &PlannedKubeconfig, ca_hash: &str) -> bool {
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    annotations.get(CA_HASH_ANNOTATION).map(String::as_str) == Some(ca_hash)
        && annotations.get(SERVER_ANNOTATION) == Some(&plan.server)
}

/// A kubeconfig Secret: the file under `value`, the client pair beside it (for `pki::check`),
/// annotated with the CA hash and the server.
pub fn kubeconfig_secret(
    hc: &HostedCluster,
    plan: &PlannedKubeconfig,
    ca: &CertKeyPair,
    ca_hash: &str,
    client: &CertKeyPair,
) -> Result<Secret, BuildError> {
    let kubeconfig = plan.render(&ca.cert_pem, client);
    let data = BTreeMap::from([
        (KUBECONFIG_KEY.to_string(), ByteString(kubeconfig.into_bytes())),
        (
            TLS_CERT.to_string(),
            ByteString(client.cert_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY.to_string(),
            ByteString(client.key_pem.clone().into_bytes()),
        ),
    ]);
    let annotations = BTreeMap::from([
        (CA_HASH_ANNOTATION.to_string(), ca_hash.to_string()),
        (SERVER_ANNOTATION.to_string(), plan.server.clone()),
    ]);
    secret(hc, plan.role.into(), "Opaque", data, annotations)
}

#[cfg(test)]
mod tests {
    use nestplane_pki as pki;

    use super::*;
    use crate::builders::pki_plan;
    use crate::builders::testing::{hosted_cluster, inputs};

    #[test]
    fn secret_records_the_ca_and_server_it_embeds() {
        let hc = hosted_cluster();
        let now = time::OffsetDateTime::now_utc();
        let ca = pki::generate_ca("kubernetes", now, time::Duration::days(10)).expect("ca");
        let plan = pki_plan::plan(&hc, &inputs().endpoint, inputs().apiserver_port).expect("plan");
        let admin = &plan.kubeconfigs[0];
        let client = pki::issue_leaf(&ca, &admin.client, now, time::Duration::days(1)).expect("leaf");
        let hash = pki::ca_cert_hash(&ca.cert_pem).expect("hash");
        let secret = kubeconfig_secret(&hc, admin, &ca, &hash, &client).expect("build");
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-kubeconfig"));
        assert!(is_current(&secret, admin, &hash));
        assert!(!is_current(&secret, admin, "sha256:other"));
        let moved = PlannedKubeconfig {
            server: "https://192.0.2.3:31443".into(),
            ..admin.clone()
        };
        assert!(!is_current(&secret, &moved, &hash));
        let text = String::from_utf8(secret.data.expect("data")[KUBECONFIG_KEY].0.clone()).expect("utf8");
        assert!(text.contains("server: \"https://192.0.2.2:31443\""), "{text}");
        assert!(text.contains("- name: \"demo\""), "{text}");
    }
}
