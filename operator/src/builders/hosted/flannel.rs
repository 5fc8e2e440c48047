//! The pod network of a hosted cluster: flanneld with its VXLAN backend, the objects of upstream
//! `kube-flannel.yml` (v0.28) adapted.
//!
//! flanneld leases each node the podCIDR kube-controller-manager allocated to it
//! (`--kube-subnet-mgr`) and carries pod traffic between nodes over VXLAN on the interface of the
//! default route. Upstream then hands each pod to the `flannel` CNI plugin, which reads
//! `/run/flannel/subnet.env` and delegates to `bridge` and `host-local`. That plugin is not built
//! here (its module is not available to the build), so a second container writes the config the
//! plugin would have produced: `bridge` (`cni0`, gateway, MTU of the lease) with `host-local`
//! (the node's subnet) and `portmap`, all standard plugins a worker already has. To use upstream's
//! plugin instead: install it into `/opt/cni/bin` (upstream's `install-cni-plugin` init
//! container), set `cni-conf.json` to upstream's (`"type": "flannel"` with a delegate of
//! `hairpinMode` and `isDefaultGateway`) and replace the `install-cni` container by an init
//! container copying it to `/etc/cni/net.d/10-flannel.conflist`.
//!
//! With `spec.network.cni: none` nothing is built, so what was applied before is pruned.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::{HOSTED_MANAGED_BY_LABEL, HostedInput, HostedObject};
use crate::api::Cni;
use crate::builders::{BuildError, INPUTS_HASH_ANNOTATION, MANAGED_BY, hash_data, typed};

/// flannel's release; `FLANNEL_VERSION` in hack/versions.env builds its image.
pub const VERSION: &str = "v0.28.10";
pub const NAMESPACE: &str = "kube-flannel";
pub const DAEMON_SET: &str = "kube-flannel-ds";
pub const CONFIG_MAP: &str = "kube-flannel-cfg";
/// The ServiceAccount, ClusterRole and ClusterRoleBinding share upstream's name.
const RBAC_NAME: &str = "flannel";
/// Where the node's CNI config is written; kubelet reports the node Ready once it exists.
pub const CNI_CONFLIST: &str = "/etc/cni/net.d/10-flannel.conflist";
/// flanneld's /healthz and /readyz, on the node's network as upstream has them.
const HEALTHZ_PORT: i32 = 8081;

/// ConfigMap keys, mounted at [`CONFIG_DIR`].
pub const NET_CONF_KEY: &str = "net-conf.json";
pub const CNI_CONF_KEY: &str = "cni-conf.json";
const INSTALL_CNI_KEY: &str = "install-cni.sh";
const CONFIG_DIR: &str = "/etc/kube-flannel";
/// Writes [`CNI_CONFLIST`] from the template and the node's lease; its header says how.
const INSTALL_CNI_SCRIPT: &str = include_str!("flannel-install-cni.sh");
/// Placeholders of the CNI template that the script replaces: the MTU's with its quotes (by a
/// number), the subnet's inside its string.
pub const MTU_PLACEHOLDER: &str = "@FLANNEL_MTU@";
pub const SUBNET_PLACEHOLDER: &str = "@FLANNEL_SUBNET@";

/// flannel's image, under its real name.
pub fn image() -> String {
    format!("ghcr.io/flannel-io/flannel:{VERSION}")
}

/// Everything the pod network needs inside the hosted cluster, in apply order (the namespace
/// before what lives in it); nothing when the user brings their own CNI.
pub fn objects(input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    if input.cni == Cni::None {
        return Ok(Vec::new());
    }
    let config_map = config_map(input)?;
    let daemon_set = daemon_set(input, &config_map)?;
    Ok(vec![
        HostedObject::new(&namespace())?,
        HostedObject::new(&service_account())?,
        HostedObject::new(&cluster_role()?)?,
        HostedObject::new(&cluster_role_binding()?)?,
        HostedObject::new(&config_map)?,
        HostedObject::new(&daemon_set)?,
    ])
}

/// Upstream's labels plus the one pruning selects by.
fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), "flannel".to_string()),
        ("k8s-app".to_string(), "flannel".to_string()),
        ("tier".to_string(), "node".to_string()),
        (HOSTED_MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn namespace() -> Namespace {
    let mut namespace = Namespace {
        metadata: meta(NAMESPACE, None),
        ..Namespace::default()
    };
    // flanneld needs host networking and NET_ADMIN: the restricted default would refuse the pods.
    namespace.metadata.labels.get_or_insert_default().insert(
        "pod-security.kubernetes.io/enforce".to_string(),
        "privileged".to_string(),
    );
    namespace
}

fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(RBAC_NAME, Some(NAMESPACE)),
        ..ServiceAccount::default()
    }
}

