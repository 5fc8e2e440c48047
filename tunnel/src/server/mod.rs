//! The tunnel server: HTTPConnect for the API server on a Unix socket, agents on TLS.
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tracing::{Instrument, info_span, warn};

use crate::{AgentAuthenticator, Metrics, Tuning};

mod agents;
mod connect;
mod registry;

pub use registry::ConnectedAgent;

/// How long a client may take to send its request head (the CONNECT, or the agent's POST), and
/// an agent its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This server's id, unique among the servers that share the agents' endpoint (e.g. the
    /// API server pod's name). Agents keep one connection per distinct id.
    pub server_id: String,
    /// How many servers share the endpoint (the API server's replicas).
    pub server_count: u32,
    pub tuning: Tuning,
}

/// A tunnel server. Clones share the connected agents.
#[derive(Clone)]
pub struct TunnelServer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ServerConfig,
    authenticator: Arc<dyn AgentAuthenticator>,
    metrics: Metrics,
    agents: registry::AgentRegistry,
}

impl TunnelServer {
    pub fn new(config: ServerConfig, authenticator: Arc<dyn AgentAuthenticator>, metrics: Metrics) -> Self {
        let shared = Shared {
            config,
            authenticator,
            metrics,
            agents: registry::AgentRegistry::default(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Serves the API server's egress dials (`CONNECT host:port HTTP/1.1`), one per Unix socket
    /// connection, until the future is dropped.
    pub async fn serve_connect(&self, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let shared = self.shared.clone();
                    tokio::spawn(connect::serve(shared, stream).instrument(info_span!("dial")));
                }
                Err(error) => accept_failed("connect", &error).await,
            }
        }
    }

    /// Serves agents on `listener` with TLS `tls` until the future is dropped.
    pub async fn serve_agents(&self, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let shared = self.shared.clone();
                    let acceptor = acceptor.clone();
                    let span = info_span!("agent_connection", %peer, agent = tracing::field::Empty);
                    tokio::spawn(agents::serve(shared, acceptor, stream).instrument(span));
                }
                Err(error) => accept_failed("agents", &error).await,
            }
        }
    }

    /// The agents connected now.
    pub fn agents(&self) -> Vec<ConnectedAgent> {
        self.shared.agents.list()
    }
}

/// Accept fails on a full file table or a connection reset before accept: neither ends the
/// listener; a short pause keeps a full file table from spinning.
async fn accept_failed(listener: &'static str, error: &std::io::Error) {
    warn!(listener, %error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
