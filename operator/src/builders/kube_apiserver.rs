//! kube-apiserver: a Deployment and the Service that exposes it.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::apiserver_config::{
    AUDIT_LOG_DIR, AUDIT_LOG_MAX_AGE_DAYS, AUDIT_LOG_MAX_BACKUPS, AUDIT_LOG_MAX_SIZE_MIB,
    AUDIT_LOG_VOLUME_MIB, AUDIT_POLICY_KEY, AUTHENTICATION_CONFIG_KEY,
};
use super::encryption::ENCRYPTION_CONFIG_KEY;
use super::secrets::{SA_PRIVATE_KEY, SA_PUBLIC_KEY, SecretRole, ca_cert, pair, project};
use super::*;
use crate::api::ApiServerServiceType;
use crate::api::conditions::API_SERVER_AVAILABLE;

const PKI_DIR: &str = "/etc/kubernetes/pki";
/// The encryption, authentication and audit-policy files.
const CONFIG_DIR: &str = "/etc/kubernetes/config";

pub fn service_name(cluster: &str) -> String {
    format!("{cluster}-apiserver")
}

/// The headless Service whose name resolves to the addresses of the API server's Ready pods.
pub fn pods_service_name(cluster: &str) -> String {
    format!("{cluster}-apiserver-pods")
}

/// Names of the API server's Services, for the serving certificate.
pub fn service_dns_names(hc: &HostedCluster) -> Result<Vec<String>, BuildError> {
    let cluster = name(hc)?;
    let ns = namespace(hc)?;
    Ok([service_name(&cluster), pods_service_name(&cluster)]
        .into_iter()
        .flat_map(|service| {
            [
                service.clone(),
                format!("{service}.{ns}"),
                format!("{service}.{ns}.svc"),
                format!("{service}.{ns}.svc.cluster.local"),
            ]
        })
        .collect())
}

/// The port of the API server's Service: `spec.apiServer.service.port` for ClusterIP and
/// LoadBalancer (where it is the Service port), else 6443 (for NodePort it is the node port).
pub fn service_port(hc: &HostedCluster) -> i32 {
    let spec = &hc.spec.api_server.service;
    match spec.type_ {
        ApiServerServiceType::NodePort => APISERVER_SERVICE_PORT,
        _ => spec.port.unwrap_or(APISERVER_SERVICE_PORT),
    }
}

/// URL of the API server from inside the management cluster (controller-manager, scheduler,
/// tunnel server): its Ready pods by name, on the port they listen on (`apiserver_port`). A
/// ClusterIP would add the management cluster's kube-proxy to the start of every control plane:
/// it programs a new endpoint up to its minimum sync period (1 s by default) after the pod is
/// Ready, where the cluster DNS answers with it at once.
pub fn internal_url(hc: &HostedCluster, apiserver_port: i32) -> Result<String, BuildError> {
    Ok(format!(
        "https://{}.{}.svc:{apiserver_port}",
        pods_service_name(&name(hc)?),
        namespace(hc)?,
    ))
}

/// Serves the hosted API: available once it answers /readyz at the endpoint.
pub const COMPONENT: ComponentDef = ComponentDef {
    name: "kube-apiserver",
    kind: WorkloadKind::Deployment,
    depends_on: &[Component::Etcd],
    required_certs: &[
        SecretRole::Ca,
        SecretRole::EtcdCa,
        SecretRole::FrontProxyCa,
        SecretRole::ServiceAccount,
        SecretRole::ApiServer,
        SecretRole::ApiServerKubeletClient,
        SecretRole::ApiServerEtcdClient,
        SecretRole::FrontProxyClient,
        SecretRole::Encryption,
        SecretRole::TunnelServerKubeconfig,
    ],
    config_maps: apiserver_config::config_maps,
    condition_type: API_SERVER_AVAILABLE,
    availability: Availability::HostedApi,
    image: |version, registry| Ok(component::release_image(registry, "kube-apiserver", version)),
    wants_disruption_budget: |hc| hc.spec.api_server.replicas >= 2,
    build: |hc, inputs| Ok(Workload::Deployment(deployment(hc, inputs)?)),
};

pub fn args(hc: &HostedCluster, inputs: &Inputs) -> Result<BTreeMap<&'static str, String>, BuildError> {
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
        // Each member by its own name, which resolves before the member is Ready (the client
        // Service routes only to Ready ones): kube-apiserver starts beside etcd, and its
        // client's reconnects reach a member as soon as it listens.
        ("etcd-servers", etcd_servers(hc)?),
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
        ("kubelet-certificate-authority", pki("ca.crt")),
    ]);
    args.extend(hardening_args());
    if tunnel::enabled(hc) {
        args.insert(
            "egress-selector-config-file",
            format!("{CONFIG_DIR}/{}", tunnel::EGRESS_SELECTOR_KEY),
        );
    }
    if let Some(address) = &inputs.advertise_address {
        args.insert("advertise-address", address.clone());
    }
    Ok(args)
}

