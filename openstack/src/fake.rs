//! An in-memory [`Compute`] for unit tests of code that decides which servers to create, keep or
//! delete. It answers as [`Client`](crate::Client) does (a new server is BUILD, a deleted one is
//! gone, look-ups by name or ID with the same failures), keeps no time and makes no request.
//! Tests move servers along with [`Cloud::set_status`] and make the next call of an operation
//! fail with [`Cloud::fail_next`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::{self, BoxFuture};

use crate::{Compute, Error, Failure, Result, Server, ServerSpec, ServerStatus};

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
            state.created += 1;
            let server = Server::building(format!("server-{}", state.created), spec);
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
}
