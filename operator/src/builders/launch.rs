//! The `wait-for` init container: holds a component's start until the Service of what it needs
//! accepts connections, which a Service does once its pods are Ready (see
//! [`crate::wait_for`] for why the components' own retries are not enough).
use serde_json::{Value, json};

use super::{BuildError, container_security};

pub const CONTAINER: &str = "wait-for";

/// The init container for the `https://host:port` URLs a component needs, run from the
/// nestplane image.
pub(crate) fn init_container(image: &str, urls: &[String]) -> Result<Value, BuildError> {
    let addresses = urls
        .iter()
        .map(|url| {
            url.strip_prefix("https://")
                .map(|rest| rest.trim_end_matches('/').to_string())
                .ok_or_else(|| BuildError::Invalid {
                    what: "wait-for address",
                    message: format!("{url} is not an https:// URL"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        // The image's entrypoint is the nestplane binary.
        "args": std::iter::once("wait-for".to_string()).chain(addresses).collect::<Vec<_>>(),
        "resources": { "requests": { "cpu": "5m", "memory": "16Mi" } },
        "securityContext": container_security(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_host_and_port_of_each_url() {
        let container = init_container(
            "ghcr.io/nestplane/nestplane:dev",
            &["https://demo-etcd-client.team-a.svc:2379".to_string()],
        )
        .expect("container");
        assert_eq!(
            container["args"],
            json!(["wait-for", "demo-etcd-client.team-a.svc:2379"])
        );
        assert!(init_container("x", &["http://a:1".to_string()]).is_err());
    }
}
