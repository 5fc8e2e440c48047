//! The tunnel agent: dials the server, authenticates, and serves the server's CONNECT streams
//! by dialling their targets from this node.
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::DialFailure;
use crate::relay::relay;
use crate::{
    Error, HEADER_DIAL_FAILURE, HEADER_NODE_ADDRESSES, HEADER_NODE_NAME, HEADER_SERVER_COUNT,
    HEADER_SERVER_ID, Metrics, TUNNEL_PATH, Tuning, UPGRADE_PROTOCOL,
};

/// Where the agent's bearer token comes from. A projected service-account token is rotated by
/// the kubelet, so a file is read again for each connection.
#[derive(Clone, Debug)]
pub enum TokenSource {
    Static(String),
    File(PathBuf),
}

impl TokenSource {
    async fn read(&self) -> Result<String, Error> {
        match self {
            Self::Static(token) => Ok(token.clone()),
            Self::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| t.trim().to_string())
                .map_err(|source| Error::ReadToken {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }
}

/// Sooner than this, a restarted server is rarely ready to take agents.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A node's agent retries at least this often while its server is away.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The servers' endpoint, `host:port`; the host is also the TLS server name.
    pub endpoint: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub token: TokenSource,
    pub node_name: String,
    /// The node's addresses: dials to them are sent to this agent.
    pub node_addresses: Vec<String>,
    pub tuning: Tuning,
    /// Reconnect backoff: exponential with jitter between these bounds
    /// ([`DEFAULT_MIN_BACKOFF`], [`DEFAULT_MAX_BACKOFF`] unless a test needs them shorter).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

pub struct Agent {
    shared: Arc<AgentShared>,
}

struct AgentShared {
    config: AgentConfig,
    server_name: ServerName<'static>,
    metrics: Metrics,
}

/// An upgraded connection to one server, not yet served.
struct Upgrade {
    server_id: String,
    server_count: usize,
    io: Upgraded,
}

impl Agent {
    pub fn new(config: AgentConfig, metrics: Metrics) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.into(),
        };
        let (host, port) = config
            .endpoint
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:port"))?;
        port.parse::<u16>()
            .map_err(|_| invalid("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            shared: Arc::new(AgentShared {
                config,
                server_name,
                metrics,
            }),
        })
    }

    /// Keeps one connection to each server behind the endpoint, reconnecting with backoff,
    /// until the future is dropped (which closes every connection).
    pub async fn run(self) {
        let config = &self.shared.config;
        let mut backoff = Backoff::new(config.min_backoff, config.max_backoff);
        let mut connections = Connections::default();
        let mut wanted = 1;
        let mut pause = None;
        loop {
            let mut lifetimes = Vec::new();
            while let Some(ended) = connections.tasks.try_join_next_with_id() {
                lifetimes.push(connections.ended(ended));
            }
            if lifetimes.is_empty()
                && connections.len() >= wanted
                && let Some(ended) = connections.tasks.join_next_with_id().await
            {
                lifetimes.push(connections.ended(ended));
            }
            for lived in lifetimes {
                // A connection that ends soon after it was made (a server that closes it, a
                // second agent with the same identity replacing this one) counts as a failure,
                // so that such a cycle backs off too.
                if lived >= STABLE_CONNECTION {
                    backoff.reset();
                } else {
                    pause = Some(backoff.next());
                }
            }
            if connections.len() >= wanted {
                continue;
            }
            if let Some(delay) = pause.take() {
                tokio::time::sleep(delay).await;
            }
            match self.shared.connect().await {
                Ok(upgrade) if connections.holds(&upgrade.server_id) => {
                    // The endpoint led to a server already held: drop this one and try again
                    // soon, the balancer may pick another.
                    debug!(server = %upgrade.server_id, "already connected to this server");
                    wanted = upgrade.server_count;
                    pause = Some(config.min_backoff);
                }
                Ok(upgrade) => {
                    wanted = upgrade.server_count;
                    connections.spawn(self.shared.clone(), upgrade);
                }
                Err(error) => {
                    let delay = backoff.next();
                    warn!(%error, ?delay, "connecting to the tunnel server failed; retrying");
                    pause = Some(delay);
                }
            }
        }
    }
}

