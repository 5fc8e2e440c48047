//! PKI bundles in Secrets, create-if-absent: CAs are never regenerated; a leaf is reissued only
//! when `nestplane_pki::check` finds it wrong (expiring, broken chain, changed names) or a user
//! annotated its Secret with `nestplane.io/rotate`.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use nestplane_pki::{self as pki, CertKeyPair, LeafSpec, Verdict};
use time::{Duration, OffsetDateTime};

use super::owned;
use crate::api::HostedCluster;
use crate::builders::secrets::{
    self, CA_HASH_ANNOTATION, KUBECONFIG_KEY, ROTATE_ANNOTATION, SecretRole, TLS_CERT, TLS_KEY,
};
use crate::builders::{self, Endpoint, etcd, kube_apiserver};
use crate::error::{Error, KubeContext, Result};

/// Secret data by role, after every Secret exists and is current.
pub type SecretData = BTreeMap<SecretRole, BTreeMap<String, ByteString>>;

/// What changed in this pass, for events and logs.
#[derive(Debug, Default)]
pub struct PkiChanges {
    pub created: Vec<SecretRole>,
    pub reissued: Vec<(SecretRole, String)>,
}

pub struct PkiRequest<'a> {
    pub hc: &'a HostedCluster,
    pub endpoint: &'a Endpoint,
    pub now: OffsetDateTime,
}

impl PkiRequest<'_> {
    fn leaf_validity(&self) -> Duration {
        Duration::days(self.hc.spec.certificates.validity_days.into())
    }
    fn renew_before(&self) -> Duration {
        Duration::days(self.hc.spec.certificates.renew_before_days.into())
    }
}

/// The leaves of a control plane: role, issuing CA, identity.
fn leaves(req: &PkiRequest) -> Result<Vec<(SecretRole, SecretRole, LeafSpec)>> {
    let hc = req.hc;
    let sans = pki::ApiServerSans {
        service_ip: kube_apiserver::kubernetes_service_ip(hc)?,
        dns_domain: hc.spec.network.dns_domain.clone(),
        service_names: kube_apiserver::service_dns_names(hc),
        endpoint_hosts: vec![req.endpoint.host.clone()],
        extra_sans: hc.spec.api_server.extra_sans.clone(),
    };
    let members = etcd::member_dns_names(hc);
    use SecretRole::*;
    Ok(vec![
        (ApiServer, Ca, pki::profiles::apiserver(&sans)),
        (
            ApiServerKubeletClient,
            Ca,
            pki::profiles::apiserver_kubelet_client(),
        ),
        (
            ApiServerEtcdClient,
            EtcdCa,
            pki::profiles::apiserver_etcd_client(),
        ),
        (
            FrontProxyClient,
            FrontProxyCa,
            pki::profiles::front_proxy_client(),
        ),
        (EtcdServer, EtcdCa, pki::profiles::etcd_server(&members)),
        (EtcdPeer, EtcdCa, pki::profiles::etcd_peer(&members)),
    ])
}

pub async fn ensure_pki(client: &kube::Client, req: &PkiRequest<'_>) -> Result<(SecretData, PkiChanges)> {
    let hc = req.hc;
    let cluster = builders::name(hc);
    let api: Api<Secret> = Api::namespaced(client.clone(), &builders::namespace(hc));
    let mut data = SecretData::new();
    let mut changes = PkiChanges::default();

    let ca_validity = Duration::days(hc.spec.certificates.ca_validity_days.into());
    for (role, common_name) in [
        (SecretRole::Ca, "kubernetes"),
        (SecretRole::EtcdCa, "etcd-ca"),
        (SecretRole::FrontProxyCa, "front-proxy-ca"),
    ] {
        let secret = match get(&api, role, &cluster).await? {
            Some(secret) => secret,
            None => {
                let ca = pki::generate_ca(common_name, req.now, ca_validity)?;
                changes.created.push(role);
                create(
                    &api,
                    &secrets::tls_secret(hc, role, &ca, &ca.cert_pem)?,
                    role,
                    &cluster,
                )
                .await?
            }
        };
        data.insert(role, secret.data.unwrap_or_default());
    }

    if get(&api, SecretRole::ServiceAccount, &cluster).await?.is_none() {
        let keys = pki::generate_service_account_keys()?;
        changes.created.push(SecretRole::ServiceAccount);
        create(
            &api,
            &secrets::service_account_secret(hc, &keys)?,
            SecretRole::ServiceAccount,
            &cluster,
        )
        .await?;
    }
    let sa = get(&api, SecretRole::ServiceAccount, &cluster)
        .await?
        .ok_or(Error::MissingField("service-account Secret"))?;
    data.insert(SecretRole::ServiceAccount, sa.data.unwrap_or_default());

    for (role, ca_role, spec) in leaves(req)? {
        let ca = pair_of(&data, ca_role, &cluster)?;
        let existing = get(&api, role, &cluster).await?;
        let verdict = existing.as_ref().map(|s| leaf_verdict(s, &ca, &spec, req));
        let secret = match (existing, verdict) {
            (Some(secret), Some(Verdict::Valid)) => secret,
            (existing, verdict) => {
                let leaf = pki::issue_leaf(&ca, &spec, req.now, req.leaf_validity())?;
                match (existing, verdict) {
                    (Some(_), Some(v)) => changes.reissued.push((role, format!("{v:?}"))),
                    _ => changes.created.push(role),
                }
                let applied =
                    owned::apply(client, &secrets::tls_secret(hc, role, &leaf, &ca.cert_pem)?).await?;
                clear_rotate_request(&api, &applied).await?
            }
        };
        data.insert(role, secret.data.unwrap_or_default());
    }

    ensure_kubeconfigs(client, &api, req, &mut data, &mut changes).await?;
    Ok((data, changes))
}

