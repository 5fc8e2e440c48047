//! The tunnel end to end in one process: kube-apiserver's HTTPConnect dial on the Unix socket,
//! the server, an agent over TLS and HTTP/2, and a TCP target.
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nestplane_tunnel::DialFailure;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_few_mib_round_trip_byte_identical_through_server_and_agent() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let agent = start_agent(
        &pki,
        &server.agent_addr.to_string(),
        TOKEN,
        "node-a",
        &["10.0.0.1"],
    );
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    let echo = echo_server("127.0.0.1:0").await;

    let mut stream = http_connect(&server.socket, &echo.to_string())
        .await
        .expect("dial through the tunnel");
    assert_quiet(&mut stream).await;
    let data = payload(4 << 20, 1);
    let started = Instant::now();
    let back = round_trip(stream, data.clone()).await;
    eprintln!(
        "4 MiB echo round trip through the tunnel: {:?}",
        started.elapsed()
    );
    assert!(
        back == data,
        "the echo differs: {} bytes back of {}",
        back.len(),
        data.len()
    );

    // The byte counters count what went through, both ways, at both ends.
    wait_until("the stream is closed at both ends", || {
        server.metrics.snapshot().streams_open == 0 && agent.metrics.snapshot().streams_open == 0
    })
    .await;
    for snapshot in [server.metrics.snapshot(), agent.metrics.snapshot()] {
        assert_eq!(
            (snapshot.bytes_outbound, snapshot.bytes_inbound),
            (4 << 20, 4 << 20),
            "{snapshot:?}"
        );
        assert_eq!(snapshot.streams_total, 1);
        assert_eq!(snapshot.agent_connections, 1);
    }
}

#[tokio::test]
async fn fifty_concurrent_streams_through_one_agent_all_round_trip() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let agent = start_agent(&pki, &server.agent_addr.to_string(), TOKEN, "node-a", &[]);
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    let echo = echo_server("127.0.0.1:0").await;

    let started = Instant::now();
    let streams: Vec<_> = (0..50u64)
        .map(|i| {
            let socket = server.socket.clone();
            tokio::spawn(async move {
                let data = payload(64 * 1024, i);
                let stream = http_connect(&socket, &echo.to_string()).await.expect("dial");
                assert!(
                    round_trip(stream, data.clone()).await == data,
                    "stream {i} differs"
                );
            })
        })
        .collect();
    for stream in streams {
        stream.await.unwrap();
    }
    let through_tunnel = started.elapsed();

    // The same without the tunnel, for the ratio (printed, not asserted: timing on a shared
    // machine).
    let started = Instant::now();
    let direct: Vec<_> = (0..50u64)
        .map(|i| {
            tokio::spawn(async move {
                let data = payload(64 * 1024, i);
                let stream = tokio::net::TcpStream::connect(echo).await.unwrap();
                assert!(round_trip(stream, data.clone()).await == data);
            })
        })
        .collect();
    for stream in direct {
        stream.await.unwrap();
    }
    let direct = started.elapsed();
    eprintln!(
        "50 concurrent streams (dial + 64 KiB echo each): {through_tunnel:?} through the tunnel, \
         {direct:?} direct, ratio {:.1}",
        through_tunnel.as_secs_f64() / direct.as_secs_f64()
    );
    assert_eq!(agent.metrics.snapshot().streams_total, 50);
    assert_eq!(server.metrics.snapshot().streams_total, 50);
}

#[tokio::test]
async fn a_wrong_token_gets_no_101_and_the_agent_retries_with_backoff() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let agent = start_agent(&pki, &server.agent_addr.to_string(), "stolen", "node-a", &[]);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = server.tokens.attempts.load(Ordering::SeqCst);
    // Backoff from 50 ms doubling to 500 ms with jitter: a handful of tries in 2 s, not a hot loop.
    assert!((3..=25).contains(&attempts), "{attempts} attempts in 2 s");
    assert!(server.server.agents().is_empty());
    assert_eq!(agent.metrics.snapshot().agent_connections, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        server.tokens.attempts.load(Ordering::SeqCst) > attempts,
        "the agent keeps trying"
    );

    let echo = echo_server("127.0.0.1:0").await;
    let refused = http_connect(&server.socket, &echo.to_string())
        .await
        .expect_err("no agent");
    assert_eq!(refused.status, 503);
}

