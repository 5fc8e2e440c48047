//! An in-memory [`Compute`] for unit tests of code that decides which servers to create, keep or
//! delete. It answers as [`Client`](crate::Client) does (a new server is BUILD, a deleted one is
//! gone, look-ups by name or ID with the same failures), keeps no time and makes no request.
//! Tests move servers along with [`Cloud::set_status`] and make the next call of an operation
//! fail with [`Cloud::fail_next`]. Ports are kept as Neutron keeps them: an address is taken by
//! one port only, a server's ports name it as their device, and deleting the server leaves them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::{self, BoxFuture};

use crate::{Compute, Error, Failure, FixedIp, Port, PortSpec, Result, Server, ServerSpec, ServerStatus};

/// A cloud with flavors, images and networks registered by the test, and the servers created
/// through [`Compute`].
#[derive(Debug, Default)]
pub struct Cloud {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    servers: BTreeMap<String, (Server, Vec<u8>)>,
    /// By kind (`flavor`, `image`, `network`): (ID, name) pairs.
    catalog: BTreeMap<&'static str, Vec<(String, String)>>,
    failures: BTreeMap<&'static str, VecDeque<Failure>>,
    created: usize,
    /// Server groups by ID: (name, policy).
    groups: BTreeMap<String, (String, String)>,
    ports: BTreeMap<String, Port>,
    /// How many ports were ever created.
    ports_created: usize,
}

impl Cloud {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a flavor, image or network (`kind` as in [`Failure::NotFound`]).
    pub fn add(&self, kind: &'static str, id: &str, name: &str) -> &Self {
        self.state()
            .catalog
            .entry(kind)
            .or_default()
            .push((id.to_string(), name.to_string()));
        self
    }

    /// Moves a server to `status`, as Nova does once it has built (or failed to build) it.
    /// Returns false if there is no such server.
    pub fn set_status(&self, id: &str, status: ServerStatus) -> bool {
        match self.state().servers.get_mut(id) {
            Some((server, _)) => {
                server.status = status;
                true
            }
            None => false,
        }
    }

    /// Makes the next call of operation `op` (`create server`, `find image`, ... as the client
    /// names them) fail with `failure`; calls queue up in order.
    pub fn fail_next(&self, op: &'static str, failure: Failure) -> &Self {
        self.state().failures.entry(op).or_default().push_back(failure);
        self
    }

    /// Every server, by ID.
    pub fn servers(&self) -> Vec<Server> {
        self.state().servers.values().map(|(s, _)| s.clone()).collect()
    }

    /// Server groups as (name, policy), by ID.
    pub fn server_groups(&self) -> Vec<(String, String)> {
        self.state().groups.values().cloned().collect()
    }

    /// How many servers were ever created (a retried create that made a second server shows here).
    pub fn created(&self) -> usize {
        self.state().created
    }

    /// Every port, by ID.
    pub fn ports(&self) -> Vec<Port> {
        self.state().ports.values().cloned().collect()
    }

    /// How many ports were ever created.
    pub fn ports_created(&self) -> usize {
        self.state().ports_created
    }

    /// A poisoned lock only means another test thread panicked; the state is still consistent,
    /// as every change below is a single insert, remove or assignment.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer<T>(&self, op: &'static str, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut state = self.state();
        if let Some(failure) = state.failures.get_mut(op).and_then(VecDeque::pop_front) {
            return Err(Error::op(op, failure));
        }
        f(&mut state)
    }

    fn find(&self, op: &'static str, kind: &'static str, name_or_id: &str) -> Result<String> {
        self.answer(op, |state| {
            let known = state.catalog.get(kind).map(Vec::as_slice).unwrap_or_default();
            if known.iter().any(|(id, _)| id == name_or_id) {
                return Ok(name_or_id.to_string());
            }
            let matches: Vec<&String> = known
                .iter()
                .filter(|(_, name)| name == name_or_id)
                .map(|(id, _)| id)
                .collect();
            crate::the_one_named(op, kind, name_or_id, &matches)
        })
    }
}

impl Compute for Cloud {
    fn create_server<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, Result<Server>> {
        let result = self.answer("create server", |state| {
            if let Some(missing) = spec.port_ids.iter().find(|id| !state.ports.contains_key(*id)) {
                return Err(Error::op(
                    "create server",
                    Failure::Status {
                        method: "POST".into(),
                        url: "/servers".into(),
                        status: 400,
                        message: format!("Port {missing} could not be found."),
                        request_id: None,
                    },
                ));
            }
            state.created += 1;
            let mut server = Server::building(format!("server-{}", state.created), spec);
            if spec.root_volume.is_some() {
                server.volume_ids.push(format!("volume-{}", state.created));
            }
            for id in &spec.port_ids {
                if let Some(port) = state.ports.get_mut(id) {
                    port.device_id = Some(server.id.clone());
                    let addresses = port.fixed_ips.iter().filter_map(|ip| ip.ip_address.clone());
                    server
                        .addresses
                        .entry(port.network_id.clone())
                        .or_default()
                        .extend(addresses);
                }
            }
            state
                .servers
                .insert(server.id.clone(), (server.clone(), spec.user_data.clone()));
            Ok(server)
        });
        Box::pin(future::ready(result))
    }

