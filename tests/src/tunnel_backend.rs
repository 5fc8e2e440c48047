//! The tunnel e2e test's backend (`src/bin/tunnel-backend.rs`) as objects of a hosted cluster:
//! its certificate, Deployment and Service, and the webhook and APIService that point at it.
use anyhow::Result;
use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

pub const NAME: &str = "tunnel-backend";
pub const GROUP: &str = "e2e.nestplane.io";
pub const VERSION: &str = "v1alpha1";
/// Objects with this label set to "true" are refused by the webhook.
pub const REJECT_LABEL: &str = "nestplane.io/e2e-reject";
const PORT: i32 = 8443;

/// A CA of the test's own and the backend's serving certificate, for its Service's name.
pub struct Certificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Certificates {
    pub fn issue(namespace: &str) -> Result<Certificates> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "nestplane e2e backend CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let service = format!("{NAME}.{namespace}.svc");
        let leaf = CertificateParams::new(vec![service.clone(), format!("{service}.cluster.local")])?;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Certificates {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The backend and what points at it, in apply order.
pub fn objects(namespace: &str, image: &str, certs: &Certificates) -> Result<Vec<Value>> {
    let labels = json!({ "app": NAME });
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let env =
        |name: &str, path: &str| json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    let service = json!({ "namespace": namespace, "name": NAME, "port": 443 });
    Ok(vec![
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": NAME, "namespace": namespace },
            "type": "kubernetes.io/tls",
            "data": { "tls.crt": b64(&certs.cert_pem), "tls.key": b64(&certs.key_pem) },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": NAME, "namespace": namespace },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "containers": [{
                            "name": NAME,
                            "image": image,
                            "args": ["--cert", "/tls/tls.crt", "--key", "/tls/tls.key", "--addr", format!("0.0.0.0:{PORT}")],
                            "env": [env("POD_NAME", "metadata.name"), env("NODE_NAME", "spec.nodeName")],
                            "ports": [{ "name": "https", "containerPort": PORT }],
                            "readinessProbe": { "httpGet": { "path": "/healthz", "port": PORT, "scheme": "HTTPS" }, "periodSeconds": 2 },
                            "volumeMounts": [{ "name": "tls", "mountPath": "/tls", "readOnly": true }],
                        }],
                        "volumes": [{ "name": "tls", "secret": { "secretName": NAME } }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": NAME, "namespace": namespace },
            "spec": { "selector": labels, "ports": [{ "port": 443, "targetPort": PORT }] },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": NAME },
            "webhooks": [{
                "name": format!("reject.{GROUP}"),
                "clientConfig": {
                    "service": { "namespace": namespace, "name": NAME, "path": "/validate", "port": 443 },
                    "caBundle": b64(&certs.ca_pem),
                },
                "rules": [{
                    "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                    "resources": ["configmaps"], "scope": "Namespaced",
                }],
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
                // Fail closed: an unmarked object is admitted only if the webhook answered.
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 15,
            }],
        }),
        json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": { "name": format!("{VERSION}.{GROUP}") },
            "spec": {
                "group": GROUP, "version": VERSION,
                "service": service,
                "caBundle": b64(&certs.ca_pem),
                "groupPriorityMinimum": 1000, "versionPriority": 15,
            },
        }),
    ])
}
