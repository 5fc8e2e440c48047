//! The API server's side: kube-apiserver's egress selector in `HTTPConnect` mode opens one Unix
//! socket connection per dial, writes `CONNECT host:port HTTP/1.1`, and expects `HTTP/1.1 200`
//! with nothing after the head until it speaks (it checks that no byte is buffered), then raw
//! bytes; any other status fails the dial with that status in the error. Like Konnectivity's
//! HTTPConnect mode, the 200 is sent only once the agent has reached the target, so a target
//! that cannot be reached fails the dial at once with a status and a reason in the body.
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixStream;
use tracing::{Instrument, debug, info, info_span, warn};

use super::registry::{AgentHandle, host_of};
use super::{HANDSHAKE_TIMEOUT, Shared};
use crate::metrics::DialFailure;
use crate::relay::relay;
use crate::{HEADER_DIAL_FAILURE, error};

/// How long past the agent's own dial timeout the server waits for the agent's answer.
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);
/// Enough for the reason an agent gives with a failed dial.
const MAX_REASON_BYTES: usize = 4096;

pub(super) async fn serve(shared: Arc<Shared>, stream: UnixStream) {
    let service = service_fn(move |req| handle(shared.clone(), req));
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        debug!(%error, "CONNECT connection ended with an error");
    }
}

/// A dial that could not be relayed: the status and reason the API server gets.
struct DialError {
    failure: DialFailure,
    status: StatusCode,
    reason: String,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::CONNECT {
        return Ok(refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "this proxy only serves CONNECT",
        ));
    }
    let Some(authority) = req.uri().authority().cloned().filter(|a| a.port_u16().is_some()) else {
        return Ok(refusal(
            StatusCode::BAD_REQUEST,
            "CONNECT needs a host:port target",
        ));
    };
    let span = info_span!("stream", target = %authority, agent = tracing::field::Empty);
    let dialled = dial(&shared, &authority).instrument(span.clone()).await;
    match dialled {
        Ok((agent_side, agent)) => {
            span.record("agent", tracing::field::display(&agent.agent.identity));
            tokio::spawn(relay_upgraded(shared, req, agent_side).instrument(span));
            let mut established = Response::new(Full::new(Bytes::new()));
            established
                .extensions_mut()
                .insert(ReasonPhrase::from_static(b"Connection established"));
            Ok(established)
        }
        Err(e) => {
            shared.metrics.dial_failed(e.failure);
            span.in_scope(|| info!(reason = e.failure.as_str(), detail = %e.reason, "dial failed"));
            Ok(refusal(e.status, &e.reason))
        }
    }
}

/// Opens a CONNECT stream to an agent that can reach `authority`, trying the next candidate only
/// when an agent's connection itself fails (a target the agent cannot reach is an answer).
async fn dial(
    shared: &Shared,
    authority: &http::uri::Authority,
) -> Result<(Response<Incoming>, Arc<AgentHandle>), DialError> {
    let candidates = shared.agents.candidates(host_of(authority));
    if candidates.is_empty() {
        let reason = format!(
            "no tunnel agent is connected to server {}",
            shared.config.server_id
        );
        return Err(DialError {
            failure: DialFailure::NoAgent,
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason,
        });
    }
    let wait = shared.config.tuning.dial_timeout + ANSWER_MARGIN;
    let mut failures = Vec::new();
    for agent in candidates {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.as_str())
            .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(request) => request,
            Err(source) => {
                let reason = error::Error::Request {
                    what: "CONNECT to the agent",
                    source,
                }
                .to_string();
                return Err(DialError {
                    failure: DialFailure::Other,
                    status: StatusCode::BAD_REQUEST,
                    reason,
                });
            }
        };
        let mut sender = agent.sender.clone();
        let answer = tokio::time::timeout(wait, async {
            sender.ready().await?;
            sender.send_request(request).await
        })
        .await;
        match answer {
            Ok(Ok(response)) if response.status() == StatusCode::OK => return Ok((response, agent)),
            Ok(Ok(response)) => return Err(agent_refusal(response).await),
            Ok(Err(error)) => {
                warn!(agent = %agent.agent.identity, %error, "agent connection failed; trying the next agent");
                failures.push(format!("{}: {error}", agent.agent.identity));
            }
            Err(_) => {
                let reason = format!("agent {} did not answer within {wait:?}", agent.agent.identity);
                return Err(DialError {
                    failure: DialFailure::Timeout,
                    status: StatusCode::GATEWAY_TIMEOUT,
                    reason,
                });
            }
        }
    }
    let reason = format!("every agent's connection failed: {}", failures.join("; "));
    Err(DialError {
        failure: DialFailure::AgentUnavailable,
        status: StatusCode::BAD_GATEWAY,
        reason,
    })
}

/// An agent's answer to a dial it could not make: its status (502, 504), reason and body.
async fn agent_refusal(response: Response<Incoming>) -> DialError {
    let status = response.status();
    let failure = response
        .headers()
        .get(HEADER_DIAL_FAILURE)
        .and_then(|v| v.to_str().ok())
        .map_or(DialFailure::Other, DialFailure::parse);
    let reason = match Limited::new(response.into_body(), MAX_REASON_BYTES)
        .collect()
        .await
    {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
        Err(error) => format!("reading the agent's answer: {error}"),
    };
    DialError {
        failure,
        status,
        reason,
    }
}

async fn relay_upgraded(shared: Arc<Shared>, dialler: Request<Incoming>, agent_side: Response<Incoming>) {
    let _open = shared.metrics.stream_guard();
    let (dialler, agent_side) =
        match tokio::try_join!(hyper::upgrade::on(dialler), hyper::upgrade::on(agent_side)) {
            Ok(sides) => sides,
            Err(error) => {
                warn!(%error, "upgrading the dial failed");
                return;
            }
        };
    let idle = shared.config.tuning.stream_idle_timeout;
    match relay(
        TokioIo::new(dialler),
        TokioIo::new(agent_side),
        idle,
        &shared.metrics,
    )
    .await
    {
        Ok((outbound, inbound)) => debug!(outbound, inbound, "stream closed"),
        Err(error) => info!(%error, "stream ended"),
    }
}

/// An error answer that closes the connection (one dial per connection).
fn refusal(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}