    fn get_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>> {
        let result = self.answer("get server", |state| {
            Ok(state.servers.get(id).map(|(s, _)| s.clone()))
        });
        Box::pin(future::ready(result))
    }

    fn list_servers_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Server>>> {
        let result = self.answer("list servers by tag", |state| {
            Ok(state
                .servers
                .values()
                .map(|(s, _)| s)
                .filter(|s| s.tags.iter().any(|t| t == tag))
                .cloned()
                .collect())
        });
        Box::pin(future::ready(result))
    }

    fn delete_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        let result = self.answer("delete server", |state| {
            state.servers.remove(id);
            // Nova detaches the ports it did not make; they stay until deleted.
            for port in state.ports.values_mut() {
                if port.device_id.as_deref() == Some(id) {
                    port.device_id = None;
                }
            }
            Ok(())
        });
        Box::pin(future::ready(result))
    }

    fn get_user_data<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        const OP: &str = "get user data";
        let result = self.answer(OP, |state| match state.servers.get(id) {
            Some((_, data)) if data.is_empty() => Ok(None),
            Some((_, data)) => Ok(Some(data.clone())),
            None => Err(Error::op(
                OP,
                Failure::NotFound {
                    kind: "server",
                    name: id.to_string(),
                },
            )),
        });
        Box::pin(future::ready(result))
    }

    fn find_flavor<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(future::ready(self.find("find flavor", "flavor", name_or_id)))
    }

    fn ensure_server_group<'a>(&'a self, name: &'a str, policy: &'a str) -> BoxFuture<'a, Result<String>> {
        let result = self.answer("ensure server group", |state| {
            if let Some((id, _)) = state.groups.iter().find(|(_, (n, _))| n == name) {
                return Ok(id.clone());
            }
            let id = format!("group-{}", state.groups.len() + 1);
            state
                .groups
                .insert(id.clone(), (name.to_string(), policy.to_string()));
            Ok(id)
        });
        Box::pin(future::ready(result))
    }

    fn delete_server_groups<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        let result = self.answer("delete server group", |state| {
            state.groups.retain(|_, (n, _)| n != name);
            Ok(())
        });
        Box::pin(future::ready(result))
    }

    fn find_image<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(future::ready(self.find("find image", "image", name_or_id)))
    }

    fn find_network<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(future::ready(self.find("find network", "network", name_or_id)))
    }

    /// Subnets are registered without their network: the fake trusts the test to name one of
    /// the network's.
    fn find_subnet<'a>(&'a self, _network_id: &'a str, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(future::ready(self.find("find subnet", "subnet", name_or_id)))
    }

    fn find_security_group<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(future::ready(self.find(
            "find security group",
            "security group",
            name_or_id,
        )))
    }

    fn create_port<'a>(&'a self, spec: &'a PortSpec) -> BoxFuture<'a, Result<Port>> {
        let result = self.answer("create port", |state| {
            if let Some(named) = state
                .ports
                .values_mut()
                .find(|p| p.name == spec.name && p.network_id == spec.network_id)
            {
                named.tags = spec.tags.clone();
                return Ok(named.clone());
            }
            let taken: Vec<&String> = state
                .ports
                .values()
                .flat_map(|p| &p.fixed_ips)
                .filter_map(|ip| ip.ip_address.as_ref())
                .collect();
            if let Some(address) = spec
                .fixed_ips
                .iter()
                .filter_map(|ip| ip.ip_address.as_ref())
                .find(|a| taken.contains(a))
            {
                return Err(Error::op(
                    "create port",
                    Failure::Status {
                        method: "POST".into(),
                        url: "/ports".into(),
                        status: 409,
                        message: format!("IP address {address} already allocated in subnet"),
                        request_id: None,
                    },
                ));
            }
            state.ports_created += 1;
            let n = state.ports_created;
            let mut port = Port::requested(format!("port-{n}"), spec);
            // Neutron picks a free address where none was asked for.
            for ip in &mut port.fixed_ips {
                ip.ip_address
                    .get_or_insert_with(|| format!("10.0.{}.{}", n / 250, n % 250 + 2));
            }
            if port.fixed_ips.is_empty() {
                port.fixed_ips.push(FixedIp {
                    subnet_id: "subnet-default".into(),
                    ip_address: Some(format!("10.0.{}.{}", n / 250, n % 250 + 2)),
                });
            }
            state.ports.insert(port.id.clone(), port.clone());
            Ok(port)
        });
        Box::pin(future::ready(result))
    }

    fn list_ports_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Port>>> {
        let result = self.answer("list ports by tag", |state| {
            Ok(state
                .ports
                .values()
                .filter(|p| p.tags.iter().any(|t| t == tag))
                .cloned()
                .collect())
        });
        Box::pin(future::ready(result))
    }

    fn delete_port<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        let result = self.answer("delete port", |state| {
            state.ports.remove(id);
            Ok(())
        });
        Box::pin(future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    fn spec(name: &str, tag: &str) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            tags: vec![tag.into()],
            user_data: b"#cloud-config\n".to_vec(),
            ..ServerSpec::default()
        }
    }

    #[test]
    fn a_created_server_builds_is_found_by_tag_and_is_gone_once_deleted() {
        let cloud = Cloud::new();
        let compute: &dyn Compute = &cloud;
        let server = block_on(compute.create_server(&spec("pool-0", "uid-1"))).expect("create");
        block_on(compute.create_server(&spec("other-0", "uid-2"))).expect("create");
        assert_eq!(server.status, ServerStatus::Build);

        assert!(cloud.set_status(&server.id, ServerStatus::Active));
        let tagged = block_on(compute.list_servers_by_tag("uid-1")).expect("list");
        assert_eq!(tagged.len(), 1);
        assert_eq!(
            (tagged[0].name.as_str(), &tagged[0].status),
            ("pool-0", &ServerStatus::Active)
        );
        assert_eq!(
            block_on(compute.get_user_data(&server.id)).expect("user data"),
            Some(b"#cloud-config\n".to_vec())
        );

        block_on(compute.delete_server(&server.id)).expect("delete");
        block_on(compute.delete_server(&server.id)).expect("deleting a gone server is no error");
        assert_eq!(block_on(compute.get_server(&server.id)).expect("get"), None);
        assert_eq!(cloud.created(), 2);
    }

    #[test]
    fn look_ups_by_name_or_id_fail_as_the_client_does() {
        let cloud = Cloud::new();
        cloud
            .add("image", "img-1", "debian-12")
            .add("network", "net-1", "workers")
            .add("network", "net-2", "workers");
        assert_eq!(block_on(cloud.find_image("debian-12")).expect("by name"), "img-1");
        assert_eq!(block_on(cloud.find_image("img-1")).expect("by id"), "img-1");
        let missing = block_on(cloud.find_flavor("m1.small")).expect_err("no flavors");
        assert_eq!(
            missing.to_string(),
            r#"OpenStack find flavor: flavor "m1.small" not found"#
        );
        assert!(!missing.is_transient());
        let ambiguous = block_on(cloud.find_network("workers")).expect_err("two networks");
        assert!(matches!(
            ambiguous.failure(),
            Some(Failure::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn an_injected_failure_answers_the_next_call_only() {
        let cloud = Cloud::new();
        cloud.fail_next(
            "create server",
            Failure::Status {
                method: "POST".into(),
                url: "/servers".into(),
                status: 503,
                message: "try later".into(),
                request_id: None,
            },
        );
        let error = block_on(cloud.create_server(&spec("pool-0", "uid-1"))).expect_err("injected");
        assert_eq!(error.status(), Some(503));
        assert!(error.is_transient());
        assert!(cloud.servers().is_empty(), "a failed create makes no server");
        block_on(cloud.create_server(&spec("pool-0", "uid-1"))).expect("the retry succeeds");
        assert_eq!(cloud.servers().len(), 1);
    }

    #[test]
    fn a_port_keeps_its_address_for_one_port_and_outlives_its_server() {
        let cloud = Cloud::new();
        let asked = PortSpec {
            name: "pool-0-0".into(),
            network_id: "net-1".into(),
            fixed_ips: vec![FixedIp {
                subnet_id: "sub-1".into(),
                ip_address: Some("10.9.0.7".into()),
            }],
            tags: vec!["uid-1".into()],
            ..PortSpec::default()
        };
        let port = block_on(cloud.create_port(&asked)).expect("create port");
        let again = block_on(cloud.create_port(&asked)).expect("a second create of the same name");
        assert_eq!(again, port, "the port of that name is returned, not made again");
        let other = PortSpec {
            name: "pool-1-0".into(),
            ..asked.clone()
        };
        let taken = block_on(cloud.create_port(&other)).expect_err("the address is taken");
        assert_eq!(taken.status(), Some(409));
        assert_eq!(cloud.ports_created(), 1);

        let server = block_on(cloud.create_server(&ServerSpec {
            port_ids: vec![port.id.clone()],
            ..spec("pool-0", "uid-1")
        }))
        .expect("create server");
        assert_eq!(server.fixed_ips(), ["10.9.0.7"]);
        let tagged = block_on(cloud.list_ports_by_tag("uid-1")).expect("list");
        assert_eq!(tagged.len(), 1);
        assert_eq!(tagged[0].device_id.as_deref(), Some(server.id.as_str()));

        block_on(cloud.delete_server(&server.id)).expect("delete server");
        let left = block_on(cloud.list_ports_by_tag("uid-1")).expect("list");
        assert_eq!(left.len(), 1, "Nova leaves a port it did not make");
        assert_eq!(left[0].device_id, None);
        block_on(cloud.delete_port(&port.id)).expect("delete port");
        block_on(cloud.delete_port(&port.id)).expect("deleting a gone port is no error");
        assert!(cloud.ports().is_empty());
    }
}