/// What `--kube-subnet-mgr` reads and writes: its pod, every node's podCIDR, and its own node's
/// annotations (the VXLAN endpoint other nodes route to).
fn cluster_role() -> Result<ClusterRole, BuildError> {
    let mut role: ClusterRole = typed(
        "flannel ClusterRole",
        json!({
            "rules": [
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] },
                { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"] },
                { "apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"] },
            ]
        }),
    )?;
    role.metadata = meta(RBAC_NAME, None);
    Ok(role)
}

fn cluster_role_binding() -> Result<ClusterRoleBinding, BuildError> {
    let mut binding: ClusterRoleBinding = typed(
        "flannel ClusterRoleBinding",
        json!({
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RBAC_NAME },
            "subjects": [{ "kind": "ServiceAccount", "name": RBAC_NAME, "namespace": NAMESPACE }],
        }),
    )?;
    binding.metadata = meta(RBAC_NAME, None);
    Ok(binding)
}

/// flanneld's network config: the whole pod CIDR, VXLAN, iptables rules (not nftables: the
/// image carries iptables-nft, as kube-proxy's does).
pub fn net_conf(pod_cidr: &str) -> Result<String, BuildError> {
    ipv4_cidr(pod_cidr)?;
    pretty(
        "flannel net-conf.json",
        &json!({
            "Network": pod_cidr,
            "EnableNFTables": false,
            "Backend": { "Type": "vxlan" },
        }),
    )
}

/// The conflist the install-cni container renders per node: what upstream's `flannel` plugin
/// delegates, spelled out. `isDefaultGateway` gives pods their default route (Services and the
/// outside world) via `cni0`, the route to the pod CIDR sends other nodes' pods the same way
/// (flannel's VXLAN device takes them on), and masquerading is flanneld's (`--ip-masq`), so the
/// bridge does none.
pub fn cni_conf_template(pod_cidr: &str) -> Result<String, BuildError> {
    ipv4_cidr(pod_cidr)?;
    pretty(
        "flannel cni-conf.json",
        &json!({
            "name": "cbr0",
            "cniVersion": "1.0.0",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "mtu": MTU_PLACEHOLDER,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": SUBNET_PLACEHOLDER }]],
                        "routes": [{ "dst": pod_cidr }],
                    },
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        }),
    )
}

fn pretty(what: &'static str, value: &serde_json::Value) -> Result<String, BuildError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|source| BuildError::Encode { what, source })
}

/// flannel's `Network` is an IPv4 range; an IPv6 pod CIDR would need `IPv6Network` and a
/// dual-stack CNI config, which this pod network does not build.
fn ipv4_cidr(cidr: &str) -> Result<(), BuildError> {
    let invalid = |message: String| BuildError::Invalid {
        what: "flannel network",
        message,
    };
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| invalid(format!("pod CIDR {cidr:?} has no prefix length")))?;
    address.parse::<Ipv4Addr>().map_err(|_| {
        invalid(format!(
            "pod CIDR {cidr:?} is not IPv4: flannel is set up here for IPv4 pod networks only"
        ))
    })?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 => Ok(()),
        _ => Err(invalid(format!("pod CIDR {cidr:?} has an invalid prefix length"))),
    }
}

fn config_map(input: &HostedInput) -> Result<ConfigMap, BuildError> {
    Ok(ConfigMap {
        metadata: meta(CONFIG_MAP, Some(NAMESPACE)),
        data: Some(BTreeMap::from([
            (NET_CONF_KEY.to_string(), net_conf(&input.pod_cidr)?),
            (CNI_CONF_KEY.to_string(), cni_conf_template(&input.pod_cidr)?),
            (INSTALL_CNI_KEY.to_string(), INSTALL_CNI_SCRIPT.to_string()),
        ])),
        ..ConfigMap::default()
    })
}