/// Encryption at rest, the audit log and the authentication configuration (which limits
/// anonymous requests, so `--anonymous-auth` must not be set beside it).
fn hardening_args() -> BTreeMap<&'static str, String> {
    let config = |file: &str| format!("{CONFIG_DIR}/{file}");
    BTreeMap::from([
        ("encryption-provider-config", config(ENCRYPTION_CONFIG_KEY)),
        ("authentication-config", config(AUTHENTICATION_CONFIG_KEY)),
        ("audit-policy-file", config(AUDIT_POLICY_KEY)),
        ("audit-log-path", format!("{AUDIT_LOG_DIR}/audit.log")),
        ("audit-log-maxsize", AUDIT_LOG_MAX_SIZE_MIB.to_string()),
        ("audit-log-maxbackup", AUDIT_LOG_MAX_BACKUPS.to_string()),
        ("audit-log-maxage", AUDIT_LOG_MAX_AGE_DAYS.to_string()),
    ])
}

/// The headless Service of [`internal_url`]: only Ready pods, no ClusterIP, no proxying.
pub fn pods_service(hc: &HostedCluster) -> Result<Service, BuildError> {
    let cluster = name(hc)?;
    meta::object(
        "apiserver pods service",
        object_meta(hc, pods_service_name(&cluster), Some(Component::KubeApiserver))?,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "spec": {
                "clusterIP": "None",
                "selector": selector(hc, Component::KubeApiserver)?,
                // Informational for a headless Service: clients dial the pods' own port.
                "ports": [{ "name": "https", "port": APISERVER_SERVICE_PORT, "targetPort": "https" }],
            }
        }),
    )
}

pub fn service(hc: &HostedCluster, node_port: Option<i32>) -> Result<Service, BuildError> {
    let cluster = name(hc)?;
    let spec = &hc.spec.api_server.service;
    let mut port = json!({ "name": "https", "port": service_port(hc), "targetPort": "https" });
    if spec.type_ == ApiServerServiceType::NodePort
        && let Some(fixed) = spec.port.or(node_port)
    {
        port["nodePort"] = json!(fixed);
    }
    let mut ports = vec![port];
    if tunnel::enabled(hc) {
        ports.push(tunnel::service_port());
    }
    meta::object(
        "apiserver service",
        object_meta(hc, service_name(&cluster), Some(Component::KubeApiserver))?,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "spec": {
                "type": spec.type_,
                "selector": selector(hc, Component::KubeApiserver)?,
                "ports": ports,
            }
        }),
    )
}

/// kubeadm's /etc/kubernetes/pki layout, from the Secrets in `COMPONENT.required_certs`; CA keys stay out.
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

fn etcd_servers(hc: &HostedCluster) -> Result<String, BuildError> {
    etcd_member_urls(hc).map(|urls| urls.join(","))
}

