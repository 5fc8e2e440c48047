//! What the tunnel e2e test runs on a worker behind the tunnel: a validating admission webhook
//! (it refuses objects labelled `nestplane.io/e2e-reject: "true"`) and a small aggregated API
//! (`e2e.nestplane.io/v1alpha1`, resource `echoes`, whose list names the pod that served it),
//! both on one HTTPS port with the certificate the test issues.
//!
//! `tunnel-backend --cert <pem> --key <pem> [--addr 0.0.0.0:8443]`; `POD_NAME`, `NODE_NAME` from
//! the downward API.
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use nestplane_e2e::tunnel_backend::{GROUP, REJECT_LABEL, VERSION};

struct Identity {
    pod: String,
    node: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut cert, mut key, mut addr) = (None, None, "0.0.0.0:8443".to_string());
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--addr" => addr = value,
            other => return Err(anyhow!("unknown flag {other}")),
        }
    }
    let cert = std::fs::read(cert.ok_or_else(|| anyhow!("--cert is required"))?).context("reading --cert")?;
    let key = std::fs::read(key.ok_or_else(|| anyhow!("--key is required"))?).context("reading --key")?;
    let chain = CertificateDer::pem_slice_iter(&cert).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&key)?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let identity = Arc::new(Identity {
        pod: std::env::var("POD_NAME").unwrap_or_default(),
        node: std::env::var("NODE_NAME").unwrap_or_default(),
    });
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("serving on {addr} as {} on {}", identity.pod, identity.node);
    loop {
        let (stream, _) = listener.accept().await?;
        let (acceptor, identity) = (acceptor.clone(), identity.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| serve(request, identity.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn serve(
    request: Request<Incoming>,
    identity: Arc<Identity>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let group_version = format!("/apis/{GROUP}/{VERSION}");
    let (status, answer) = match (method, path.as_str()) {
        (Method::POST, "/validate") => match serde_json::from_slice::<Value>(&body) {
            Ok(review) => (StatusCode::OK, admission(&review, &identity)),
            Err(e) => (StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
        },
        (Method::GET, p) if p == group_version => (
            StatusCode::OK,
            json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
                "resources": [{
                    "name": "echoes", "singularName": "echo", "namespaced": false,
                    "kind": "Echo", "verbs": ["get", "list"],
                }],
            }),
        ),
        (Method::GET, p) if p == format!("{group_version}/echoes") => (
            StatusCode::OK,
            json!({
                "kind": "EchoList", "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {},
                "items": [{ "metadata": { "name": identity.pod }, "node": identity.node }],
            }),
        ),
        (Method::GET, "/healthz") => (StatusCode::OK, json!("ok")),
        _ => (
            StatusCode::NOT_FOUND,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404 }),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Allows everything but objects carrying the reject label.
fn admission(review: &Value, identity: &Identity) -> Value {
    let request = &review["request"];
    let marked = request["object"]["metadata"]["labels"][REJECT_LABEL] == "true";
    let mut response = json!({ "uid": request["uid"], "allowed": !marked });
    if marked {
        response["status"] = json!({
            "code": 403,
            "message": format!("refused by the e2e webhook in pod {} on node {}", identity.pod, identity.node),
        });
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}
