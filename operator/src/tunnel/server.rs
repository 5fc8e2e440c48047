//! `nestplane tunnel-server`: a sidecar of the hosted kube-apiserver. Its egress selector dials
//! through the Unix socket; agents connect to the TLS port; their tokens are checked with
//! TokenReviews against the hosted API server.
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use nestplane_tunnel::server::{ServerConfig, TunnelServer};
use nestplane_tunnel::{Metrics, Tuning};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UnixListener};
use tracing::{Instrument as _, info, info_span, warn};

use super::authenticator::{Expected, ServiceAccountRef, TokenReviewAuthenticator};
use super::http::Endpoint;
use super::read_flag_file;

/// How long, after SIGTERM, streams already open may go on before the process exits. The API
/// server gets the same signal and ends its own requests; this only spares streams that would
/// have ended by themselves within moments.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The Unix socket kube-apiserver's egress selector dials (HTTPConnect).
    #[arg(long, default_value = "/run/nestplane-tunnel/connect.sock")]
    pub connect_socket: PathBuf,
    /// The address agents connect to (TLS).
    #[arg(long, default_value = "0.0.0.0:8132")]
    pub agent_addr: SocketAddr,
    /// The agent listener's certificate chain, PEM (it names the endpoint agents dial).
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// The agent listener's private key, PEM.
    #[arg(long)]
    pub tls_key_file: PathBuf,
    /// A kubeconfig for the hosted API server, used only for TokenReviews of agents' tokens.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The audience agents' tokens must be issued for.
    #[arg(long, default_value = "nestplane-tunnel")]
    pub audience: String,
    /// The service account (namespace/name) agents' tokens must belong to.
    #[arg(long, default_value = "kube-system/nestplane-tunnel-agent")]
    pub agent_service_account: ServiceAccountRef,
    /// This server's id, unique among the API server's replicas (the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub server_id: String,
    /// How many tunnel servers (API server replicas) share the agents' endpoint.
    #[arg(long, env = "NESTPLANE_TUNNEL_SERVER_COUNT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub server_count: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8134")]
    pub http_addr: SocketAddr,
}

/// Runs the server until `shutdown` resolves (then stops accepting, lets open streams finish for
/// a moment, removes the socket and returns `Ok`), or until a listener cannot be bound or the
/// HTTP endpoint stops (an error, so the kubelet restarts the container).
pub async fn run_server(args: ServerArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let span = info_span!("tunnel_server", server_id = %args.server_id);
    async move {
        let tls = nestplane_tunnel::server_tls_config(
            &read_flag_file("--tls-cert-file", &args.tls_cert_file)?,
            &read_flag_file("--tls-key-file", &args.tls_key_file)?,
        )
        .context("the agent listener's certificate and key")?;
        let client = hosted_client(&args.kubeconfig).await?;
        let authenticator = TokenReviewAuthenticator::new(
            client,
            Expected {
                audience: args.audience.clone(),
                service_account: args.agent_service_account.clone(),
            },
        );
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("nestplane");
        metrics.register(&mut registry);
        let endpoint = Endpoint::new(registry);
        let http = TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding the HTTP endpoint to {}", args.http_addr))?;
        let connect = bind_connect_socket(&args.connect_socket)?;
        let agents = TcpListener::bind(args.agent_addr)
            .await
            .with_context(|| format!("binding the agent listener to {}", args.agent_addr))?;
        // Ready means both listeners are bound, nothing more. Not whether TokenReviews work: the
        // API server they go to is the one beside this container, and a sidecar that is not
        // ready makes the whole API server pod not ready, so a cluster whose agents cannot (yet)
        // be checked, or that has no workers at all, would lose its API server.
        endpoint.set_ready();
        info!(
            connect_socket = %args.connect_socket.display(),
            agent_addr = %args.agent_addr,
            http_addr = %args.http_addr,
            server_count = args.server_count,
            "serving"
        );
        let config = ServerConfig {
            server_id: args.server_id.clone(),
            server_count: args.server_count,
            tuning: Tuning::default(),
        };
        let server = TunnelServer::new(config, Arc::new(authenticator), metrics.clone());
        // Each branch's future owns its listener: when `shutdown` wins, the listeners are dropped
        // and nothing new is accepted.
        tokio::select! {
            () = server.serve_connect(connect) => bail!("the connect listener stopped"),
            () = server.serve_agents(agents, tls) => bail!("the agent listener stopped"),
            served = endpoint.serve(http) => {
                served.context("serving the HTTP endpoint")?;
                bail!("the HTTP endpoint stopped");
            }
            () = shutdown => info!("stopping: no new dials or agents"),
        }
        remove_socket(&args.connect_socket);
        drain(&metrics).await;
        Ok(())
    }
    .instrument(span)
    .await
}

/// A client for the hosted API server from `--kubeconfig`.
async fn hosted_client(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading --kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading --kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the hosted API server's client")
}

/// Binds the egress socket. A socket left by an earlier run of the container (an emptyDir
/// outlives restarts) is removed first; any other file at the path is an error, not ours to
/// delete.
fn bind_connect_socket(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
            info!(socket = %path.display(), "removed a stale socket");
        }
        Ok(_) => bail!("--connect-socket {} exists and is not a socket", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("inspecting --connect-socket {}", path.display()));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding the connect socket {}", path.display()))?;
    // kube-apiserver runs in another container of the pod. Connecting needs write permission on
    // the socket: 0660 lets the same user in, and the pod's fsGroup too (an emptyDir with an
    // fsGroup is setgid, so the socket's group is the fsGroup, a supplementary group of every
    // container), in case the two containers' users ever differ. No one else gets it: whoever
    // may connect can dial any node or pod of the cluster.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

fn remove_socket(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        warn!(socket = %path.display(), %error, "removing the connect socket");
    }
}

/// Waits until no stream is open, at most [`DRAIN`].
async fn drain(metrics: &Metrics) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let open = metrics.snapshot().streams_open;
        if open == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            info!(open, "closing the streams still open");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nestplane-tunnel-cmd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("connect.sock")
    }

    #[tokio::test]
    async fn the_socket_replaces_a_stale_one_and_only_the_pod_may_connect() {
        let path = scratch("stale");
        drop(bind_connect_socket(&path).unwrap());
        // The listener is gone, its file stays: what a restarted container finds.
        assert!(path.exists());
        let listener = bind_connect_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        tokio::net::UnixStream::connect(&path).await.unwrap();
        drop(listener);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = scratch("regular");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "not a socket").unwrap();
        let error = bind_connect_socket(&path).unwrap_err();
        assert!(error.to_string().contains("not a socket"), "{error:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
