//! One connection to a server: the upgrade, then the HTTP/2 server for its CONNECT streams.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{AgentShared, Upgrade};
use crate::metrics::DialFailure;
use crate::relay::relay;
use crate::{
    Error, HEADER_DIAL_FAILURE, HEADER_NODE_ADDRESSES, HEADER_NODE_NAME, HEADER_SERVER_COUNT,
    HEADER_SERVER_ID, TUNNEL_PATH, UPGRADE_PROTOCOL,
};

/// Aborts the HTTP/1.1 connection task of an upgrade that did not complete.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AgentShared {
    pub(super) async fn connect(&self) -> Result<Upgrade, Error> {
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
    pub(super) async fn serve(self: Arc<Self>, upgrade: Upgrade) -> Duration {
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
