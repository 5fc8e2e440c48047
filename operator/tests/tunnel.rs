//! The tunnel commands against a real kube-apiserver: agents' tokens are projected
//! service-account tokens bound to a pod, checked with TokenReviews; then `tunnel-server` and
//! `tunnel-agent`, parsed from the flags the builders give them, carry a dial from the Unix
//! socket through the agent to a TCP echo server.
//!
//! The API server issues the tokens (`TokenRequest`, bound to a pod on a node) as it does for a
//! kubelet; no kubelet runs, so the pods are only bound, never started.
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use nestplane::tunnel::authenticator::{Expected, ServiceAccountRef, TokenReviewAuthenticator};
use nestplane::tunnel::{AgentArgs, ServerArgs, run_agent, run_server};
use nestplane_testenv::TestEnv;
use nestplane_testenv::process::free_port;
use nestplane_tunnel::{AgentAuthenticator, AuthError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::oneshot;

const NAMESPACE: &str = "kube-system";
const AGENT_ACCOUNT: &str = "nestplane-tunnel-agent";
const OTHER_ACCOUNT: &str = "some-other-workload";
const AUDIENCE: &str = "nestplane-tunnel";
const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn agents_are_checked_by_token_review_and_dials_go_through_them() -> Result<()> {
    let Some(mut env) = TestEnv::start("tunnel") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let admin = env.client().await;
        let tokens = issue_tokens(&admin).await.context("issuing the tokens")?;
        token_reviews(&env, &admin, &tokens)
            .await
            .context("the authenticator's verdicts")?;
        a_dial_through_the_commands(&env, &tokens.agent)
            .await
            .context("a dial through tunnel-server and tunnel-agent")
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

struct Tokens {
    /// The agent pod's projected token, for the tunnel's audience.
    agent: String,
    /// The same pod's token for the API server's own audience (what a pod mounts by default).
    agent_default_audience: String,
    /// A token of another service account's pod on the same node, for the tunnel's audience.
    other_account: String,
}

async fn issue_tokens(admin: &Client) -> Result<Tokens> {
    // The API server creates kube-system itself; create it if this one has not yet.
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    match Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error).context("creating kube-system"),
    }
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": NODE } }))?;
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await
        .context("creating the Node")?;
    let agent_pod = bound_pod(admin, AGENT_ACCOUNT, "nestplane-tunnel-agent-x7k2p").await?;
    let other_pod = bound_pod(admin, OTHER_ACCOUNT, "some-other-workload-q9z4m").await?;
    Ok(Tokens {
        agent: token(admin, AGENT_ACCOUNT, &agent_pod, &[AUDIENCE]).await?,
        agent_default_audience: token(admin, AGENT_ACCOUNT, &agent_pod, &[]).await?,
        other_account: token(admin, OTHER_ACCOUNT, &other_pod, &[AUDIENCE]).await?,
    })
}

/// A service account and a pod of it bound to `NODE`.
async fn bound_pod(admin: &Client, account: &str, pod: &str) -> Result<Pod> {
    let service_account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": account, "namespace": NAMESPACE } }))?;
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &service_account)
        .await
        .with_context(|| format!("creating the ServiceAccount {account}"))?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": pod, "namespace": NAMESPACE },
        "spec": {
            "nodeName": NODE,
            "serviceAccountName": account,
            "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }],
        },
    }))?;
    Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await
        .context("creating the Pod")
}

/// A token of `account` bound to `pod`, as the kubelet requests a projected one; no audiences
/// means the API server's own.
async fn token(admin: &Client, account: &str, pod: &Pod, audiences: &[&str]) -> Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            expiration_seconds: Some(600),
        },
        ..TokenRequest::default()
    };
    let issued = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token of {account}"))?;
    issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("the TokenRequest came back without a token")
}

fn expected() -> Expected {
    Expected {
        audience: AUDIENCE.into(),
        service_account: ServiceAccountRef {
            namespace: NAMESPACE.into(),
            name: AGENT_ACCOUNT.into(),
        },
    }
}