/// flanneld on every node, whatever its taints, and beside it the container that writes the
/// node's CNI config from flanneld's lease. A changed ConfigMap rolls the pods (its hash is in
/// the template), since neither flanneld nor the script rereads `net-conf.json`.
fn daemon_set(input: &HostedInput, config_map: &ConfigMap) -> Result<DaemonSet, BuildError> {
    let config_hash = hash_data(
        config_map
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
    );
    let mut daemon_set: DaemonSet = typed(
        "flannel DaemonSet",
        json!({
            "spec": {
                "selector": { "matchLabels": { "app": "flannel" } },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
                "template": {
                    "metadata": {
                        "labels": labels(),
                        "annotations": { INPUTS_HASH_ANNOTATION: config_hash },
                    },
                    "spec": pod_spec(input),
                },
            },
        }),
    )?;
    daemon_set.metadata = meta(DAEMON_SET, Some(NAMESPACE));
    Ok(daemon_set)
}

fn pod_spec(input: &HostedInput) -> serde_json::Value {
    let config = json!({ "name": "flannel-cfg", "mountPath": CONFIG_DIR, "readOnly": true });
    json!({
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "kubernetes.io/os", "operator": "In", "values": ["linux"] },
            ]}],
        }}},
        "hostNetwork": true,
        "priorityClassName": "system-node-critical",
        // Every taint: the pod network is what makes a node Ready in the first place.
        "tolerations": [{ "operator": "Exists" }],
        "serviceAccountName": RBAC_NAME,
        "containers": [
            flanneld(input, &config),
            {
                "name": "install-cni",
                "image": image(),
                "command": ["/bin/sh", format!("{CONFIG_DIR}/{INSTALL_CNI_KEY}")],
                "resources": { "requests": { "cpu": "10m", "memory": "10Mi" } },
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
                "volumeMounts": [
                    { "name": "run", "mountPath": "/run/flannel", "readOnly": true },
                    { "name": "cni", "mountPath": "/etc/cni/net.d" },
                    config,
                ],
            },
        ],
        "volumes": [
            { "name": "run", "hostPath": { "path": "/run/flannel", "type": "DirectoryOrCreate" } },
            { "name": "cni", "hostPath": { "path": "/etc/cni/net.d", "type": "DirectoryOrCreate" } },
            { "name": "flannel-cfg", "configMap": { "name": CONFIG_MAP } },
            { "name": "xtables-lock", "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" } },
            { "name": "lib-modules", "hostPath": { "path": "/lib/modules" } },
        ],
    })
}

fn flanneld(input: &HostedInput, config: &serde_json::Value) -> serde_json::Value {
    let field = |path: &str| json!({ "fieldRef": { "fieldPath": path } });
    json!({
        "name": "kube-flannel",
        "image": image(),
        "command": ["/opt/bin/flanneld"],
        // No --iface: the interface of the default route carries the VXLAN traffic.
        "args": ["--ip-masq", "--kube-subnet-mgr", format!("--healthz-port={HEALTHZ_PORT}")],
        "env": [
            { "name": "POD_NAME", "valueFrom": field("metadata.name") },
            { "name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace") },
            { "name": "EVENT_QUEUE_DEPTH", "value": "5000" },
            { "name": "CONT_WHEN_CACHE_NOT_READY", "value": "false" },
            // The hosted API's external endpoint rather than the `kubernetes` Service: that
            // ClusterIP works only once kube-proxy has programmed the node, and kube-proxy's
            // pods may start after flanneld's. These override the variables kubelet injects.
            { "name": "KUBERNETES_SERVICE_HOST", "value": input.endpoint.host },
            { "name": "KUBERNETES_SERVICE_PORT", "value": input.endpoint.port.to_string() },
        ],
        "ports": [{ "name": "healthz", "containerPort": HEALTHZ_PORT, "protocol": "TCP" }],
        "livenessProbe": {
            "httpGet": { "path": "/healthz", "port": "healthz" },
            "initialDelaySeconds": 10, "periodSeconds": 30,
        },
        "readinessProbe": {
            "httpGet": { "path": "/readyz", "port": "healthz" },
            "initialDelaySeconds": 5, "periodSeconds": 10,
        },
        "resources": { "requests": { "cpu": "100m", "memory": "50Mi" } },
        // Upstream's: the VXLAN device, routes and iptables rules need NET_ADMIN and NET_RAW,
        // not a privileged container.
        "securityContext": {
            "privileged": false,
            "capabilities": { "add": ["NET_ADMIN", "NET_RAW"] },
        },
        "volumeMounts": [
            { "name": "run", "mountPath": "/run/flannel" },
            config,
            { "name": "xtables-lock", "mountPath": "/run/xtables.lock" },
            { "name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true },
        ],
    })
}

#[cfg(test)]
mod tests;
