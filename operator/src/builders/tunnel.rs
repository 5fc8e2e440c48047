//! The reverse tunnel from a hosted API server to its workers (`nestplane-tunnel`), as objects:
//! on the management side the egress selector file and the `tunnel-server` container beside
//! kube-apiserver, with its port on the API server's Service; in the hosted cluster the agent
//! DaemonSet, its service account and the binding that lets the server review agents' tokens.
//!
//! kube-apiserver's egress selector sends everything of the `cluster` egress (kubelets for logs,
//! exec and port-forward; webhooks; aggregated APIs; the node and Service proxies) to the
//! server's Unix socket with the `HTTPConnect` protocol, the interface upstream Konnectivity
//! serves too; the control plane's own egress (etcd) stays direct.
use serde_json::{Value, json};

use super::hosted::join::{KUBE_SYSTEM, cluster_role_binding};
use super::hosted::{HostedObject, hosted_meta, hosted_object};
use super::kubeconfig::KUBECONFIG_KEY;
use super::secrets::{SecretRole, project};
use super::{BuildError, HostedCluster, container_security};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;

/// The agents' TLS port: in the apiserver pod, and the Service port for ClusterIP and
/// LoadBalancer (a NodePort Service allocates its own node port for it).
pub const AGENT_PORT: i32 = 8132;
pub const AGENT_PORT_NAME: &str = "tunnel";
/// The tunnel server's /metrics, /healthz and /readyz.
pub const SERVER_HTTP_PORT: i32 = 8134;
/// The agent's /metrics and /healthz, on the node (the agent runs in the host's network).
pub const AGENT_HTTP_PORT: i32 = 8093;
/// The Unix socket kube-apiserver dials, on an emptyDir both containers mount.
pub const SOCKET_DIR: &str = "/run/nestplane-tunnel";
pub const SOCKET_PATH: &str = "/run/nestplane-tunnel/connect.sock";
/// Where the tunnel server finds its kubeconfig.
const KUBECONFIG_DIR: &str = "/etc/nestplane-tunnel";
const KUBECONFIG_FILE: &str = "tunnel-server.conf";
pub const EGRESS_SELECTOR_KEY: &str = "egress-selector.yaml";

/// Agents authenticate with a projected service-account token of this audience, which the
/// hosted API server itself does not accept: a stolen agent token opens nothing else.
pub const AGENT_TOKEN_AUDIENCE: &str = "nestplane-tunnel";
pub const AGENT_NAME: &str = "nestplane-tunnel-agent";
const AGENT_TOKEN_DIR: &str = "/var/run/secrets/nestplane-tunnel";
/// The agent's token lives an hour (the kubelet renews it at 80%); the agent re-reads it on
/// every connect.
const AGENT_TOKEN_SECONDS: i64 = 3600;

pub fn enabled(hc: &HostedCluster) -> bool {
    hc.spec.api_server.tunnel.enabled
}

pub fn egress_selector_config_name(cluster: &str) -> String {
    format!("{cluster}-egress-selector")
}

/// kube-apiserver's `EgressSelectorConfiguration`: the `cluster` egress through the tunnel.
pub fn egress_selector_configuration() -> Value {
    json!({
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [{
            "name": "cluster",
            "connection": {
                "proxyProtocol": "HTTPConnect",
                "transport": { "uds": { "udsName": SOCKET_PATH } },
            },
        }],
    })
}

/// The Service port the agents dial.
pub fn service_port() -> Value {
    json!({ "name": AGENT_PORT_NAME, "port": AGENT_PORT, "targetPort": AGENT_PORT_NAME })
}

/// The socket directory, as kube-apiserver mounts it.
pub fn socket_mount() -> Value {
    json!({ "name": "tunnel-socket", "mountPath": SOCKET_DIR })
}

/// The volumes the tunnel adds to the apiserver pod.
pub fn volumes(cluster: &str) -> Vec<Value> {
    vec![
        json!({ "name": "tunnel-socket", "emptyDir": { "medium": "Memory", "sizeLimit": "1Mi" } }),
        json!({ "name": "tunnel-kubeconfig", "projected": { "defaultMode": 0o440, "sources": [project(
            cluster,
            SecretRole::TunnelServerKubeconfig,
            &[(KUBECONFIG_KEY, KUBECONFIG_FILE)],
        )] } }),
    ]
}

