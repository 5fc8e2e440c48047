//! The `nestplane` command: run the operator, print the CRDs, print a hosted cluster's kubeconfig,
//! or run the tunnel server or agent.
use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use nestplane::api::HostedCluster;
use nestplane::controllers::Config;
use nestplane::leader::Election;

#[derive(Parser)]
#[command(name = "nestplane", version = nestplane::runtime::VERSION, about = "Hosted Kubernetes control planes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig or service account.
    Run {
        /// Address of the /metrics and /healthz endpoint.
        #[arg(long, env = "NESTPLANE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: std::net::SocketAddr,
        /// Registry of the control-plane images.
        #[arg(long, env = "NESTPLANE_IMAGE_REGISTRY", default_value = "registry.k8s.io")]
        image_registry: String,
        /// The nestplane image, which the tunnel server (beside each hosted kube-apiserver) and
        /// the tunnel agent (on each worker) run: the operator's own image.
        #[arg(long, env = "NESTPLANE_TUNNEL_IMAGE", default_value = concat!("ghcr.io/nestplane/nestplane:v", env!("CARGO_PKG_VERSION")))]
        tunnel_image: String,
        /// Reconcile HostedClusters in this namespace only (default: all namespaces).
        #[arg(long, env = "NESTPLANE_WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Namespace of the leader Lease: the operator's own (default: the kubeconfig's).
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// This replica's name in the leader Lease (default: the host name).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into `--dir`.
    Crd {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Print the admin kubeconfig of a hosted cluster.
    Kubeconfig {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Run the tunnel server beside a hosted kube-apiserver (its egress selector's HTTPConnect).
    TunnelServer(nestplane::tunnel::ServerArgs),
    /// Run the tunnel agent on a worker node of a hosted cluster.
    TunnelAgent(nestplane::tunnel::AgentArgs),
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    // The operator waits on API servers nearly all the time, and its CPU-heavy steps (keys,
    // certificates) take milliseconds: one thread serves it, with one stack and one malloc arena
    // instead of one per worker thread: with five clusters starting at once its peak RSS fell
    // from 17.6 to 16.2 MiB, and they became Available as fast. The tunnel relays many streams at
    // once and keeps a thread per core.
    let mut runtime = match command {
        Command::Run { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            http_addr,
            image_registry,
            tunnel_image,
            namespace,
            lease_namespace,
            identity,
        } => {
            nestplane::telemetry::init();
            let config = Config {
                image_registry,
                namespace,
                tunnel_image,
            };
            let election = Election::infer(lease_namespace, identity)
                .await
                .context("reading the kubeconfig for the leader Lease's namespace")?;
            nestplane::runtime::run(http_addr, config, election).await?;
        }
        Command::Crd { dir: None } => print!("{}", nestplane::api::crds_yaml()?),
        Command::Crd { dir: Some(dir) } => {
            for (file, yaml) in nestplane::api::crd_files()? {
                let path = dir.join(file);
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Kubeconfig { name, namespace } => print!("{}", kubeconfig(&name, &namespace).await?),
        Command::TunnelServer(args) => {
            nestplane::telemetry::init();
            nestplane::tunnel::run_server(args, nestplane::tunnel::on_termination()?).await?;
        }
        Command::TunnelAgent(args) => {
            nestplane::telemetry::init();
            nestplane::tunnel::run_agent(args, nestplane::tunnel::on_termination()?).await?;
        }
    }
    Ok(())
}

async fn kubeconfig(name: &str, namespace: &str) -> anyhow::Result<String> {
    let client = Client::try_default()
        .await
        .context("connecting to the management cluster")?;
    let hc = Api::<HostedCluster>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("HostedCluster {namespace}/{name}"))?;
    let reference = hc.status.and_then(|s| s.kubeconfig_secret_ref).ok_or_else(|| {
        anyhow!("HostedCluster {namespace}/{name} has no kubeconfig yet; see `kubectl describe hc {name}`")
    })?;
    let secret = Api::<Secret>::namespaced(client, namespace)
        .get(&reference.name)
        .await
        .with_context(|| format!("Secret {namespace}/{}", reference.name))?;
    let value = secret
        .data
        .and_then(|d| d.get(&reference.key).cloned())
        .ok_or_else(|| {
            anyhow!(
                "Secret {namespace}/{} has no key {}",
                reference.name,
                reference.key
            )
        })?;
    Ok(String::from_utf8(value.0)?)
}
