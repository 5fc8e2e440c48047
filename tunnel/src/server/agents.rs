//! The agents' side: TLS, then `POST /v1/tunnel` with a bearer token and `Upgrade`; after the
//! `101` this server is the HTTP/2 client of the upgraded connection.
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, Span, debug, info, warn};

use super::registry::{AgentHandle, ConnectedAgent};
use super::{HANDSHAKE_TIMEOUT, Shared};
use crate::{
    AgentIdentity, AuthError, HEADER_NODE_ADDRESSES, HEADER_NODE_NAME, HEADER_SERVER_COUNT, HEADER_SERVER_ID,
    TUNNEL_PATH, UPGRADE_PROTOCOL,
};

pub(super) async fn serve(shared: Arc<Shared>, acceptor: TlsAcceptor, stream: TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY");
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return info!(%error, "TLS handshake with an agent failed"),
        Err(_) => return info!("TLS handshake with an agent timed out"),
    };
    let span = Span::current();
    let service = service_fn(move |req| upgrade(shared.clone(), req, span.clone()));
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        debug!(%error, "agent's HTTP/1.1 connection ended with an error");
    }
}

/// What the agent says about itself in its upgrade request.
struct Hello {
    token: String,
    node_name: String,
    addresses: Vec<String>,
}

/// Reads the agent's headers, or says what is wrong with them.
fn hello(headers: &HeaderMap) -> Result<Hello, (StatusCode, String)> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let upgrades = text(header::UPGRADE.as_str()).is_some_and(|u| u.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    if !upgrades {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            format!("expected Upgrade: {UPGRADE_PROTOCOL}"),
        ));
    }
    let Some(token) = text(header::AUTHORIZATION.as_str()).and_then(|a| a.strip_prefix("Bearer ")) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "expected Authorization: Bearer <token>".into(),
        ));
    };
    let Some(node_name) = text(HEADER_NODE_NAME).filter(|n| !n.is_empty()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("expected the header {HEADER_NODE_NAME}"),
        ));
    };
    let addresses = text(HEADER_NODE_ADDRESSES)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    Ok(Hello {
        token: token.trim().to_string(),
        node_name: node_name.to_string(),
        addresses,
    })
}

async fn upgrade(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    span: Span,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != TUNNEL_PATH {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            &format!("agents POST {TUNNEL_PATH}"),
        ));
    }
    let hello = match hello(req.headers()) {
        Ok(hello) => hello,
        Err((status, reason)) => return Ok(answer(status, &reason)),
    };
    let identity = match shared
        .authenticator
        .authenticate(&hello.token, &hello.node_name)
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            span.in_scope(|| info!(node = %hello.node_name, %error, "agent refused"));
            let status = match error {
                AuthError::Rejected(_) => StatusCode::FORBIDDEN,
                AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            return Ok(answer(status, &error.to_string()));
        }
    };
    span.record("agent", tracing::field::display(&identity));
    let agent = ConnectedAgent {
        identity,
        node_name: hello.node_name,
        addresses: hello.addresses,
    };
    tokio::spawn(hold(shared.clone(), req, agent).instrument(span));

    let mut switching = Response::new(Full::new(Bytes::new()));
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switching.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    headers.insert(HEADER_SERVER_COUNT, HeaderValue::from(shared.config.server_count));
    match HeaderValue::from_str(&shared.config.server_id) {
        Ok(id) => {
            headers.insert(HEADER_SERVER_ID, id);
        }
        Err(_) => {
            return Ok(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server id is not a header value",
            ));
        }
    }
    Ok(switching)
}

/// Runs the HTTP/2 client on the upgraded connection and offers it for dials until it ends.
async fn hold(shared: Arc<Shared>, req: Request<Incoming>, agent: ConnectedAgent) {
    let upgraded = match hyper::upgrade::on(req).await {
        Ok(upgraded) => upgraded,
        Err(error) => return warn!(%error, "agent's upgrade failed"),
    };
    let tuning = &shared.config.tuning;
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .adaptive_window(false)
        .initial_stream_window_size(tuning.stream_window)
        .initial_connection_window_size(tuning.connection_window)
        .max_send_buf_size(usize::try_from(tuning.stream_send_buffer).unwrap_or(usize::MAX))
        .keep_alive_interval(tuning.keepalive_interval)
        .keep_alive_timeout(tuning.keepalive_timeout)
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(upgraded)
        .await;
    let (sender, connection) = match handshake {
        Ok(parts) => parts,
        Err(error) => return warn!(%error, "HTTP/2 handshake with the agent failed"),
    };
    let identity: AgentIdentity = agent.identity.clone();
    let id = shared.agents.next_connection_id();
    let _connected = shared.metrics.connection_guard();
    if shared
        .agents
        .insert(AgentHandle {
            agent,
            connection: id,
            sender,
        })
        .is_some()
    {
        info!("agent connected, replacing its older connection");
    } else {
        info!("agent connected");
    }
    // The replaced connection's streams go on; it closes once they end, as nothing else holds
    // its sender.
    let ended = connection.await;
    shared.agents.remove(&identity, id);
    match ended {
        Ok(()) => info!("agent disconnected"),
        Err(error) => info!(%error, "agent connection lost"),
    }
}

fn answer(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn an_agent_names_its_node_and_addresses() {
        let hello = hello(&headers(&[
            ("upgrade", "nestplane-tunnel"),
            ("authorization", "Bearer abc.def"),
            ("nestplane-tunnel-node-name", "worker-0"),
            ("nestplane-tunnel-node-addresses", "172.31.250.5, fd00::5,,"),
        ]))
        .unwrap();
        assert_eq!(hello.token, "abc.def");
        assert_eq!(hello.node_name, "worker-0");
        assert_eq!(hello.addresses, ["172.31.250.5", "fd00::5"]);
    }

    #[test]
    fn a_request_without_upgrade_token_or_node_is_refused_with_why() {
        let full = [
            ("upgrade", "nestplane-tunnel"),
            ("authorization", "Bearer abc"),
            ("nestplane-tunnel-node-name", "worker-0"),
        ];
        for (missing, status) in [
            ("upgrade", StatusCode::UPGRADE_REQUIRED),
            ("authorization", StatusCode::UNAUTHORIZED),
            ("nestplane-tunnel-node-name", StatusCode::BAD_REQUEST),
        ] {
            let without: Vec<_> = full.iter().copied().filter(|(k, _)| *k != missing).collect();
            let (got, reason) = hello(&headers(&without)).err().unwrap();
            assert_eq!(got, status, "without {missing}: {reason}");
        }
        let basic = hello(&headers(&[
            ("upgrade", "nestplane-tunnel"),
            ("authorization", "Basic abc"),
            ("nestplane-tunnel-node-name", "worker-0"),
        ]));
        assert_eq!(basic.err().unwrap().0, StatusCode::UNAUTHORIZED);
    }
}
