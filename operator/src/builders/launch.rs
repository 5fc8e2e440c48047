//! `nestplane-launch` in a component's pod: an init container copies the static binary from the
//! nestplane image into an emptyDir, and the component's container runs it as its command, so the
//! component starts the moment what it needs accepts connections (see `launch/src/main.rs` for
//! why the components' own retries, and a wait in an init container, are slower).
use serde_json::{Value, json};

use super::{BuildError, container_security};

/// The init container that installs the binary.
const INSTALL_CONTAINER: &str = "install-launch";
const VOLUME: &str = "launch";
const DIR: &str = "/launch";
/// Where the nestplane image carries the binary.
const IMAGE_PATH: &str = "/usr/local/bin/nestplane-launch";

/// `host:port` of each `https://host:port` URL.
fn addresses(urls: &[String]) -> Result<Vec<String>, BuildError> {
    urls.iter()
        .map(|url| {
            url.strip_prefix("https://")
                .map(|rest| rest.trim_end_matches('/').to_string())
                .ok_or_else(|| BuildError::Invalid {
                    what: "launch address",
                    message: format!("{url} is not an https:// URL"),
                })
        })
        .collect()
}

/// The init container, run from the nestplane image.
pub(crate) fn install_container(image: &str) -> Value {
    json!({
        "name": INSTALL_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [IMAGE_PATH, "install", DIR],
        "resources": { "requests": { "cpu": "5m", "memory": "16Mi" } },
        "securityContext": container_security(),
        "volumeMounts": [{ "name": VOLUME, "mountPath": DIR }],
    })
}

/// How many of the addresses must accept before the component starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    All,
    /// One is enough: etcd's members, whose client finds the others.
    Any,
}

/// The component's `command`: wait until the URLs' `host:port`s accept connections, then exec
/// `program` (its `args` follow, as the container's `args`).
pub(crate) fn command(urls: &[String], wait: Wait, program: &str) -> Result<Vec<String>, BuildError> {
    let mut command = vec![format!("{DIR}/nestplane-launch"), "wait-for".to_string()];
    if wait == Wait::Any {
        command.push("--any".to_string());
    }
    command.extend(addresses(urls)?);
    command.extend(["--".to_string(), program.to_string()]);
    Ok(command)
}

/// The component container's mount of the installed binary.
pub(crate) fn volume_mount() -> Value {
    json!({ "name": VOLUME, "mountPath": DIR, "readOnly": true })
}

/// The pod's volume the binary is installed into.
pub(crate) fn volume() -> Value {
    json!({ "name": VOLUME, "emptyDir": { "sizeLimit": "16Mi" } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_host_and_port_of_each_url_then_runs_the_program() {
        let command = command(
            &["https://demo-apiserver.team-a.svc:6443".to_string()],
            Wait::All,
            "kube-scheduler",
        )
        .expect("command");
        assert_eq!(
            command,
            [
                "/launch/nestplane-launch",
                "wait-for",
                "demo-apiserver.team-a.svc:6443",
                "--",
                "kube-scheduler"
            ]
        );
        assert!(super::command(&["http://a:1".to_string()], Wait::All, "x").is_err());
        let members = [
            "https://m-0.e.ns.svc:2379".to_string(),
            "https://m-1.e.ns.svc:2379".to_string(),
        ];
        assert_eq!(
            super::command(&members, Wait::Any, "kube-apiserver").expect("command")[1..5],
            ["wait-for", "--any", "m-0.e.ns.svc:2379", "m-1.e.ns.svc:2379"]
        );
    }

    #[test]
    fn installs_where_the_component_runs_it_from() {
        let install = install_container("ghcr.io/nestplane/nestplane:dev");
        assert_eq!(install["command"][2], DIR);
        assert_eq!(
            install["volumeMounts"][0]["mountPath"],
            volume_mount()["mountPath"]
        );
        assert_eq!(volume()["name"], volume_mount()["name"]);
    }
}