/// Kubeconfig Secrets for the admin (external endpoint), the controller manager and the scheduler
/// (in-cluster Service). Rebuilt when the embedded CA, the server or the client certificate is stale.
async fn ensure_kubeconfigs(
    client: &kube::Client,
    api: &Api<Secret>,
    req: &PkiRequest<'_>,
    data: &mut SecretData,
    changes: &mut PkiChanges,
) -> Result<()> {
    let hc = req.hc;
    let cluster = builders::name(hc);
    let ca = pair_of(data, SecretRole::Ca, &cluster)?;
    let ca_hash = pki::ca_cert_hash(&ca.cert_pem)?;
    let internal = kube_apiserver::internal_url(hc);
    let external = req.endpoint.url();
    for (role, spec, server, user) in [
        (
            SecretRole::AdminKubeconfig,
            pki::profiles::admin(),
            external.as_str(),
            "admin",
        ),
        (
            SecretRole::ControllerManagerKubeconfig,
            pki::profiles::controller_manager(),
            internal.as_str(),
            "kube-controller-manager",
        ),
        (
            SecretRole::SchedulerKubeconfig,
            pki::profiles::scheduler(),
            internal.as_str(),
            "kube-scheduler",
        ),
    ] {
        let existing = get(api, role, &cluster).await?;
        let current = existing.as_ref().is_some_and(|secret| {
            let annotations = secret.metadata.annotations.clone().unwrap_or_default();
            annotations.get(CA_HASH_ANNOTATION) == Some(&ca_hash)
                && annotations.get(SERVER_ANNOTATION).map(String::as_str) == Some(server)
                && leaf_verdict(secret, &ca, &spec, req) == Verdict::Valid
        });
        let secret = match existing {
            Some(secret) if current => secret,
            existing => {
                let leaf = pki::issue_leaf(&ca, &spec, req.now, req.leaf_validity())?;
                let kubeconfig = pki::kubeconfig(&pki::KubeconfigSpec {
                    cluster_name: &cluster,
                    server,
                    ca_cert_pem: &ca.cert_pem,
                    user_name: user,
                    client: &leaf,
                });
                let mut secret = secrets::kubeconfig_secret(hc, role, &kubeconfig, &ca_hash)?;
                let secret_data = secret.data.get_or_insert_default();
                secret_data.insert(TLS_CERT.into(), ByteString(leaf.cert_pem.into_bytes()));
                secret_data.insert(TLS_KEY.into(), ByteString(leaf.key_pem.into_bytes()));
                secret
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(SERVER_ANNOTATION.into(), server.into());
                match existing {
                    Some(_) => changes.reissued.push((role, "KubeconfigStale".into())),
                    None => changes.created.push(role),
                }
                let applied = owned::apply(client, &secret).await?;
                clear_rotate_request(api, &applied).await?
            }
        };
        data.insert(role, secret.data.unwrap_or_default());
    }
    Ok(())
}

/// Annotation on a kubeconfig Secret: the server URL it points at.
const SERVER_ANNOTATION: &str = "nestplane.io/server";

fn leaf_verdict(secret: &Secret, ca: &CertKeyPair, spec: &LeafSpec, req: &PkiRequest) -> Verdict {
    let rotate = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROTATE_ANNOTATION));
    if rotate {
        return Verdict::Unparseable("rotation requested".into());
    }
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    let pair = CertKeyPair {
        cert_pem: text(TLS_CERT),
        key_pem: text(TLS_KEY),
    };
    pki::check(&pair, &ca.cert_pem, spec, req.now, req.renew_before())
}

/// The certificate and key stored for `role`.
pub fn pair_of(data: &SecretData, role: SecretRole, cluster: &str) -> Result<CertKeyPair> {
    let secret_data = data.get(&role).ok_or(Error::MissingField("PKI Secret"))?;
    let text = |key: &'static str| {
        secret_data
            .get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| Error::SecretKey {
                name: role.secret_name(cluster),
                key,
            })
    };
    Ok(CertKeyPair {
        cert_pem: text(TLS_CERT)?,
        key_pem: text(TLS_KEY)?,
    })
}

/// The admin kubeconfig stored for a cluster.
pub fn admin_kubeconfig(data: &SecretData, cluster: &str) -> Result<String> {
    data.get(&SecretRole::AdminKubeconfig)
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| Error::SecretKey {
            name: SecretRole::AdminKubeconfig.secret_name(cluster),
            key: KUBECONFIG_KEY,
        })
}

/// A rotation request is honoured once: the annotation goes away with the reissue.
async fn clear_rotate_request(api: &Api<Secret>, secret: &Secret) -> Result<Secret> {
    let requested = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROTATE_ANNOTATION));
    if !requested {
        return Ok(secret.clone());
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: null } } });
    api.patch(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .context("clear rotation request on", "Secret", &name)
}

async fn get(api: &Api<Secret>, role: SecretRole, cluster: &str) -> Result<Option<Secret>> {
    let name = role.secret_name(cluster);
    api.get_opt(&name).await.context("get", "Secret", &name)
}

/// Creates a Secret that must not be overwritten (CAs, keys); if another pass created it first,
/// that one wins.
async fn create(api: &Api<Secret>, secret: &Secret, role: SecretRole, cluster: &str) -> Result<Secret> {
    let name = role.secret_name(cluster);
    match api.create(&PostParams::default(), secret).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => get(api, role, cluster)
            .await?
            .ok_or(Error::MissingField("Secret after conflict")),
        Err(source) => Err(source).context("create", "Secret", &name),
    }
}