fn etcd_member_urls(hc: &HostedCluster) -> Result<Vec<String>, BuildError> {
    (0..hc.spec.etcd.replicas)
        .map(|ordinal| etcd::member_client_url(hc, ordinal))
        .collect()
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc)?;
    let api = &hc.spec.api_server;
    let probe = |path: &str, period: i32, failures: i32| {
        json!({
            "httpGet": { "path": path, "port": "https", "scheme": "HTTPS" },
            "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    let sources = pki_sources(&cluster);
    let mut config_sources = vec![encryption::volume_source(&cluster)];
    config_sources.extend(apiserver_config::volume_sources(hc)?);
    let component = Component::KubeApiserver;
    let mut mounts = vec![
        json!({ "name": "pki", "mountPath": PKI_DIR, "readOnly": true }),
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": "audit-log", "mountPath": AUDIT_LOG_DIR }),
        launch::volume_mount(),
    ];
    let mut volumes = vec![
        json!({ "name": "pki", "projected": { "defaultMode": 0o440, "sources": sources } }),
        json!({ "name": "config", "projected": { "defaultMode": 0o440, "sources": config_sources } }),
        json!({ "name": "audit-log", "emptyDir": { "sizeLimit": format!("{AUDIT_LOG_VOLUME_MIB}Mi") } }),
        launch::volume(),
    ];
    let mut sidecars = Vec::new();
    if tunnel::enabled(hc) {
        mounts.push(tunnel::socket_mount());
        volumes.extend(tunnel::volumes(&cluster));
        sidecars.push(tunnel::server_container(
            &inputs.tunnel_image,
            PKI_DIR,
            api.replicas,
        ));
    }
    let apiserver = json!({
        "name": "kube-apiserver",
        "image": inputs.images.get(component)?,
        "imagePullPolicy": "IfNotPresent",
        // Started the moment one etcd member listens (its name resolves before it is Ready).
        "command": launch::command(&etcd_member_urls(hc)?, launch::Wait::Any, "kube-apiserver")?,
        "args": render_args(args(hc, inputs)?, &api.extra_args),
        "ports": [{ "name": "https", "containerPort": inputs.apiserver_port }],
        // Started once /readyz answers, looked at every second (five minutes at most): the
        // kubelet runs the readiness probe the moment the startup probe passes, so the pod is
        // Ready within a second of the API server. A /livez start would be followed by a
        // failing /readyz and a five-second wait.
        "startupProbe": probe("/readyz", 1, 300),
        "readinessProbe": probe("/readyz", 5, 3),
        "livenessProbe": probe("/livez", 5, 8),
        "resources": resources("kube-apiserver resources", &api.resources, "50m", "256Mi")?,
        "securityContext": container_security(),
        "volumeMounts": mounts,
    });
    let containers: Vec<_> = std::iter::once(apiserver).chain(sidecars).collect();
    meta::object(
        "apiserver deployment",
        object_meta(hc, component.workload_name(&cluster), Some(component))?,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {
                "replicas": api.replicas,
                "selector": { "matchLabels": selector(hc, component)? },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
                "template": pod_template(hc, component, inputs, json!({
                    "initContainers": [launch::install_container(&inputs.tunnel_image)],
                    "containers": containers,
                    "volumes": volumes,
                }))?
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
        let args = args(&hosted_cluster(), &inputs()).expect("args");
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

    /// The Service's own port applies to clients outside; in the management cluster the
    /// components dial the pods, headless, on the port kube-apiserver listens on.
    #[test]
    fn components_dial_the_ready_pods_on_their_port() {
        let mut hc = hosted_cluster();
        let inputs = inputs();
        assert_eq!(
            internal_url(&hc, inputs.apiserver_port).expect("url"),
            "https://demo-apiserver-pods.team-a.svc:31443"
        );
        let args = args(&hc, &inputs).expect("args");
        assert_eq!(args["secure-port"], inputs.apiserver_port.to_string());
        for type_ in [
            ApiServerServiceType::ClusterIP,
            ApiServerServiceType::LoadBalancer,
        ] {
            hc.spec.api_server.service.type_ = type_;
            hc.spec.api_server.service.port = Some(7443);
            let svc = service(&hc, None).expect("build");
            let port = &svc.spec.expect("spec").ports.expect("ports")[0];
            assert_eq!(port.port, 7443);
            assert_eq!(port.node_port, None);
        }
        let pods = pods_service(&hc).expect("build").spec.expect("spec");
        assert_eq!(pods.cluster_ip.as_deref(), Some("None"));
        assert_ne!(pods.publish_not_ready_addresses, Some(true), "only Ready pods");
        assert!(
            service_dns_names(&hc)
                .expect("names")
                .contains(&"demo-apiserver-pods.team-a.svc".to_string()),
            "the serving certificate names what the components dial"
        );
    }

    #[test]
    fn every_file_a_flag_names_is_mounted() {
        let d = deployment(&hosted_cluster(), &inputs()).expect("build");
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        let json = serde_json::to_value(&pod).expect("json");
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        for (flag, value) in args(&hosted_cluster(), &inputs()).expect("args") {
            let Some(mount) = mounts
                .iter()
                .find(|m| value.starts_with(&format!("{}/", m.mount_path)))
            else {
                assert!(!value.starts_with('/'), "--{flag}={value} is not under any mount");
                continue;
            };
            let file = &value[mount.mount_path.len() + 1..];
            let volume = json["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == mount.name.as_str())
                .expect("volume");
            if volume.get("emptyDir").is_some() {
                continue;
            }
            let projected = volume["projected"]["sources"].to_string();
            assert!(
                projected.contains(&format!("\"path\":\"{file}\"")),
                "--{flag}={value} is not projected into {}",
                mount.name
            );
        }
    }

    #[test]
    fn kubelets_are_verified_and_anonymous_auth_is_left_to_the_config_file() {
        let args = args(&hosted_cluster(), &inputs()).expect("args");
        assert_eq!(
            args["kubelet-certificate-authority"],
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(
            args["authentication-config"],
            "/etc/kubernetes/config/authentication-config.yaml"
        );
        assert!(
            !args.contains_key("anonymous-auth"),
            "the API server refuses --anonymous-auth beside an anonymous authenticator"
        );
        assert_eq!(
            args["encryption-provider-config"],
            "/etc/kubernetes/config/encryption-config.yaml"
        );
    }

    #[test]
    fn the_audit_log_is_bounded_by_its_volume() {
        let d = deployment(&hosted_cluster(), &inputs()).expect("build");
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
        let volume = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "audit-log")
            .expect("audit-log volume");
        let limit = volume.empty_dir.and_then(|e| e.size_limit).expect("sizeLimit");
        assert_eq!(limit.0, "128Mi");
        let args = args(&hosted_cluster(), &inputs()).expect("args");
        assert_eq!(args["audit-log-path"], "/var/log/kubernetes/audit/audit.log");
        let size: u32 = args["audit-log-maxsize"].parse().expect("maxsize");
        let backups: u32 = args["audit-log-maxbackup"].parse().expect("maxbackup");
        assert!(
            backups > 0 && (backups + 1) * size < 128,
            "{backups} x {size} MiB"
        );
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
