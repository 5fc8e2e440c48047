//! `nestplane wait-for <host:port>…`: the init container of the controller manager and the
//! scheduler, which holds their start until the API server's Service accepts connections. A
//! Service takes connections only once its pods are Ready, so this is the API server's readiness.
//!
//! They retry by themselves, but with growing delays (client-go's reflector backoff): started at
//! once beside the API server they would notice it seconds after it is up. Asked every 100 ms,
//! they start within a moment of it instead. (kube-apiserver itself has no such wait: it dials
//! etcd's members by name and overlaps its own start with etcd's.) No readiness-gate or
//! init-container crate covers "a TCP connect succeeds", and the loop is ten lines.
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::info;

/// How often each address is tried, and how long one try may take.
const INTERVAL: Duration = Duration::from_millis(100);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the wait is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct WaitForArgs {
    /// Addresses (`host:port`) that must all accept a TCP connection.
    #[arg(required = true)]
    pub addresses: Vec<String>,
}

/// Returns once every address has accepted a connection; waits for as long as that takes (a
/// failing init container would be restarted with the kubelet's growing delays).
pub async fn run(args: WaitForArgs) {
    let started = tokio::time::Instant::now();
    for address in &args.addresses {
        let mut next_report = started + REPORT_EVERY;
        loop {
            let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, TcpStream::connect(address.as_str())).await;
            match attempt {
                Ok(Ok(_)) => break,
                Ok(Err(error)) if tokio::time::Instant::now() >= next_report => {
                    info!(%address, %error, waited_s = started.elapsed().as_secs(), "waiting");
                    next_report += REPORT_EVERY;
                }
                Err(_) if tokio::time::Instant::now() >= next_report => {
                    info!(%address, waited_s = started.elapsed().as_secs(), "waiting: connect timed out");
                    next_report += REPORT_EVERY;
                }
                _ => {}
            }
            tokio::time::sleep(INTERVAL).await;
        }
        info!(%address, after_ms = started.elapsed().as_millis(), "accepts connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_a_listener_appears() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = probe.local_addr().expect("addr");
        drop(probe);
        let waiter = tokio::spawn(run(WaitForArgs {
            addresses: vec![address.to_string()],
        }));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            !waiter.is_finished(),
            "returned before anything listened on {address}"
        );
        let _listener = tokio::net::TcpListener::bind(address).await.expect("bind again");
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("returned within 2 s of the listener")
            .expect("join");
    }
}
