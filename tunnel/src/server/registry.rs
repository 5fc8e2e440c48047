//! The agents connected to this server, and which one serves a dial.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;

use crate::AgentIdentity;

/// An agent as the server sees it, for status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedAgent {
    pub identity: AgentIdentity,
    pub node_name: String,
    pub addresses: Vec<String>,
}

pub(super) struct AgentHandle {
    pub(super) agent: ConnectedAgent,
    /// Tells this connection from a newer one of the same agent.
    pub(super) connection: u64,
    pub(super) sender: SendRequest<Empty<Bytes>>,
}

impl AgentHandle {
    fn serves(&self, host: &str) -> bool {
        self.agent.node_name == host || self.agent.addresses.iter().any(|a| a == host)
    }
}

#[derive(Default)]
pub(super) struct AgentRegistry {
    // Ordered by identity, so that round robin over it is stable while nobody (dis)connects.
    agents: Mutex<BTreeMap<String, Arc<AgentHandle>>>,
    next_connection: AtomicU64,
    round_robin: AtomicUsize,
}

impl AgentRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<AgentHandle>>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still usable.
        self.agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an agent's connection; returns the older connection of the same agent it replaces.
    pub(super) fn insert(&self, handle: AgentHandle) -> Option<Arc<AgentHandle>> {
        self.lock()
            .insert(handle.agent.identity.id.clone(), Arc::new(handle))
    }

    /// Removes the agent if `connection` is still its current one (not already replaced).
    pub(super) fn remove(&self, identity: &AgentIdentity, connection: u64) -> bool {
        let mut agents = self.lock();
        if agents
            .get(&identity.id)
            .is_some_and(|h| h.connection == connection)
        {
            agents.remove(&identity.id);
            return true;
        }
        false
    }

    pub(super) fn list(&self) -> Vec<ConnectedAgent> {
        self.lock().values().map(|h| h.agent.clone()).collect()
    }

    /// The agents to try for a dial to `host`, best first: the agents of the node that has the
    /// address (or name) `host`, then every other agent, starting at a rotating position so that
    /// dials to pods and Services spread over the nodes.
    pub(super) fn candidates(&self, host: &str) -> Vec<Arc<AgentHandle>> {
        let agents = self.lock();
        let (mut matching, others): (Vec<_>, Vec<_>) = agents.values().cloned().partition(|h| h.serves(host));
        if !others.is_empty() {
            let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % others.len();
            matching.extend(others[start..].iter().cloned());
            matching.extend(others[..start].iter().cloned());
        }
        matching
    }
}

/// The host of a CONNECT authority (`host:port`, `[v6]:port`), as agents list their addresses.
pub(super) fn host_of(authority: &http::uri::Authority) -> &str {
    authority.host().trim_start_matches('[').trim_end_matches(']')
}
