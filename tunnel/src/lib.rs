//! A reverse tunnel from a hosted API server to the worker nodes it cannot route to.
//!
//! The [`server`] runs beside kube-apiserver. It serves the egress selector's `HTTPConnect`
//! protocol on a Unix socket, and accepts agents on a TLS port. An [`agent`] on each node dials
//! out to the server, authenticates with a bearer token, and upgrades its connection; from then
//! on the roles reverse: the server is an HTTP/2 client and the agent an HTTP/2 server, and each
//! dial of the API server is one HTTP/2 `CONNECT` stream that the agent turns into a TCP
//! connection. HTTP/2 gives the multiplexing, the per-stream flow control (back-pressure and
//! bounded memory, see [`Tuning`]) and the keepalive pings.
//!
//! Several API server replicas: each server announces its id and the number of servers in its
//! `101` answer, and each agent keeps one connection to every distinct server id, so every
//! replica can reach every agent.
#![forbid(unsafe_code)]

pub mod agent;
mod auth;
mod error;
mod metrics;
mod relay;
pub mod server;
mod tls;
mod tuning;

pub use auth::{AgentAuthenticator, AgentIdentity, AuthError};
pub use error::Error;
pub use metrics::{DialFailure, Metrics, MetricsSnapshot};
pub use tls::{client_tls_config, server_tls_config};
pub use tuning::Tuning;

/// The path of the agent's upgrade request.
pub const TUNNEL_PATH: &str = "/v1/tunnel";
/// The protocol named in the `Upgrade` header of the agent's request.
pub const UPGRADE_PROTOCOL: &str = "nestplane-tunnel";
/// The `101` answer's header naming the server the agent reached.
pub const HEADER_SERVER_ID: &str = "nestplane-tunnel-server-id";
/// The `101` answer's header giving how many servers share the endpoint.
pub const HEADER_SERVER_COUNT: &str = "nestplane-tunnel-server-count";
/// The agent's header naming its node.
pub const HEADER_NODE_NAME: &str = "nestplane-tunnel-node-name";
/// The agent's header listing its node's addresses, comma-separated.
pub const HEADER_NODE_ADDRESSES: &str = "nestplane-tunnel-node-addresses";
/// The agent's header on a failed dial: the [`DialFailure`] reason.
pub const HEADER_DIAL_FAILURE: &str = "nestplane-tunnel-dial-failure";