/// A connection that lasted this long was a working one: after it ends, the backoff starts over.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter between two bounds, without end.
struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// The connections held, one per server id; each task returns how long its connection lasted.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<Duration>,
    server_of: HashMap<tokio::task::Id, String>,
}

impl Connections {
    fn len(&self) -> usize {
        self.server_of.len()
    }

    fn holds(&self, server_id: &str) -> bool {
        self.server_of.values().any(|s| s == server_id)
    }

    fn spawn(&mut self, shared: Arc<AgentShared>, upgrade: Upgrade) {
        let server = upgrade.server_id.clone();
        let span = info_span!("server_connection", server = %server);
        let task = self.tasks.spawn(shared.serve(upgrade).instrument(span));
        self.server_of.insert(task.id(), server);
    }

    /// Forgets an ended connection; returns how long it lasted.
    fn ended(&mut self, ended: Result<(tokio::task::Id, Duration), tokio::task::JoinError>) -> Duration {
        let (id, lived) = match ended {
            Ok(ended) => ended,
            Err(error) => (error.id(), Duration::ZERO),
        };
        self.server_of.remove(&id);
        lived
    }
}

/// Aborts the HTTP/1.1 connection task of an upgrade that did not complete.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AgentShared {
    async fn connect(&self) -> Result<Upgrade, Error> {
        let endpoint = &self.config.endpoint;
        let token = self.config.token.read().await?;
        let timeout = self.config.tuning.dial_timeout;
        let timed_out = || Error::ConnectTimeout {
            endpoint: endpoint.clone(),
        };

        let tcp = tokio::time::timeout(timeout, TcpStream::connect(endpoint.as_str()))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| Error::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "setting TCP_NODELAY");
        }
        let connector = tokio_rustls::TlsConnector::from(self.config.tls.clone());
        let tls = tokio::time::timeout(timeout, connector.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| Error::Handshake {
                endpoint: endpoint.clone(),
                source,
            })?;

        let request_failed = |source| Error::UpgradeRequest {
            endpoint: endpoint.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(request_failed)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                debug!(%error, "upgrade connection ended with an error");
            }
        }));
        let request = self.upgrade_request(&token)?;
        let response = tokio::time::timeout(timeout, sender.send_request(request))
            .await
            .map_err(|_| timed_out())?
            .map_err(request_failed)?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let reason = match Limited::new(response.into_body(), 4096).collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
                Err(error) => format!("(reading the answer: {error})"),
            };
            return Err(Error::Refused {
                endpoint: endpoint.clone(),
                status,
                reason,
            });
        }
        let header = |name: &'static str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .ok_or(Error::MissingHeader {
                    endpoint: endpoint.clone(),
                    header: name,
                })
        };
        let server_id = header(HEADER_SERVER_ID)?;
        let server_count = header(HEADER_SERVER_COUNT)?.parse::<usize>().unwrap_or(1).max(1);
        let io = hyper::upgrade::on(response).await.map_err(request_failed)?;
        info!(server = %server_id, server_count, "connected to the tunnel server");
        Ok(Upgrade {
            server_id,
            server_count,
            io,
        })
    }

    fn upgrade_request(&self, token: &str) -> Result<Request<Empty<Bytes>>, Error> {
        Request::builder()
            .method(Method::POST)
            .uri(TUNNEL_PATH)
            .header(header::HOST, self.config.endpoint.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, UPGRADE_PROTOCOL)
            .header(HEADER_NODE_NAME, self.config.node_name.as_str())
            .header(HEADER_NODE_ADDRESSES, self.config.node_addresses.join(","))
            .body(Empty::new())
            .map_err(|source| Error::Request {
                what: "upgrade to the tunnel",
                source,
            })
    }

    /// Serves the server's CONNECT streams on one upgraded connection until it ends.
    /// Returns how long the connection lasted.
    async fn serve(self: Arc<Self>, upgrade: Upgrade) -> Duration {
        let started = tokio::time::Instant::now();
        let _connected = self.metrics.connection_guard();
        let tuning = &self.config.tuning;
        let shared = self.clone();
        let service = service_fn(move |req| shared.clone().stream(req));
        let served = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .adaptive_window(false)
            .initial_stream_window_size(tuning.stream_window)
            .initial_connection_window_size(tuning.connection_window)
            .max_send_buf_size(usize::try_from(tuning.stream_send_buffer).unwrap_or(usize::MAX))
            .max_concurrent_streams(tuning.max_concurrent_streams)
            .keep_alive_interval(tuning.keepalive_interval)
            .keep_alive_timeout(tuning.keepalive_timeout)
            .serve_connection(upgrade.io, service)
            .await;
        match served.map_err(|source| Error::Serve {
            server_id: upgrade.server_id,
            source,
        }) {
            Ok(()) => info!("tunnel server closed the connection"),
            Err(error) => warn!(%error, "connection to the tunnel server lost"),
        }
        started.elapsed()
    }

    /// One CONNECT stream: dial the target, answer 200 and relay, or answer why not.
    async fn stream(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        if req.method() != Method::CONNECT {
            return Ok(dial_refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                DialFailure::Other,
                "only CONNECT",
            ));
        }
        let Some(target) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(dial_refusal(
                StatusCode::BAD_REQUEST,
                DialFailure::Other,
                "CONNECT needs host:port",
            ));
        };
        let span = info_span!("stream", %target);
        let tcp = match self.dial(&target).instrument(span.clone()).await {
            Ok(tcp) => tcp,
            Err((failure, reason)) => {
                self.metrics.dial_failed(failure);
                span.in_scope(|| info!(reason = failure.as_str(), detail = %reason, "dial failed"));
                let status = match failure {
                    DialFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                return Ok(dial_refusal(status, failure, &reason));
            }
        };
        let shared = self.clone();
        tokio::spawn(
            async move {
                let _open = shared.metrics.stream_guard();
                let upgraded = match hyper::upgrade::on(req).await {
                    Ok(upgraded) => upgraded,
                    Err(error) => return warn!(%error, "upgrading the stream failed"),
                };
                let idle = shared.config.tuning.stream_idle_timeout;
                match relay(TokioIo::new(upgraded), tcp, idle, &shared.metrics).await {
                    Ok((outbound, inbound)) => debug!(outbound, inbound, "stream closed"),
                    Err(error) => info!(%error, "stream ended"),
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Full::new(Bytes::new())))
    }

    async fn dial(&self, target: &str) -> Result<TcpStream, (DialFailure, String)> {
        let timeout = self.config.tuning.dial_timeout;
        let dial = async {
            let addresses: Vec<_> = tokio::net::lookup_host(target)
                .await
                .map_err(|e| (DialFailure::Resolve, format!("resolving {target}: {e}")))?
                .collect();
            TcpStream::connect(addresses.as_slice())
                .await
                .map_err(|e| (DialFailure::of_io(&e), format!("dialling {target}: {e}")))
        };
        let tcp = tokio::time::timeout(timeout, dial).await.map_err(|_| {
            (
                DialFailure::Timeout,
                format!("dialling {target}: no answer within {timeout:?}"),
            )
        })??;
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "setting TCP_NODELAY");
        }
        Ok(tcp)
    }
}

fn dial_refusal(status: StatusCode, failure: DialFailure, reason: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(HEADER_DIAL_FAILURE, HeaderValue::from_static(failure.as_str()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_file_is_read_afresh_and_trimmed() {
        let path = std::env::temp_dir().join(format!("nestplane-tunnel-token-{}", std::process::id()));
        let source = TokenSource::File(path.clone());
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "first");
        // The kubelet rotated the projected token.
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "second");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.read().await, Err(Error::ReadToken { .. })));
    }

    #[test]
    fn the_endpoint_must_be_host_and_port() {
        let config = |endpoint: &str| AgentConfig {
            endpoint: endpoint.to_string(),
            tls: Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            token: TokenSource::Static("t".into()),
            node_name: "worker-0".into(),
            node_addresses: vec![],
            tuning: Tuning::default(),
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        };
        for good in ["192.0.2.2:31443", "tunnel.example:443", "[2001:db8::1]:443"] {
            assert!(Agent::new(config(good), Metrics::new()).is_ok(), "{good}");
        }
        for bad in ["192.0.2.2", "host:port", ":443"] {
            assert!(
                matches!(
                    Agent::new(config(bad), Metrics::new()),
                    Err(Error::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }
}