#[tokio::test]
async fn the_upgrade_needs_a_valid_token_and_announces_the_server() {
    let pki = pki();
    let server = start_server(&pki, "apiserver-0", 3).await;

    let refused = post_upgrade(&pki, server.agent_addr, "stolen").await;
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get(nestplane_tunnel::HEADER_SERVER_ID)
            .is_none()
    );

    let accepted = post_upgrade(&pki, server.agent_addr, TOKEN).await;
    assert_eq!(accepted.status(), 101);
    let header = |name| accepted.headers().get(name).unwrap().to_str().unwrap();
    assert_eq!(header(nestplane_tunnel::HEADER_SERVER_ID), "apiserver-0");
    assert_eq!(header(nestplane_tunnel::HEADER_SERVER_COUNT), "3");
    assert_eq!(header("upgrade"), nestplane_tunnel::UPGRADE_PROTOCOL);
}

#[tokio::test]
async fn without_an_agent_a_dial_gets_503_with_a_reason_at_once() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let started = Instant::now();
    let refused = http_connect(&server.socket, "10.0.0.1:10250")
        .await
        .expect_err("no agent");
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("no tunnel agent"), "{}", refused.body);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.metrics.snapshot().dial_failures[&DialFailure::NoAgent], 1);
}

#[tokio::test]
async fn a_target_the_agent_cannot_reach_gets_502_with_the_dial_error() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let agent = start_agent(&pki, &server.agent_addr.to_string(), TOKEN, "node-a", &[]);
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    // A port nobody listens on: bind one, then free it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();

    let refused = http_connect(&server.socket, &closed.to_string())
        .await
        .expect_err("refused");
    assert_eq!(refused.status, 502);
    assert!(refused.body.contains("refused"), "{}", refused.body);
    assert_eq!(server.metrics.snapshot().dial_failures[&DialFailure::Refused], 1);
    assert_eq!(agent.metrics.snapshot().dial_failures[&DialFailure::Refused], 1);
}

#[tokio::test]
async fn a_cut_agent_connection_fails_open_streams_and_the_agent_reconnects() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let proxy = Proxy::start(vec![server.agent_addr]).await;
    let _agent = start_agent(&pki, &proxy.addr.to_string(), TOKEN, "node-a", &[]);
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    let echo = echo_server("127.0.0.1:0").await;

    let mut open = http_connect(&server.socket, &echo.to_string())
        .await
        .expect("dial");
    open.write_all(b"hello").await.unwrap();
    let mut hello = [0u8; 5];
    open.read_exact(&mut hello).await.unwrap();

    proxy.cut().await;
    let cut = Instant::now();
    // The open stream ends (end of stream or reset), it does not hang.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the open stream hangs after the cut");

    // The agent reconnects and a new dial works within seconds.
    loop {
        if let Ok(stream) = http_connect(&server.socket, &echo.to_string()).await {
            assert_eq!(round_trip(stream, b"again".to_vec()).await, b"again");
            break;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "no working dial 5 s after the cut"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("a dial works again {:?} after the cut", cut.elapsed());
}

#[tokio::test]
async fn keepalive_pings_find_a_silent_agent_connection_and_the_agent_reconnects() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let proxy = Proxy::start(vec![server.agent_addr]).await;
    let agent = start_agent(&pki, &proxy.addr.to_string(), TOKEN, "node-a", &[]);
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    let echo = echo_server("127.0.0.1:0").await;
    let mut open = http_connect(&server.socket, &echo.to_string())
        .await
        .expect("dial");

    // No FIN, no reset: only the pings (every 1 s, 2 s to answer in the tests' tuning) can tell.
    proxy.freeze().await;
    let frozen = Instant::now();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(8), open.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the open stream still hangs 8 s after its connection went silent"
    );
    eprintln!(
        "the stream on a silent connection ended after {:?}",
        frozen.elapsed()
    );

    // Both ends gave the silent connection up and the agent made a new one.
    wait_until("the agent is back", || {
        agent.metrics.snapshot().agent_connections == 1 && server.metrics.snapshot().agent_connections == 1
    })
    .await;
    let stream = http_connect(&server.socket, &echo.to_string())
        .await
        .expect("dial after the silence");
    assert_eq!(round_trip(stream, b"back".to_vec()).await, b"back");
}

#[tokio::test]
async fn an_agent_behind_one_endpoint_connects_to_each_of_two_servers() {
    let pki = pki();
    let first = start_server(&pki, "apiserver-0", 2).await;
    let second = start_server(&pki, "apiserver-1", 2).await;
    let balancer = Proxy::start(vec![first.agent_addr, second.agent_addr]).await;
    let agent = start_agent(&pki, &balancer.addr.to_string(), TOKEN, "node-a", &[]);

    wait_until("the agent holds one connection to each server", || {
        first.server.agents().len() == 1 && second.server.agents().len() == 1
    })
    .await;
    // And no more: the count it was told is reached.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.metrics.snapshot().agent_connections, 2);
    let echo = echo_server("127.0.0.1:0").await;
    for server in [&first, &second] {
        let stream = http_connect(&server.socket, &echo.to_string())
            .await
            .expect("dial");
        assert_eq!(round_trip(stream, b"both".to_vec()).await, b"both");
    }
}

