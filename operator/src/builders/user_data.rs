//! Cloud-init user-data of a worker server: it writes kubeadm's `JoinConfiguration` and runs
//! `kubeadm join` with it.
//!
//! The document is rendered from typed structs with serde_yaml. crates.io has no maintained crate
//! that models cloud-config (the cloud-init crates there fetch or apply user-data, none writes it),
//! and a worker needs only `write_files` and `runcmd`.
//!
//! The provider ID (`openstack:///<server id>`) is only known once Nova has created the server,
//! after the user-data is sent. It is filled in on the server by cloud-init's Jinja templating
//! (`## template: jinja`, `{{ v1.instance_id }}`): cloud-init's OpenStack datasource copies the
//! metadata's `uuid`, the server ID, to `instance-id`, and does so from the metadata service and
//! from a config drive alike. A runcmd that asked the metadata service itself would need curl and
//! a JSON parser on the image and would not work on config-drive-only clouds.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Serialize};

use super::{BuildError, Endpoint};
use crate::api::{NodeTaint, RegistryMirror, TaintEffect};

mod registry_hosts;
pub use registry_hosts::CERTS_D;

/// First line of the user-data: cloud-init renders the rest as a Jinja template.
pub const JINJA_HEADER: &str = "## template: jinja";
/// Second line: what cloud-init reads once the template is rendered.
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config";
/// Where the JoinConfiguration is written on the worker.
pub const JOIN_CONFIG_PATH: &str = "/etc/kubernetes/kubeadm-join.yaml";
/// The kubelet's provider ID, completed by cloud-init with the server ID.
pub const PROVIDER_ID: &str = "openstack:///{{ v1.instance_id }}";
/// Nova refuses a `user_data` whose base64 encoding is longer than this.
pub const NOVA_USER_DATA_LIMIT: usize = 65535;

const KUBEADM_API_VERSION: &str = "kubeadm.k8s.io/v1beta4";
/// Kubelet flags nestplane sets itself; `kubeletExtraArgs` cannot override them.
const RESERVED_KUBELET_ARGS: &[&str] = &[
    "node-labels",
    "register-with-taints",
    "provider-id",
    "hostname-override",
    "bootstrap-kubeconfig",
    "kubeconfig",
];
/// Refuses to join with a kubeadm other than the pool's version (`$1`), then joins with the
/// configuration at `$2`. Values arrive as arguments, never spliced into the script.
const JOIN_SCRIPT: &str = r#"have="$(kubeadm version -o short)" || exit 1
if [ "$have" != "$1" ]; then
  echo "kubeadm $have on this image, the NodePool wants $1: not joining" >&2
  exit 1
fi
exec kubeadm join --config "$2""#;

/// What a worker needs to join its hosted cluster; resolved by the NodePool controller.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinInput {
    /// The hosted API server as workers reach it.
    pub endpoint: Endpoint,
    /// Bootstrap token, `<id>.<secret>`.
    pub token: String,
    /// Hashes of the cluster CA's public key, `sha256:<hex>`, that discovery pins.
    pub ca_cert_hashes: Vec<String>,
    /// The Node's name: the server's name.
    pub node_name: String,
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<NodeTaint>,
    /// Extra kubelet flags, `name: value` (leading dashes allowed and dropped).
    pub kubelet_extra_args: BTreeMap<String, String>,
    /// Kubernetes version the worker runs, e.g. `v1.35.4`: the image's kubeadm must be it.
    pub version: String,
    /// Mirrors containerd pulls through, per upstream registry.
    pub registry_mirrors: Vec<RegistryMirror>,
}

/// The subset of cloud-config nestplane writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub write_files: Vec<WriteFile>,
    /// Commands as argument vectors: cloud-init runs them without a shell.
    pub runcmd: Vec<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    pub owner: String,
    /// Octal mode as cloud-init reads it, e.g. `0600`.
    pub permissions: String,
}

