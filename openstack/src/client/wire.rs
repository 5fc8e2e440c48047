//! What goes over the wire: sending a request, reading OpenStack's error bodies and servers.

use reqwest::Method;
use serde_json::{Value, json};

use super::super::{Error, Failure, Result, RootVolumeSpec, Server, ServerSpec, ServerStatus};

/// Sends a request; any non-2xx answer becomes [`Failure::Status`] with the service's message.
pub(super) async fn send(
    op: &'static str,
    method: Method,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    let response = request
        .send()
        .await
        .map_err(|e| Error::op(op, transport(&method, url, &e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let request_id = ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|h| response.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.unwrap_or_default();
    Err(Error::op(
        op,
        Failure::Status {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            message: error_message(&text),
            request_id,
        },
    ))
}

pub(super) async fn read_json(op: &'static str, url: &str, response: reqwest::Response) -> Result<Value> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::op(op, transport(&Method::GET, url, &e)))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::op(op, decode_failure(url, &e.to_string())))
}

/// The message inside OpenStack's error bodies: Nova `{"badRequest": {"message": ..}}`, Neutron
/// `{"NeutronError": {"message": ..}}`, Keystone `{"error": {"message": ..}}`; else the text itself.
pub(super) fn error_message(body: &str) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) {
        for value in map.values() {
            if let Some(message) = value["message"].as_str() {
                return message.to_string();
            }
        }
        if let Some(message) = map.get("message").and_then(Value::as_str) {
            return message.to_string();
        }
    }
    let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.chars().take(300).collect()
    }
}

pub(super) fn transport(method: &Method, url: &str, error: &reqwest::Error) -> Failure {
    // reqwest's Display omits the cause ("connection reset by peer"); walk the chain.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    if error.is_timeout() {
        message = format!("timed out: {message}");
    }
    Failure::Transport {
        method: method.to_string(),
        url: url.to_string(),
        message,
        timeout: error.is_timeout(),
    }
}

pub(super) fn decode_failure(url: &str, message: &str) -> Failure {
    Failure::Decode {
        url: url.into(),
        message: message.into(),
    }
}

pub(super) fn not_found(kind: &'static str, name: &str) -> Failure {
    Failure::NotFound {
        kind,
        name: name.into(),
    }
}

/// Glance and Neutron catalog URLs usually lack the version; Nova's includes it.
pub(super) fn join(service: &str, base: &str, path: &str) -> String {
    let prefix = match service {
        "image" if !base.ends_with("/v2") => "/v2",
        "network" if !base.ends_with("/v2.0") => "/v2.0",
        _ => "",
    };
    format!("{base}{prefix}{path}")
}

/// Percent-encodes a query or path value.
pub(super) fn enc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(super) fn parse_server(v: &Value) -> Result<Server, Failure> {
    let text = |key: &str| v[key].as_str().map(str::to_string);
    let id = text("id").ok_or_else(|| decode_failure("/servers", "server without id"))?;
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let metadata = v["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, val)| val.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    let addresses = v["addresses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(network, list)| {
            let fixed = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["OS-EXT-IPS:type"].as_str().is_none_or(|t| t == "fixed"))
                .filter_map(|a| a["addr"].as_str().map(str::to_string))
                .collect();
            (network.clone(), fixed)
        })
        .collect();
    Ok(Server {
        name: text("name").unwrap_or_default(),
        status: ServerStatus::parse(v["status"].as_str().unwrap_or("UNKNOWN")),
        tags: strings(&v["tags"]),
        metadata,
        addresses,
        availability_zone: text("OS-EXT-AZ:availability_zone").filter(|z| !z.is_empty()),
        fault: v["fault"]["message"].as_str().map(str::to_string),
        volume_ids: v["os-extended-volumes:volumes_attached"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect(),
        created: text("created").filter(|c| !c.is_empty()),
        id,
    })
}

/// The block device mapping that boots a server from a new volume made from its image; the
/// volume goes with the server, so deleting the server leaves no volume behind.
pub(super) fn root_volume_mapping(spec: &ServerSpec, volume: &RootVolumeSpec) -> Value {
    let mut mapping = json!({
        "boot_index": 0,
        "uuid": spec.image_id,
        "source_type": "image",
        "destination_type": "volume",
        "volume_size": volume.size_gib,
        "delete_on_termination": true,
    });
    if let Some(volume_type) = &volume.volume_type {
        mapping["volume_type"] = json!(volume_type);
    }
    mapping
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_service_body() {
        let nova = r#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances"}}"#;
        assert_eq!(error_message(nova), "Quota exceeded for instances");
        let neutron =
            r#"{"NeutronError": {"type": "PortNotFound", "message": "Port x could not be found."}}"#;
        assert_eq!(error_message(neutron), "Port x could not be found.");
        assert_eq!(
            error_message("<html>\n Bad   Gateway </html>"),
            "<html> Bad Gateway </html>"
        );
    }

    #[test]
    fn parses_servers_with_fixed_addresses_only() {
        let server = parse_server(&json!({
            "id": "1", "name": "w-0", "status": "ACTIVE", "tags": ["np"],
            "OS-EXT-AZ:availability_zone": "nestplane-fake",
            "created": "2026-01-01T00:00:00Z",
            "addresses": {"net": [
                {"addr": "172.31.250.11", "OS-EXT-IPS:type": "fixed"},
                {"addr": "203.0.113.5", "OS-EXT-IPS:type": "floating"}]},
        }))
        .unwrap();
        assert_eq!(server.status, ServerStatus::Active);
        assert_eq!(server.fixed_ips(), vec!["172.31.250.11".to_string()]);
        assert_eq!(server.availability_zone.as_deref(), Some("nestplane-fake"));
        assert_eq!(server.created.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn a_root_volume_is_made_from_the_image_and_deleted_with_the_server() {
        let spec = ServerSpec {
            image_id: "img".into(),
            ..Default::default()
        };
        let volume = RootVolumeSpec {
            size_gib: 20,
            volume_type: Some("ssd".into()),
        };
        let mapping = root_volume_mapping(&spec, &volume);
        assert_eq!(
            mapping,
            json!({"boot_index": 0, "uuid": "img", "source_type": "image",
                   "destination_type": "volume", "volume_size": 20,
                   "delete_on_termination": true, "volume_type": "ssd"})
        );
        let default_type = RootVolumeSpec {
            volume_type: None,
            ..volume
        };
        assert!(
            root_volume_mapping(&spec, &default_type)
                .get("volume_type")
                .is_none()
        );
    }

    #[test]
    fn attached_volumes_are_read() {
        let server = parse_server(&json!({
            "id": "1", "status": "ACTIVE",
            "os-extended-volumes:volumes_attached": [{"id": "v-1", "delete_on_termination": true}],
        }))
        .unwrap();
        assert_eq!(server.volume_ids, vec!["v-1".to_string()]);
    }

    #[test]
    fn transient_errors() {
        let status = |s| {
            Error::op(
                "x",
                Failure::Status {
                    method: "GET".into(),
                    url: "u".into(),
                    status: s,
                    message: String::new(),
                    request_id: None,
                },
            )
        };
        assert!(status(409).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(403).is_transient());
        assert!(!status(400).is_transient());
    }

    #[test]
    fn urls() {
        assert_eq!(
            join("image", "http://h:9292", "/images"),
            "http://h:9292/v2/images"
        );
        assert_eq!(
            join("network", "http://h:9696/v2.0", "/networks"),
            "http://h:9696/v2.0/networks"
        );
        assert_eq!(
            join("compute", "http://h/v2.1", "/servers"),
            "http://h/v2.1/servers"
        );
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
