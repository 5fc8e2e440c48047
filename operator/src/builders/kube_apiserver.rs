//! kube-apiserver: a Deployment and the Service that exposes it.
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::secrets::{SA_PRIVATE_KEY, SA_PUBLIC_KEY, SecretRole, ca_cert, pair, project};
use super::*;
use crate::api::ApiServerServiceType;

const PKI_DIR: &str = "/etc/kubernetes/pki";

pub fn service_name(cluster: &str) -> String {
    format!("{cluster}-apiserver")
}

/// Names of the API server's Service, for the serving certificate.
pub fn service_dns_names(hc: &HostedCluster) -> Vec<String> {
    let service = service_name(&name(hc));
    let ns = namespace(hc);
    vec![
        service.clone(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ]
}

/// URL of the API server from inside the management cluster (controller-manager, scheduler).
pub fn internal_url(hc: &HostedCluster) -> String {
    format!(
        "https://{}.{}.svc:{APISERVER_SERVICE_PORT}",
        service_name(&name(hc)),
        namespace(hc)
    )
}

/// The first address of the service CIDR: the hosted `kubernetes` Service.
pub fn kubernetes_service_ip(hc: &HostedCluster) -> Result<IpAddr, BuildError> {
    let invalid = || BuildError::Invalid {
        what: "service CIDR",
        message: format!("{:?} is not a CIDR", hc.spec.network.service_cidr),
    };
    let (base, _) = hc.spec.network.service_cidr.split_once('/').ok_or_else(invalid)?;
    match base.parse::<IpAddr>().map_err(|_| invalid())? {
        IpAddr::V4(v4) => Ok(IpAddr::from(u32::from(v4).wrapping_add(1).to_be_bytes())),
        IpAddr::V6(v6) => Ok(IpAddr::from(u128::from(v6).wrapping_add(1).to_be_bytes())),
    }
}

pub fn depends_on() -> &'static [Component] {
    &[Component::Etcd]
}

pub fn required_certs() -> &'static [SecretRole] {
    use SecretRole::*;
    &[
        Ca,
        EtcdCa,
        FrontProxyCa,
        ServiceAccount,
        ApiServer,
        ApiServerKubeletClient,
        ApiServerEtcdClient,
        FrontProxyClient,
    ]
}

pub fn args(hc: &HostedCluster, inputs: &Inputs) -> BTreeMap<&'static str, String> {
    let network = &hc.spec.network;
    let pki = |file: &str| format!("{PKI_DIR}/{file}");
    let mut args = BTreeMap::from([
        ("secure-port", inputs.apiserver_port.to_string()),
        ("allow-privileged", "true".to_string()),
        ("authorization-mode", "Node,RBAC".to_string()),
        ("enable-admission-plugins", "NodeRestriction".to_string()),
        ("enable-bootstrap-token-auth", "true".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-private-key-file", pki("apiserver.key")),
        ("kubelet-client-certificate", pki("apiserver-kubelet-client.crt")),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".to_string(),
        ),
        ("etcd-servers", etcd::client_url(hc)),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("apiserver-etcd-client.crt")),
        ("etcd-keyfile", pki("apiserver-etcd-client.key")),
        ("service-cluster-ip-range", network.service_cidr.clone()),
        (
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", network.dns_domain),
        ),
        ("service-account-key-file", pki(SA_PUBLIC_KEY)),
        ("service-account-signing-key-file", pki(SA_PRIVATE_KEY)),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("requestheader-allowed-names", "front-proxy-client".to_string()),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".to_string(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".to_string()),
        ("requestheader-username-headers", "X-Remote-User".to_string()),
        ("profiling", "false".to_string()),
    ]);
    if let Some(address) = &inputs.advertise_address {
        args.insert("advertise-address", address.clone());
    }
    args
}

pub fn service(hc: &HostedCluster, node_port: Option<i32>) -> Result<Service, BuildError> {
    let cluster = name(hc);
    let spec = &hc.spec.api_server.service;
    let mut port = json!({ "name": "https", "port": APISERVER_SERVICE_PORT, "targetPort": "https" });
    match spec.type_ {
        ApiServerServiceType::NodePort => {
            if let Some(fixed) = spec.port.or(node_port) {
                port["nodePort"] = json!(fixed);
            }
        }
        _ => {
            if let Some(fixed) = spec.port {
                port["port"] = json!(fixed);
            }
        }
    }
    typed(
        "apiserver service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": service_name(&cluster), "namespace": namespace(hc),
                "labels": labels(hc, Some(Component::KubeApiserver)),
                "ownerReferences": [owner_reference(hc)],
            },
            "spec": {
                "type": spec.type_,
                "selector": selector(hc, Component::KubeApiserver),
                "ports": [port],
            }
        }),
    )
}

