use std::fmt;

use futures::future::BoxFuture;

/// Who an authenticated agent is. A newer connection with the same `id` (to the same server)
/// replaces the older one, so the id must tell agents apart: with one service account for the
/// whole DaemonSet, the operator's implementation adds the node the token is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgentIdentity {
    pub id: String,
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Why an agent was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not valid for an agent, or does not match the node it claims: `403`.
    #[error("agent rejected: {0}")]
    Rejected(String),
    /// The check itself failed (e.g. the TokenReview could not be sent): `503`, the agent retries.
    #[error("agent authentication unavailable: {0}")]
    Unavailable(String),
}

/// Checks an agent's bearer token. The operator implements it with a TokenReview against the
/// hosted API server; tests implement it in memory.
pub trait AgentAuthenticator: Send + Sync + 'static {
    /// `node_name` is what the agent claims (its `nestplane-tunnel-node-name` header), so that an
    /// implementation can check the token is bound to that node.
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        node_name: &'a str,
    ) -> BoxFuture<'a, Result<AgentIdentity, AuthError>>;
}
