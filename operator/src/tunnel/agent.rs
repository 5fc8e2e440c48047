//! `nestplane tunnel-agent`: one per worker (a hostNetwork DaemonSet of the hosted cluster),
//! dialling out to the tunnel servers and dialling, from the node, what they ask for.
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use nestplane_tunnel::agent::{Agent, AgentConfig, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, TokenSource};
use nestplane_tunnel::{Metrics, Tuning};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{Instrument as _, info, info_span};

use super::http::Endpoint;
use super::read_flag_file;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The tunnel servers' endpoint, https://host:port (the host must be named by the server's
    /// certificate).
    #[arg(long, env = "NESTPLANE_TUNNEL_SERVER", value_parser = server_endpoint)]
    pub server: String,
    /// The CA that signed the server's certificate: the hosted cluster's CA.
    #[arg(long, default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")]
    pub ca_file: PathBuf,
    /// A projected service-account token for the tunnel's audience; read again on each connect,
    /// as the kubelet rotates it.
    #[arg(long, default_value = "/var/run/secrets/nestplane-tunnel/token")]
    pub token_file: PathBuf,
    /// This node's name, as its pod is bound to it.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// This node's addresses (repeat, or comma-separated): the API server's dials to them
    /// come to this agent.
    #[arg(
        long = "node-address",
        env = "NODE_IPS",
        value_delimiter = ',',
        required = true
    )]
    pub node_addresses: Vec<String>,
    /// Address of /metrics and /healthz (on the node: the agent runs in its network).
    #[arg(long, default_value = "0.0.0.0:8093")]
    pub http_addr: SocketAddr,
}

/// `https://host:port` (port 443 if left out) as the agent's `host:port` endpoint.
fn server_endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("expected https://host:port".into());
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("expected no path: https://host:port".into());
    }
    let authority = uri.authority().ok_or("expected https://host:port")?;
    if authority.as_str().contains('@') {
        return Err("expected no user info: https://host:port".into());
    }
    // `host()` keeps an IPv6 address's brackets, as `host:port` needs them.
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(443)
    ))
}

/// Runs the agent until `shutdown` resolves (then drops every server connection and returns
/// `Ok`), or until the HTTP endpoint stops (an error).
pub async fn run_agent(args: AgentArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let span = info_span!("tunnel_agent", node = %args.node_name);
    async move {
        let node_addresses: Vec<String> = args
            .node_addresses
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if node_addresses.is_empty() {
            bail!("--node-address (NODE_IPS) names no address");
        }
        let tls = nestplane_tunnel::client_tls_config(&read_flag_file("--ca-file", &args.ca_file)?)
            .context("the tunnel server's CA")?;
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("nestplane");
        metrics.register(&mut registry);
        let endpoint = Endpoint::ready_while_connected(registry, metrics.clone());
        let http = TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding the HTTP endpoint to {}", args.http_addr))?;
        let config = AgentConfig {
            endpoint: args.server.clone(),
            tls,
            token: TokenSource::File(args.token_file.clone()),
            node_name: args.node_name.clone(),
            node_addresses: node_addresses.clone(),
            tuning: Tuning::default(),
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        };
        let agent = Agent::new(config, metrics).context("the tunnel agent's configuration")?;
        info!(server = %args.server, addresses = ?node_addresses, http_addr = %args.http_addr, "running");
        tokio::select! {
            () = agent.run() => bail!("the agent stopped"),
            served = endpoint.serve(http) => {
                served.context("serving the HTTP endpoint")?;
                bail!("the HTTP endpoint stopped");
            }
            () = shutdown => info!("stopping"),
        }
        Ok(())
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_flag_is_an_https_url() {
        for (url, endpoint) in [
            ("https://192.0.2.2:31432", "192.0.2.2:31432"),
            ("https://192.0.2.2:31432/", "192.0.2.2:31432"),
            ("https://tunnel.example", "tunnel.example:443"),
            ("https://[2001:db8::1]:8132", "[2001:db8::1]:8132"),
        ] {
            assert_eq!(server_endpoint(url).as_deref(), Ok(endpoint), "{url}");
        }
        for bad in [
            "192.0.2.2:31432",
            "http://192.0.2.2:31432",
            "https://192.0.2.2:31432/tunnel",
            "https://user@192.0.2.2:31432",
            "",
        ] {
            assert!(server_endpoint(bad).is_err(), "{bad}");
        }
    }
}