async fn token_reviews(env: &TestEnv, admin: &Client, tokens: &Tokens) -> Result<()> {
    let authenticator = TokenReviewAuthenticator::new(admin.clone(), expected());

    let identity = authenticator
        .authenticate(&tokens.agent, NODE)
        .await
        .context("the agent pod's token, claiming its own node")?;
    ensure!(identity.id == "node/node-a", "identity {identity}");

    for (what, token, node) in [
        (
            "the agent pod's token claiming another node",
            &tokens.agent,
            "node-b",
        ),
        (
            "the agent pod's token for the API server's audience",
            &tokens.agent_default_audience,
            NODE,
        ),
        ("another service account's token", &tokens.other_account, NODE),
        ("a token that is not one", &"not-a-token".to_string(), NODE),
    ] {
        match authenticator.authenticate(token, node).await {
            Err(AuthError::Rejected(_)) => {}
            other => bail!("{what}: expected a rejection, got {other:?}"),
        }
    }

    // A server whose identity has no binding to system:auth-delegator: the agent is refused
    // for now (not rejected), and the message says what is missing.
    let kubeconfig = Kubeconfig::read_from(env.admin_kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some("tunnel-server-without-rbac".into());
    let unbound = TokenReviewAuthenticator::new(Client::try_from(config)?, expected());
    match unbound.authenticate(&tokens.agent, NODE).await {
        Err(AuthError::Unavailable(message)) if message.contains("system:auth-delegator") => {}
        other => bail!("a server without RBAC: expected unavailable naming the binding, got {other:?}"),
    }
    Ok(())
}

/// The flags as the builders pass them, parsed by the command's own definitions.
#[derive(Parser)]
struct ServerCli {
    #[command(flatten)]
    args: ServerArgs,
}

#[derive(Parser)]
struct AgentCli {
    #[command(flatten)]
    args: AgentArgs,
}

async fn a_dial_through_the_commands(env: &TestEnv, agent_token: &str) -> Result<()> {
    let dir = env.dir();
    let socket = dir.join("tunnel").join("connect.sock");
    let agent_port = free_port();
    let server_http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let agent_http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let token_file = dir.join("agent-token");
    std::fs::write(&token_file, agent_token)?;
    let path = |p: &Path| p.display().to_string();

    // The hosted API server's serving certificate names 127.0.0.1, as in a cluster it names
    // the endpoint agents dial.
    let server = ServerCli::try_parse_from([
        "tunnel-server".to_string(),
        format!("--connect-socket={}", path(&socket)),
        format!("--agent-addr=127.0.0.1:{agent_port}"),
        format!("--tls-cert-file={}", path(&dir.join("apiserver.crt"))),
        format!("--tls-key-file={}", path(&dir.join("apiserver.key"))),
        format!("--kubeconfig={}", path(env.admin_kubeconfig())),
        "--server-id=kube-apiserver-0".into(),
        format!("--http-addr={server_http}"),
    ])?
    .args;
    let agent = AgentCli::try_parse_from([
        "tunnel-agent".to_string(),
        format!("--server=https://127.0.0.1:{agent_port}"),
        format!("--ca-file={}", path(&dir.join("ca.crt"))),
        format!("--token-file={}", path(&token_file)),
        format!("--node-name={NODE}"),
        "--node-address=127.0.0.1,::1".into(),
        format!("--http-addr={agent_http}"),
    ])?
    .args;

    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run_server(server, async {
        let _ = server_stopped.await;
    }));
    let agent = tokio::spawn(run_agent(agent, async {
        let _ = agent_stopped.await;
    }));

    let http = reqwest::Client::new();
    eventually("the server's /readyz answers 200", || async {
        Ok(http
            .get(format!("http://{server_http}/readyz"))
            .send()
            .await?
            .status()
            == 200)
    })
    .await?;
    eventually("the server counts one agent connection", || async {
        let text = http
            .get(format!("http://{server_http}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(text.lines().any(|l| l == "nestplane_tunnel_agent_connections 1"))
    })
    .await?;
    let agent_metrics = http
        .get(format!("http://{agent_http}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        agent_metrics
            .lines()
            .any(|l| l == "nestplane_tunnel_agent_connections 1"),
        "the agent's /metrics:\n{agent_metrics}"
    );
    ensure!(
        http.get(format!("http://{agent_http}/healthz"))
            .send()
            .await?
            .status()
            == 200
    );
    // Connected: the agent reports ready (its DaemonSet's readiness probe).
    let agent_ready = http
        .get(format!("http://{agent_http}/readyz"))
        .send()
        .await?
        .status();
    ensure!(agent_ready == 200, "the connected agent's /readyz: {agent_ready}");

    let echo = echo_server().await?;
    let mut stream = http_connect(&socket, &echo.to_string()).await?;
    stream.write_all(b"through the tunnel\n").await?;
    let mut answer = [0u8; 19];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .context("the echo's answer")??;
    ensure!(&answer == b"through the tunnel\n", "echoed {answer:?}");
    drop(stream);

    // SIGTERM, as the kubelet sends it: both end with Ok, the server removes its socket.
    let _ = stop_agent.send(());
    tokio::time::timeout(WAIT, agent)
        .await??
        .context("the agent's exit")?;
    let _ = stop_server.send(());
    tokio::time::timeout(WAIT, server)
        .await??
        .context("the server's exit")?;
    ensure!(
        !socket.exists(),
        "the connect socket {} is left behind",
        socket.display()
    );
    Ok(())
}

/// Polls `check` until it answers true; fails with `what` after `WAIT`.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = check().await;
        if matches!(last, Ok(true)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting until {what} (last: {last:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP echo server on loopback; returns its address.
async fn echo_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
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
    Ok(addr)
}

/// Dials `target` through the connect socket as kube-apiserver's egress selector does
/// (HTTPConnect), reading the answer's head byte by byte so nothing after it is taken.
async fn http_connect(socket: &PathBuf, target: &str) -> Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .context("the CONNECT answer")??;
        ensure!(
            n == 1,
            "closed in the answer's head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    ensure!(head.starts_with("HTTP/1.1 200 "), "CONNECT {target}: {head}");
    Ok(stream)
}
