use std::io;

/// Errors of the tunnel server and agent, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the TLS material {what}: {reason}")]
    TlsMaterial { what: &'static str, reason: String },
    #[error("building the TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("invalid tunnel endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("accepting on the {listener} listener: {source}")]
    Accept {
        listener: &'static str,
        source: io::Error,
    },
    #[error("connecting to the tunnel server at {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    #[error("TLS handshake with the tunnel server at {endpoint}: {source}")]
    Handshake { endpoint: String, source: io::Error },
    #[error("timed out connecting to the tunnel server at {endpoint}")]
    ConnectTimeout { endpoint: String },
    #[error("reading the agent token from {path}: {source}")]
    ReadToken { path: String, source: io::Error },
    #[error("upgrade request to the tunnel server at {endpoint}: {source}")]
    UpgradeRequest { endpoint: String, source: hyper::Error },
    #[error("the tunnel server at {endpoint} refused the agent: {status} {reason}")]
    Refused {
        endpoint: String,
        status: http::StatusCode,
        reason: String,
    },
    #[error("the tunnel server at {endpoint} answered without {header}")]
    MissingHeader { endpoint: String, header: &'static str },
    #[error("serving HTTP/2 to the tunnel server {server_id}: {source}")]
    Serve { server_id: String, source: hyper::Error },
    #[error("building the request {what}: {source}")]
    Request { what: &'static str, source: http::Error },
}