/// kubeadm's `JoinConfiguration` (`kubeadm.k8s.io/v1beta4`), the fields a worker sets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinConfiguration {
    pub api_version: String,
    pub kind: String,
    pub discovery: Discovery,
    pub node_registration: NodeRegistration,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    pub bootstrap_token: BootstrapTokenDiscovery,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapTokenDiscovery {
    /// `host:port`, without a scheme.
    pub api_server_endpoint: String,
    pub token: String,
    pub ca_cert_hashes: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeRegistration {
    pub name: String,
    /// Always written, also empty: kubeadm registers exactly these.
    pub taints: Vec<Taint>,
    /// v1beta4's ordered list of flags (v1beta3 had a map).
    pub kubelet_extra_args: Vec<Arg>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

/// Renders the user-data of one worker. It holds the bootstrap token: treat it as a secret.
pub fn render(input: &JoinInput) -> Result<String, BuildError> {
    let join = join_configuration(input)?;
    let mut write_files = vec![WriteFile {
        path: JOIN_CONFIG_PATH.into(),
        content: to_yaml("JoinConfiguration", &join)?,
        owner: "root:root".into(),
        // The file holds the token.
        permissions: "0600".into(),
    }];
    for file in registry_hosts::certs_d_files(&input.registry_mirrors)? {
        write_files.push(WriteFile {
            path: file.path,
            content: file.content,
            owner: "root:root".into(),
            permissions: "0644".into(),
        });
    }
    let config = CloudConfig {
        write_files,
        runcmd: vec![join_command(&input.version)],
    };
    let body = to_yaml("cloud-config", &config)?;
    ensure_no_jinja(&body)?;
    let user_data = format!("{JINJA_HEADER}\n{CLOUD_CONFIG_HEADER}\n{body}");
    ensure_fits_nova(&user_data)?;
    Ok(user_data)
}

/// The JoinConfiguration a worker joins with (the provider ID still a template).
pub fn join_configuration(input: &JoinInput) -> Result<JoinConfiguration, BuildError> {
    validate(input)?;
    Ok(JoinConfiguration {
        api_version: KUBEADM_API_VERSION.into(),
        kind: "JoinConfiguration".into(),
        discovery: Discovery {
            bootstrap_token: BootstrapTokenDiscovery {
                api_server_endpoint: api_server_endpoint(&input.endpoint),
                token: input.token.clone(),
                ca_cert_hashes: input.ca_cert_hashes.clone(),
            },
        },
        node_registration: NodeRegistration {
            name: input.node_name.clone(),
            taints: input.node_taints.iter().map(taint).collect(),
            kubelet_extra_args: kubelet_args(input),
        },
    })
}

/// `host:port` as kubeadm's discovery wants it (IPv6 in brackets).
fn api_server_endpoint(endpoint: &Endpoint) -> String {
    if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    }
}

fn taint(t: &NodeTaint) -> Taint {
    Taint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: match t.effect {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
        .into(),
        time_added: None,
    }
}

/// nestplane's flags first (`node-labels` when there are labels, `provider-id`), then the
/// user's in name order.
fn kubelet_args(input: &JoinInput) -> Vec<Arg> {
    let mut args = Vec::new();
    if !input.node_labels.is_empty() {
        let labels: Vec<String> = input
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        args.push(Arg {
            name: "node-labels".into(),
            value: labels.join(","),
        });
    }
    args.push(Arg {
        name: "provider-id".into(),
        value: PROVIDER_ID.into(),
    });
    args.extend(input.kubelet_extra_args.iter().map(|(name, value)| Arg {
        name: flag_name(name).into(),
        value: value.clone(),
    }));
    args
}

fn flag_name(name: &str) -> &str {
    name.trim_start_matches('-')
}

/// `sh -c JOIN_SCRIPT <name> <version> <config>`.
fn join_command(version: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        JOIN_SCRIPT.into(),
        "nestplane-join".into(),
        version.into(),
        JOIN_CONFIG_PATH.into(),
    ]
}

