use std::time::Duration;

/// HTTP/2 and timing settings shared by the server and the agent.
///
/// Memory bound, per stream and direction, when the reader at the far end stops: at most
/// `stream_window` bytes sent and not yet taken by the receiving side (HTTP/2 flow control: the
/// sender stops once the window is spent, and the window reopens only as the receiver takes the
/// bytes to write them on to its socket), plus `stream_send_buffer` bytes queued at the sender,
/// plus one HTTP/2 frame (16 KiB) being read and the 16 KiB copy buffer at each end. All streams
/// of one agent connection together hold at most `connection_window` unread bytes, so
/// `connection_window / stream_window` streams whose reader stopped can stall before they slow
/// the others.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Initial HTTP/2 window of each stream, both directions.
    pub stream_window: u32,
    /// Bytes a stream's sender queues for the connection beyond what the window lets out.
    pub stream_send_buffer: u32,
    /// Initial HTTP/2 window of a whole agent connection.
    pub connection_window: u32,
    /// Streams one agent connection carries at once (the agent's `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// How often each side pings the other, even when idle, to notice a dead peer.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// A stream with no bytes in either direction for this long is closed.
    pub stream_idle_timeout: Duration,
    /// How long the agent tries to reach a target, and (plus a margin) how long the server
    /// waits for the agent's answer.
    pub dial_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            stream_window: 256 * 1024,
            stream_send_buffer: 64 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_concurrent_streams: 1024,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(20),
            // The kubelet's default --streaming-connection-idle-timeout: an idle `kubectl exec`
            // is closed by the tunnel no sooner than by the kubelet.
            stream_idle_timeout: Duration::from_secs(4 * 60 * 60),
            dial_timeout: Duration::from_secs(10),
        }
    }
}
