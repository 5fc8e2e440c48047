//! Neutron ports for workers that ask for fixed subnets or addresses: created before the server
//! and deleted once it is gone. As Cluster API's OpenStack provider does, a port is looked up by
//! name and network before one is created (so a create whose answer was lost is not sent again),
//! and tagged with `PUT /ports/{id}/tags` afterwards: Neutron ignores tags in a port create.

use reqwest::Method;
use serde_json::{Value, json};

use super::wire::{decode_failure, enc};
use super::{Client, Error, Result};
use crate::{FixedIp, Port, PortSpec};

impl Client {
    /// The one subnet named `name_or_id` on the network `network_id` (or with that ID).
    pub(super) async fn subnet(&self, network_id: &str, name_or_id: &str) -> Result<String> {
        const OP: &str = "find subnet";
        let by_id = format!("/subnets/{}", enc(name_or_id));
        if let Some(found) = self.call(OP, "network", Method::GET, &by_id, None).await?
            && let Some(id) = found["subnet"]["id"].as_str()
        {
            return Ok(id.to_string());
        }
        let by_name = format!("/subnets?name={}&network_id={}", enc(name_or_id), enc(network_id));
        let list = self
            .call(OP, "network", Method::GET, &by_name, None)
            .await?
            .unwrap_or(Value::Null);
        crate::the_one_named(OP, "subnet", name_or_id, &ids_named(&list["subnets"], name_or_id))
    }

    /// The one security group named `name_or_id` (or with that ID).
    pub(super) async fn security_group(&self, name_or_id: &str) -> Result<String> {
        const OP: &str = "find security group";
        let by_id = format!("/security-groups/{}", enc(name_or_id));
        if let Some(found) = self.call(OP, "network", Method::GET, &by_id, None).await?
            && let Some(id) = found["security_group"]["id"].as_str()
        {
            return Ok(id.to_string());
        }
        let by_name = format!("/security-groups?name={}", enc(name_or_id));
        let list = self
            .call(OP, "network", Method::GET, &by_name, None)
            .await?
            .unwrap_or(Value::Null);
        crate::the_one_named(
            OP,
            "security group",
            name_or_id,
            &ids_named(&list["security_groups"], name_or_id),
        )
    }

    /// The port named `spec.name` on its network, created if there is none, with `spec.tags`.
    pub(super) async fn ensure_port(&self, spec: &PortSpec) -> Result<Port> {
        const OP: &str = "create port";
        let path = format!(
            "/ports?name={}&network_id={}",
            enc(&spec.name),
            enc(&spec.network_id)
        );
        let list = self
            .call(OP, "network", Method::GET, &path, None)
            .await?
            .unwrap_or(Value::Null);
        let named: Vec<Port> = list["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"].as_str() == Some(spec.name.as_str()))
            .map(|p| parse_port(p).map_err(|message| Error::op(OP, decode_failure("/ports", &message))))
            .collect::<Result<_>>()?;
        let mut port = match named.into_iter().next() {
            Some(port) => port,
            None => self.create_port_request(spec).await?,
        };
        if spec.tags.iter().any(|t| !port.tags.contains(t)) {
            let path = format!("/ports/{}/tags", enc(&port.id));
            let body = json!({ "tags": spec.tags });
            self.call("tag port", "network", Method::PUT, &path, Some(&body))
                .await?;
            port.tags = spec.tags.clone();
        }
        Ok(port)
    }

    async fn create_port_request(&self, spec: &PortSpec) -> Result<Port> {
        const OP: &str = "create port";
        let mut port = json!({
            "name": spec.name,
            "network_id": spec.network_id,
        });
        if !spec.fixed_ips.is_empty() {
            port["fixed_ips"] = spec
                .fixed_ips
                .iter()
                .map(|ip| match &ip.ip_address {
                    Some(address) => json!({ "subnet_id": ip.subnet_id, "ip_address": address }),
                    None => json!({ "subnet_id": ip.subnet_id }),
                })
                .collect();
        }
        if !spec.security_group_ids.is_empty() {
            port["security_groups"] = json!(spec.security_group_ids);
        }
        let created = self
            .call(
                OP,
                "network",
                Method::POST,
                "/ports",
                Some(&json!({ "port": port })),
            )
            .await?
            .unwrap_or(Value::Null);
        parse_port(&created["port"]).map_err(|message| Error::op(OP, decode_failure("/ports", &message)))
    }

    pub(super) async fn ports_by_tag(&self, tag: &str) -> Result<Vec<Port>> {
        const OP: &str = "list ports by tag";
        // Neutron lists every match unless asked to page; a worker has a few ports, a pool a few
        // hundred at most.
        let path = format!("/ports?tags={}", enc(tag));
        let list = self
            .call(OP, "network", Method::GET, &path, None)
            .await?
            .unwrap_or(Value::Null);
        list["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| parse_port(p).map_err(|message| Error::op(OP, decode_failure("/ports", &message))))
            .collect()
    }

    pub(super) async fn delete_port_request(&self, id: &str) -> Result<()> {
        let path = format!("/ports/{}", enc(id));
        // None: already gone.
        self.call("delete port", "network", Method::DELETE, &path, None)
            .await
            .map(drop)
    }
}

/// IDs of the objects in a Neutron list whose name is exactly `name` (Neutron's `name=` filter
/// is exact, but a proxy or an old release may ignore it).
fn ids_named<'v>(list: &'v Value, name: &str) -> Vec<&'v str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["name"].as_str() == Some(name))
        .filter_map(|o| o["id"].as_str())
        .collect()
}

fn parse_port(v: &Value) -> Result<Port, String> {
    let text = |key: &str| v[key].as_str().map(str::to_string);
    let id = text("id").ok_or("port without id")?;
    let fixed_ips = v["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| FixedIp {
            subnet_id: ip["subnet_id"].as_str().unwrap_or_default().to_string(),
            ip_address: ip["ip_address"].as_str().map(str::to_string),
        })
        .collect();
    Ok(Port {
        id,
        name: text("name").unwrap_or_default(),
        network_id: text("network_id").unwrap_or_default(),
        fixed_ips,
        device_id: text("device_id").filter(|d| !d.is_empty()),
        tags: v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neutron_port_is_read_with_its_addresses_server_and_tags() {
        let port = parse_port(&json!({
            "id": "p-1", "name": "workers-abcde-0", "network_id": "n-1",
            "fixed_ips": [{"subnet_id": "s-1", "ip_address": "172.31.250.40"}],
            "device_id": "", "tags": ["np-worker:w-uid"],
        }))
        .expect("port");
        assert_eq!(port.device_id, None, "an empty device_id is no server");
        assert_eq!(
            port.fixed_ips,
            [FixedIp {
                subnet_id: "s-1".into(),
                ip_address: Some("172.31.250.40".into())
            }]
        );
        assert_eq!(port.tags, ["np-worker:w-uid"]);
        assert!(parse_port(&json!({"name": "x"})).is_err());
    }
}