/// The `tunnel-server` container beside kube-apiserver. `pki_dir` is where the apiserver pod
/// mounts kubeadm's layout: the agents' listener presents the API server's own serving
/// certificate, which names the endpoint agents dial.
pub fn server_container(image: &str, pki_dir: &str, replicas: i32) -> Value {
    let probe = |path: &str| {
        json!({
            "httpGet": { "path": path, "port": "tunnel-http" },
            "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3,
        })
    };
    json!({
        "name": "tunnel-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "tunnel-server",
            format!("--connect-socket={SOCKET_PATH}"),
            format!("--agent-addr=0.0.0.0:{AGENT_PORT}"),
            format!("--http-addr=0.0.0.0:{SERVER_HTTP_PORT}"),
            format!("--tls-cert-file={pki_dir}/apiserver.crt"),
            format!("--tls-key-file={pki_dir}/apiserver.key"),
            format!("--kubeconfig={KUBECONFIG_DIR}/{KUBECONFIG_FILE}"),
            format!("--audience={AGENT_TOKEN_AUDIENCE}"),
            format!("--agent-service-account={KUBE_SYSTEM}/{AGENT_NAME}"),
            format!("--server-count={replicas}"),
        ],
        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
        "ports": [
            { "name": AGENT_PORT_NAME, "containerPort": AGENT_PORT },
            { "name": "tunnel-http", "containerPort": SERVER_HTTP_PORT },
        ],
        // Only liveness: the pod's readiness is the API server's, and a cluster without
        // workers (no agent) is still Available.
        "livenessProbe": probe("/healthz"),
        "resources": { "requests": { "cpu": "5m", "memory": "16Mi" }, "limits": { "memory": "128Mi" } },
        "securityContext": container_security(),
        "volumeMounts": [
            { "name": "pki", "mountPath": pki_dir, "readOnly": true },
            { "name": "tunnel-kubeconfig", "mountPath": KUBECONFIG_DIR, "readOnly": true },
            socket_mount(),
        ],
    })
}

/// What the agent add-on needs: where agents dial, and its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInput {
    /// `https://host:port` of the tunnel server, as in `status.tunnelEndpoint`.
    pub server_url: String,
    /// The nestplane image (the agent is `nestplane tunnel-agent`).
    pub image: String,
}

/// The agent in the hosted cluster: one per node, in the host's network (it dials the node's
/// own addresses for the kubelet, and pods and Services through the node's routes).
pub fn agent_objects(agent: &AgentInput) -> Result<Vec<HostedObject>, BuildError> {
    let service_account = hosted_object::<ServiceAccount>(
        "ServiceAccount nestplane-tunnel-agent",
        json!({ "metadata": hosted_meta(AGENT_NAME, Some(KUBE_SYSTEM)), "automountServiceAccountToken": false }),
    )?;
    // The tunnel server reviews agents' tokens as this user: TokenReviews and nothing else.
    let reviewer = cluster_role_binding(
        "nestplane:tunnel-server:auth-delegator",
        "system:auth-delegator",
        &[json!({
            "apiGroup": "rbac.authorization.k8s.io", "kind": "User",
            "name": nestplane_pki::profiles::TUNNEL_SERVER_USER,
        })],
    )?;
    Ok(vec![service_account, reviewer, agent_daemon_set(agent)?])
}

fn agent_daemon_set(agent: &AgentInput) -> Result<HostedObject, BuildError> {
    let labels = json!({ "k8s-app": AGENT_NAME });
    let mut meta = hosted_meta(AGENT_NAME, Some(KUBE_SYSTEM));
    meta["labels"]["k8s-app"] = AGENT_NAME.into();
    let env =
        |name: &str, path: &str| json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    hosted_object::<DaemonSet>(
        "DaemonSet nestplane-tunnel-agent",
        json!({
            "metadata": meta,
            "spec": {
                "selector": { "matchLabels": labels },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "10%" } },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "hostNetwork": true,
                        "serviceAccountName": AGENT_NAME,
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [{
                            "name": "agent",
                            "image": agent.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                "tunnel-agent",
                                format!("--server={}", agent.server_url),
                                format!("--ca-file={AGENT_TOKEN_DIR}/ca.crt"),
                                format!("--token-file={AGENT_TOKEN_DIR}/token"),
                                format!("--http-addr=0.0.0.0:{AGENT_HTTP_PORT}"),
                            ],
                            "env": [env("NODE_NAME", "spec.nodeName"), env("NODE_IPS", "status.hostIPs")],
                            "ports": [{ "name": "http", "containerPort": AGENT_HTTP_PORT }],
                            "livenessProbe": {
                                "httpGet": { "path": "/healthz", "port": AGENT_HTTP_PORT },
                                "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3,
                            },
                            // Ready once connected to a tunnel server.
                            "readinessProbe": {
                                "httpGet": { "path": "/readyz", "port": AGENT_HTTP_PORT },
                                "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 2,
                            },
                            "resources": { "requests": { "cpu": "5m", "memory": "16Mi" }, "limits": { "memory": "128Mi" } },
                            "securityContext": container_security(),
                            "volumeMounts": [{ "name": "tunnel", "mountPath": AGENT_TOKEN_DIR, "readOnly": true }],
                        }],
                        "volumes": [{ "name": "tunnel", "projected": { "sources": [
                            { "serviceAccountToken": {
                                "audience": AGENT_TOKEN_AUDIENCE,
                                "expirationSeconds": AGENT_TOKEN_SECONDS,
                                "path": "token",
                            } },
                            // The hosted CA, which signs the server's certificate.
                            { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                        ] } }],
                        "tolerations": [{ "operator": "Exists" }],
                        "nodeSelector": { "kubernetes.io/os": "linux" },
                    },
                },
            },
        }),
    )
}

#[cfg(test)]
mod tests;