/// kubeadm's /etc/kubernetes/pki layout, from the Secrets in `required_certs()`; CA keys stay out.
fn pki_sources(cluster: &str) -> Vec<serde_json::Value> {
    vec![
        ca_cert(cluster, SecretRole::Ca, "ca"),
        pair(cluster, SecretRole::ApiServer, "apiserver"),
        pair(
            cluster,
            SecretRole::ApiServerKubeletClient,
            "apiserver-kubelet-client",
        ),
        pair(cluster, SecretRole::ApiServerEtcdClient, "apiserver-etcd-client"),
        pair(cluster, SecretRole::FrontProxyClient, "front-proxy-client"),
        ca_cert(cluster, SecretRole::FrontProxyCa, "front-proxy-ca"),
        ca_cert(cluster, SecretRole::EtcdCa, "etcd/ca"),
        project(
            cluster,
            SecretRole::ServiceAccount,
            &[(SA_PRIVATE_KEY, SA_PRIVATE_KEY), (SA_PUBLIC_KEY, SA_PUBLIC_KEY)],
        ),
    ]
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc);
    let api = &hc.spec.api_server;
    let probe = |path: &str, failures: i32| {
        json!({
            "httpGet": { "path": path, "port": "https", "scheme": "HTTPS" },
            "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    let sources = pki_sources(&cluster);
    typed(
        "apiserver deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": Component::KubeApiserver.workload_name(&cluster), "namespace": namespace(hc),
                "labels": labels(hc, Some(Component::KubeApiserver)),
                "ownerReferences": [owner_reference(hc)],
            },
            "spec": {
                "replicas": api.replicas,
                "selector": { "matchLabels": selector(hc, Component::KubeApiserver) },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
                "template": {
                    "metadata": {
                        "labels": labels(hc, Some(Component::KubeApiserver)),
                        "annotations": { INPUTS_HASH_ANNOTATION: inputs.hash(Component::KubeApiserver) },
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "affinity": spread(hc, Component::KubeApiserver),
                        "containers": [{
                            "name": "kube-apiserver",
                            "image": inputs.images.kube_apiserver,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["kube-apiserver"],
                            "args": render_args(args(hc, inputs), &api.extra_args),
                            "ports": [{ "name": "https", "containerPort": inputs.apiserver_port }],
                            "startupProbe": probe("/livez", 60),
                            "readinessProbe": probe("/readyz", 3),
                            "livenessProbe": probe("/livez", 8),
                            "resources": resources(&api.resources, "50m", "256Mi"),
                            "securityContext": container_security(),
                            "volumeMounts": [{ "name": "pki", "mountPath": PKI_DIR, "readOnly": true }],
                        }],
                        "volumes": [{ "name": "pki", "projected": { "defaultMode": 0o440, "sources": sources } }],
                    }
                }
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::{assert_golden, hosted_cluster, inputs};

    #[test]
    fn deployment_matches_golden() {
        assert_golden(
            "kube-apiserver",
            &deployment(&hosted_cluster(), &inputs()).expect("build"),
        );
    }

    #[test]
    fn workers_can_join_with_bootstrap_tokens() {
        let args = args(&hosted_cluster(), &inputs());
        assert_eq!(args["enable-bootstrap-token-auth"], "true");
        assert_eq!(args["authorization-mode"], "Node,RBAC");
        assert_eq!(args["client-ca-file"], "/etc/kubernetes/pki/ca.crt");
        assert_eq!(
            args["secure-port"], "31443",
            "listens on the node port it advertises"
        );
        assert_eq!(args["advertise-address"], "192.0.2.2");
    }

    #[test]
    fn extra_args_override_defaults() {
        let mut hc = hosted_cluster();
        hc.spec
            .api_server
            .extra_args
            .insert("profiling".into(), "true".into());
        hc.spec.api_server.extra_args.insert("--v".into(), "4".into());
        let d = deployment(&hc, &inputs()).expect("build");
        let args = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers[0].args.clone())
            .expect("args");
        assert!(
            args.contains(&"--profiling=true".to_string())
                && !args.contains(&"--profiling=false".to_string())
        );
        assert!(args.contains(&"--v=4".to_string()));
    }

    #[test]
    fn kubernetes_service_ip_is_first_address() {
        let mut hc = hosted_cluster();
        assert_eq!(kubernetes_service_ip(&hc).expect("ip").to_string(), "10.96.0.1");
        hc.spec.network.service_cidr = "fd00:10::/108".into();
        assert_eq!(kubernetes_service_ip(&hc).expect("ip").to_string(), "fd00:10::1");
    }

    #[test]
    fn fixed_node_port_is_kept() {
        let mut hc = hosted_cluster();
        hc.spec.api_server.service.port = Some(30443);
        let svc = service(&hc, Some(31000)).expect("build");
        let port = &svc.spec.expect("spec").ports.expect("ports")[0];
        assert_eq!(port.node_port, Some(30443));
        assert_eq!(port.port, APISERVER_SERVICE_PORT);
    }
}