#[tokio::test]
async fn a_dial_goes_to_the_agent_of_the_node_with_that_address_else_to_any() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let endpoint = server.agent_addr.to_string();
    let node_a = start_agent(&pki, &endpoint, TOKEN, "node-a", &["127.0.0.1"]);
    let node_b = start_agent(&pki, &endpoint, TOKEN, "node-b", &["10.0.0.2"]);
    wait_until("both agents are connected", || server.server.agents().len() == 2).await;
    let echo = echo_server("0.0.0.0:0").await;
    let streams = |agent: &RunningAgent| agent.metrics.snapshot().streams_total;

    for _ in 0..4 {
        let stream = http_connect(&server.socket, &format!("127.0.0.1:{}", echo.port()))
            .await
            .expect("dial");
        assert_eq!(round_trip(stream, b"a".to_vec()).await, b"a");
    }
    assert_eq!(
        (streams(&node_a), streams(&node_b)),
        (4, 0),
        "127.0.0.1 is node-a's address"
    );

    // 127.0.0.2 (loopback too) is no node's address: any agent, in turn.
    for _ in 0..4 {
        let stream = http_connect(&server.socket, &format!("127.0.0.2:{}", echo.port()))
            .await
            .expect("dial");
        assert_eq!(round_trip(stream, b"x".to_vec()).await, b"x");
    }
    assert_eq!(streams(&node_a) + streams(&node_b), 8);
    assert!(
        streams(&node_b) >= 1,
        "dials to an unknown address spread over the agents"
    );
}

#[tokio::test]
async fn a_newer_connection_of_the_same_agent_replaces_the_older() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let endpoint = server.agent_addr.to_string();
    let _first = start_agent(&pki, &endpoint, TOKEN, "node-a", &["10.0.0.1"]);
    wait_until("the first agent is connected", || {
        server.server.agents().len() == 1
    })
    .await;
    let _second = start_agent(&pki, &endpoint, TOKEN, "node-a", &["10.0.0.9"]);
    wait_until("the second connection replaced the first", || {
        agents_on(&server)
            .get("node-a")
            .is_some_and(|a| a == &["10.0.0.9"])
    })
    .await;
    assert_eq!(server.server.agents().len(), 1);

    // Two live agents with one identity take the place in turn, backing off each time: a slow
    // cycle, not a storm of TLS handshakes and token reviews.
    let before = server.tokens.attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = server.tokens.attempts.load(Ordering::SeqCst) - before;
    assert!(attempts <= 30, "{attempts} upgrades in 2 s");
    assert_eq!(server.server.agents().len(), 1);
}

#[tokio::test]
async fn a_target_that_stops_reading_stalls_its_sender_not_the_tunnel() {
    let pki = pki();
    let server = start_server(&pki, "s1", 1).await;
    let agent = start_agent(&pki, &server.agent_addr.to_string(), TOKEN, "node-a", &[]);
    wait_until("the agent is connected", || server.server.agents().len() == 1).await;
    // A target that accepts and never reads.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let (socket, _) = sink.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(socket);
    });

    let mut stalled = http_connect(&server.socket, &sink_addr.to_string())
        .await
        .expect("dial");
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    // Write until a write makes no progress for a second.
    while tokio::time::timeout(Duration::from_secs(1), stalled.write_all(&chunk))
        .await
        .is_ok()
    {
        written += chunk.len();
        assert!(
            written < 256 << 20,
            "256 MiB written to a target that reads nothing"
        );
    }
    // What the tunnel holds for this stream is what the server took from the socket and the
    // agent has not yet taken from the HTTP/2 stream: the stream window, the sender's queue, a
    // frame being read and a copy buffer (see `Tuning`).
    let tuning = support::tuning();
    let window = u64::from(tuning.stream_window + tuning.stream_send_buffer + 2 * 16 * 1024);
    let (server_in, agent_in) = (
        server.metrics.snapshot().bytes_outbound,
        agent.metrics.snapshot().bytes_outbound,
    );
    eprintln!(
        "stalled after {written} bytes written; server read {server_in}, agent read {agent_in}, in the tunnel {}",
        server_in - agent_in
    );
    assert!(
        server_in - agent_in <= window,
        "the tunnel buffers {} > {window}",
        server_in - agent_in
    );

    // The agent connection still carries other streams.
    let echo = echo_server("127.0.0.1:0").await;
    let stream = http_connect(&server.socket, &echo.to_string())
        .await
        .expect("dial");
    assert_eq!(round_trip(stream, b"still".to_vec()).await, b"still");
    held.abort();
}