fn validate(input: &JoinInput) -> Result<(), BuildError> {
    if !is_bootstrap_token(&input.token) {
        return Err(invalid(
            "bootstrap token",
            "not of the form [a-z0-9]{6}.[a-z0-9]{16}".into(),
        ));
    }
    if input.ca_cert_hashes.is_empty() {
        return Err(invalid(
            "CA certificate hashes",
            "none given: discovery would trust any API server".into(),
        ));
    }
    if let Some(bad) = input.ca_cert_hashes.iter().find(|h| !is_sha256_pin(h)) {
        return Err(invalid(
            "CA certificate hashes",
            format!("{bad:?} is not sha256:<64 hex digits>"),
        ));
    }
    if input.node_name.is_empty() {
        return Err(BuildError::MissingField("node name"));
    }
    if input.endpoint.host.is_empty() {
        return Err(BuildError::MissingField("API server endpoint host"));
    }
    let Some(minor) = input.version.strip_prefix('v') else {
        return Err(invalid(
            "version",
            format!("{:?} does not start with v", input.version),
        ));
    };
    if minor.split('.').count() != 3 || !minor.split('.').all(|p| p.parse::<u32>().is_ok()) {
        return Err(invalid(
            "version",
            format!("{:?} is not vMAJOR.MINOR.PATCH", input.version),
        ));
    }
    // kubelet's --node-labels is `k=v,k=v`: a comma would split one label into two.
    if let Some((key, value)) = input
        .node_labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains([',', '=']) || v.contains(','))
    {
        return Err(invalid(
            "node labels",
            format!("{key:?}={value:?} cannot be passed in --node-labels"),
        ));
    }
    if let Some(name) = input
        .kubelet_extra_args
        .keys()
        .find(|name| RESERVED_KUBELET_ARGS.contains(&flag_name(name)))
    {
        return Err(invalid(
            "kubelet extra args",
            format!("{name} is set by nestplane (from nodeLabels, nodeTaints and the server)"),
        ));
    }
    Ok(())
}

fn is_bootstrap_token(token: &str) -> bool {
    let lower_alnum = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    token.split_once('.').is_some_and(|(id, secret)| {
        id.len() == 6 && secret.len() == 16 && lower_alnum(id) && lower_alnum(secret)
    })
}

fn is_sha256_pin(hash: &str) -> bool {
    hash.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn to_yaml<T: Serialize>(what: &'static str, value: &T) -> Result<String, BuildError> {
    serde_yaml::to_string(value).map_err(|source| BuildError::EncodeYaml { what, source })
}

/// cloud-init renders the whole document with Jinja: any delimiter other than the provider ID's
/// would be evaluated on the server (or break the rendering), so a value carrying one is refused.
fn ensure_no_jinja(body: &str) -> Result<(), BuildError> {
    let rest = body.replacen(PROVIDER_ID, "", 1);
    match ["{{", "{%", "{#"].into_iter().find(|d| rest.contains(d)) {
        Some(delimiter) => Err(invalid(
            "user-data",
            format!(
                "a label, taint, kubelet argument, registry mirror or name contains the template delimiter {delimiter:?}"
            ),
        )),
        None => Ok(()),
    }
}

fn ensure_fits_nova(user_data: &str) -> Result<(), BuildError> {
    let encoded = base64::encoded_len(user_data.len(), true);
    match encoded {
        Some(len) if len <= NOVA_USER_DATA_LIMIT => Ok(()),
        _ => Err(invalid(
            "user-data",
            format!(
                "{} bytes, {} in base64: Nova takes at most {NOVA_USER_DATA_LIMIT}; fewer or shorter node labels, taints, kubelet arguments or CA bundles",
                user_data.len(),
                encoded.unwrap_or(usize::MAX)
            ),
        )),
    }
}

fn invalid(what: &'static str, message: String) -> BuildError {
    BuildError::Invalid { what, message }
}

#[cfg(test)]
mod tests;
