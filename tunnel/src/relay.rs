//! Copies bytes both ways between the dialler's side and the target's side of a stream.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Each direction's copy buffer. With the HTTP/2 stream window it bounds a stream's memory.
pub(crate) const COPY_BUFFER: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("no bytes in either direction for {0:?}")]
    Idle(Duration),
    #[error("copying: {0}")]
    Io(#[from] io::Error),
}

/// Relays until both directions have ended. An end of stream on one side shuts down the
/// writing half of the other (`copy_bidirectional` does that), so a half-closed connection stays
/// half-open through the tunnel. A stream with no bytes either way for `idle_timeout` is dropped:
/// both sides are closed (the HTTP/2 stream is reset).
pub(crate) async fn relay<D, T>(
    dialler: D,
    target: T,
    idle_timeout: Duration,
    metrics: &Metrics,
) -> Result<(u64, u64), RelayError>
where
    D: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut dialler = Metered {
        inner: dialler,
        read: metrics.outbound_bytes(),
        activity: activity.clone(),
    };
    let mut target = Metered {
        inner: target,
        read: metrics.inbound_bytes(),
        activity: activity.clone(),
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional_with_sizes(&mut dialler, &mut target, COPY_BUFFER, COPY_BUFFER) => {
            Ok(copied?)
        }
        () = activity.idle_for(idle_timeout) => Err(RelayError::Idle(idle_timeout)),
    }
}

/// When bytes last moved, in milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Counts the bytes read from `inner` and records the activity. Every byte written was read
/// from the other side first, so reads alone tell when bytes move.
struct Metered<T> {
    inner: T,
    read: Counter,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            this.read.inc_by(read as u64);
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn relays_both_ways_and_passes_half_close_on() {
        let (mut client, dialler) = tokio::io::duplex(1024);
        let (target, mut server) = tokio::io::duplex(1024);
        let metrics = Metrics::new();
        let relayed = {
            let metrics = metrics.clone();
            tokio::spawn(async move { relay(dialler, target, Duration::from_secs(5), &metrics).await })
        };

        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "the target sees the bytes, then end of stream");

        // The other direction still works after the half close.
        server.write_all(b"pong!").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong!");

        assert_eq!(relayed.await.unwrap().unwrap(), (4, 5));
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot.bytes_outbound, snapshot.bytes_inbound), (4, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn closes_a_stream_idle_in_both_directions() {
        let (_client, dialler) = tokio::io::duplex(1024);
        let (target, mut server) = tokio::io::duplex(1024);
        let relayed =
            tokio::spawn(
                async move { relay(dialler, target, Duration::from_secs(60), &Metrics::new()).await },
            );
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(matches!(relayed.await.unwrap(), Err(RelayError::Idle(_))));
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the target side is closed");
    }
}
