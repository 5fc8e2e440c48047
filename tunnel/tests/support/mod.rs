//! Test harness: real sockets, real TLS (certificates from rcgen), a server and agents in
//! process; only the authenticator is an in-memory table.
#![allow(clippy::unwrap_used, clippy::expect_used)] // The harness is test code too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use nestplane_tunnel::agent::{Agent, AgentConfig, TokenSource};
use nestplane_tunnel::server::{ServerConfig, TunnelServer};
use nestplane_tunnel::{AgentAuthenticator, AgentIdentity, AuthError, Metrics, Tuning};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

pub const TOKEN: &str = "good-token";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn tuning() -> Tuning {
    Tuning {
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(2),
        dial_timeout: Duration::from_secs(2),
        stream_idle_timeout: Duration::from_secs(60),
        ..Tuning::default()
    }
}

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

/// A CA and a server certificate for `localhost` and 127.0.0.1.
pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

/// Agents present `TOKEN`; the identity is the node they claim. Counts every attempt.
#[derive(Default)]
pub struct Tokens {
    pub attempts: AtomicUsize,
}

impl AgentAuthenticator for Tokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        node_name: &'a str,
    ) -> BoxFuture<'a, Result<AgentIdentity, AuthError>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if token == TOKEN {
                Ok(AgentIdentity {
                    id: format!("agent@{node_name}"),
                })
            } else {
                Err(AuthError::Rejected("unknown token".into()))
            }
        })
    }
}

/// Aborts the task when dropped, so a test's server or agent ends with the test.
pub struct Task(pub JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Server {
    pub server: TunnelServer,
    pub socket: PathBuf,
    pub agent_addr: SocketAddr,
    pub metrics: Metrics,
    pub tokens: Arc<Tokens>,
    _tasks: Vec<Task>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("nestplane-tunnel-test-{}-{n}.sock", std::process::id()))
}

pub async fn start_server(pki: &Pki, server_id: &str, server_count: u32) -> Server {
    let metrics = Metrics::new();
    let tokens = Arc::new(Tokens::default());
    let config = ServerConfig {
        server_id: server_id.to_string(),
        server_count,
        tuning: tuning(),
    };
    let server = TunnelServer::new(config, tokens.clone(), metrics.clone());
    let socket = socket_path();
    let _ = std::fs::remove_file(&socket);
    let unix = UnixListener::bind(&socket).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_addr = tcp.local_addr().unwrap();
    let tls =
        nestplane_tunnel::server_tls_config(pki.server_cert_pem.as_bytes(), pki.server_key_pem.as_bytes())
            .unwrap();
    let tasks = vec![
        Task(tokio::spawn({
            let server = server.clone();
            async move { server.serve_connect(unix).await }
        })),
        Task(tokio::spawn({
            let server = server.clone();
            async move { server.serve_agents(tcp, tls).await }
        })),
    ];
    Server {
        server,
        socket,
        agent_addr,
        metrics,
        tokens,
        _tasks: tasks,
    }
}

pub struct RunningAgent {
    pub metrics: Metrics,
    _task: Task,
}

pub fn start_agent(pki: &Pki, endpoint: &str, token: &str, node: &str, addresses: &[&str]) -> RunningAgent {
    let metrics = Metrics::new();
    let config = AgentConfig {
        endpoint: endpoint.to_string(),
        tls: nestplane_tunnel::client_tls_config(pki.ca_pem.as_bytes()).unwrap(),
        token: TokenSource::Static(token.to_string()),
        node_name: node.to_string(),
        node_addresses: addresses.iter().map(|a| a.to_string()).collect(),
        tuning: tuning(),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    };
    let agent = Agent::new(config, metrics.clone()).unwrap();
    RunningAgent {
        metrics,
        _task: Task(tokio::spawn(agent.run())),
    }
}

/// Polls `condition` until it holds; panics with `what` after `WAIT`.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP echo server on `bind`; returns its address.
pub async fn echo_server(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// The answer to a CONNECT: the status and, for an error, the body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// Dials `target` through the server's Unix socket as kube-apiserver does: the CONNECT line and a
/// Host header, then the response head, read byte by byte so that nothing after it is taken.
pub async fn http_connect(socket: &Path, target: &str) -> Result<UnixStream, Refused> {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("CONNECT answer")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed in the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status == 200 {
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        return Ok(stream);
    }
    let mut body = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut body))
        .await
        .expect("error body")
        .unwrap();
    Err(Refused {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// kube-apiserver fails a dial if the proxy sent any byte after the 200 before the client spoke.
pub async fn assert_quiet(stream: &mut UnixStream) {
    let mut early = [0u8; 1];
    let sent_early = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut early))
        .await
        .is_ok();
    assert!(
        !sent_early,
        "bytes (or end of stream) after the 200 before the client spoke"
    );
}

/// Deterministic bytes that are not a repeating short pattern.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Sends `data` through `stream`, closes the writing half, and returns all that comes back.
pub async fn round_trip<S>(stream: S, data: Vec<u8>) -> Vec<u8>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        write.write_all(&data).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut back))
        .await
        .expect("echo")
        .unwrap();
    writer.await.unwrap();
    back
}

/// A proxied connection's task and the signal that freezes it.
type Connections = Arc<Mutex<Vec<(JoinHandle<()>, Arc<Notify>)>>>;

/// A TCP proxy in front of `backends`, each new connection to the next backend in turn, whose
/// live connections a test can cut or freeze.
pub struct Proxy {
    pub addr: SocketAddr,
    live: Connections,
    _task: Task,
}

impl Proxy {
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let live = Connections::default();
        let task = tokio::spawn({
            let live = live.clone();
            async move {
                let mut next = 0;
                while let Ok((mut client, _)) = listener.accept().await {
                    let backend = backends[next % backends.len()];
                    next += 1;
                    let freeze = Arc::new(Notify::new());
                    let frozen = freeze.clone();
                    let connection = tokio::spawn(async move {
                        let Ok(mut upstream) = TcpStream::connect(backend).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                            () = frozen.notified() => {
                                // Both sockets stay open and nothing moves: a peer that died
                                // without a FIN or a reset.
                                std::future::pending::<()>().await;
                            }
                        }
                    });
                    live.lock().await.push((connection, freeze));
                }
            }
        });
        Self {
            addr,
            live,
            _task: Task(task),
        }
    }

    /// Drops every proxied connection at once, as a dead node or a network cut would.
    pub async fn cut(&self) {
        for (connection, _) in self.live.lock().await.drain(..) {
            connection.abort();
        }
    }

    /// Stops forwarding on every live connection, keeping the sockets open.
    pub async fn freeze(&self) {
        for (_, freeze) in self.live.lock().await.iter() {
            freeze.notify_one();
        }
    }
}

/// The agents' upgrade request sent by hand over TLS: the status and headers of the answer.
pub async fn post_upgrade(pki: &Pki, agent_addr: SocketAddr, token: &str) -> http::Response<()> {
    let tls = nestplane_tunnel::client_tls_config(pki.ca_pem.as_bytes()).unwrap();
    let tcp = TcpStream::connect(agent_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection.with_upgrades());
    let request = http::Request::post(nestplane_tunnel::TUNNEL_PATH)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .header("connection", "Upgrade")
        .header("upgrade", nestplane_tunnel::UPGRADE_PROTOCOL)
        .header(nestplane_tunnel::HEADER_NODE_NAME, "node-z")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response.map(|_| ())
}

pub fn agents_on(server: &Server) -> HashMap<String, Vec<String>> {
    server
        .server
        .agents()
        .into_iter()
        .map(|a| (a.node_name, a.addresses))
        .collect()
}
