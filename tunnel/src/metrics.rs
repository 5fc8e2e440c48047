//! Prometheus metrics of a tunnel server or agent. Names are an API (dashboards query them):
//! `<prefix>_tunnel_agent_connections`, `<prefix>_tunnel_streams_open`,
//! `<prefix>_tunnel_streams_total`, `<prefix>_tunnel_transferred_bytes_total{direction}` and
//! `<prefix>_tunnel_dial_failures_total{reason}`.
use std::collections::BTreeMap;
use std::io;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Why a dial through the tunnel failed; the `reason` label, a bounded set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DialFailure {
    /// No agent is connected to this server.
    NoAgent,
    /// The chosen agent's connection failed before it answered.
    AgentUnavailable,
    /// The agent did not reach the target in time (or did not answer in time).
    Timeout,
    /// The target refused the connection.
    Refused,
    /// No route to the target.
    Unreachable,
    /// The target's name did not resolve.
    Resolve,
    /// Anything else, e.g. a malformed target.
    Other,
}

impl DialFailure {
    pub const ALL: [DialFailure; 7] = [
        Self::NoAgent,
        Self::AgentUnavailable,
        Self::Timeout,
        Self::Refused,
        Self::Unreachable,
        Self::Resolve,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAgent => "no_agent",
            Self::AgentUnavailable => "agent_unavailable",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::Resolve => "resolve",
            Self::Other => "other",
        }
    }

    /// The reason an agent reported in its `nestplane-tunnel-dial-failure` header.
    pub fn parse(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .unwrap_or(Self::Other)
    }

    /// The reason of a failed TCP connect.
    pub fn of_io(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused,
            io::ErrorKind::TimedOut => Self::Timeout,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Self::Unreachable,
            _ => Self::Other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    /// `outbound`: from the API server towards the target; `inbound`: back.
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

const OUTBOUND: DirectionLabels = DirectionLabels {
    direction: "outbound",
};
const INBOUND: DirectionLabels = DirectionLabels { direction: "inbound" };

/// The metrics of one server or agent; clones share the series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    agent_connections: Gauge,
    streams_open: Gauge,
    streams: Counter,
    bytes: Family<DirectionLabels, Counter>,
    dial_failures: Family<ReasonLabels, Counter>,
}

/// The current values, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub agent_connections: i64,
    pub streams_open: i64,
    pub streams_total: u64,
    pub bytes_outbound: u64,
    pub bytes_inbound: u64,
    pub dial_failures: BTreeMap<DialFailure, u64>,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self::default();
        // Every series exists from the start, at zero, so that rate() sees the first failure.
        for reason in DialFailure::ALL {
            let _ = metrics.dial_failures.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        let _ = metrics.bytes.get_or_create(&OUTBOUND);
        let _ = metrics.bytes.get_or_create(&INBOUND);
        metrics
    }

    /// Registers the series under `tunnel_` in `registry` (the binary's, usually prefixed
    /// `nestplane`).
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("tunnel");
        registry.register(
            "agent_connections",
            "Agent connections held: on a server, agents connected to it; on an agent, servers it is connected to",
            self.agent_connections.clone(),
        );
        registry.register(
            "streams_open",
            "Dials being relayed now",
            self.streams_open.clone(),
        );
        registry.register("streams", "Dials relayed since start", self.streams.clone());
        registry.register_with_unit(
            "transferred",
            "Bytes relayed, by direction (outbound: towards the dialled target)",
            Unit::Bytes,
            self.bytes.clone(),
        );
        registry.register(
            "dial_failures",
            "Dials that failed, by reason",
            self.dial_failures.clone(),
        );
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            agent_connections: self.agent_connections.get(),
            streams_open: self.streams_open.get(),
            streams_total: self.streams.get(),
            bytes_outbound: self.bytes.get_or_create(&OUTBOUND).get(),
            bytes_inbound: self.bytes.get_or_create(&INBOUND).get(),
            dial_failures: DialFailure::ALL
                .into_iter()
                .map(|r| {
                    (
                        r,
                        self.dial_failures
                            .get_or_create(&ReasonLabels { reason: r.as_str() })
                            .get(),
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn dial_failed(&self, reason: DialFailure) {
        self.dial_failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn outbound_bytes(&self) -> Counter {
        self.bytes.get_or_create(&OUTBOUND).clone()
    }

    pub(crate) fn inbound_bytes(&self) -> Counter {
        self.bytes.get_or_create(&INBOUND).clone()
    }

    /// Counts a held agent connection until the guard is dropped.
    pub(crate) fn connection_guard(&self) -> GaugeGuard {
        GaugeGuard::new(self.agent_connections.clone())
    }

    /// Counts an open stream until the guard is dropped.
    pub(crate) fn stream_guard(&self) -> GaugeGuard {
        self.streams.inc();
        GaugeGuard::new(self.streams_open.clone())
    }
}

/// Increments a gauge now and decrements it on drop, whatever way the task ends.
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn registers_the_documented_names_with_every_series_from_zero() {
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("nestplane");
        metrics.register(&mut registry);
        metrics.dial_failed(DialFailure::Refused);
        let _stream = metrics.stream_guard();

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "nestplane_tunnel_agent_connections 0",
            "nestplane_tunnel_streams_open 1",
            "nestplane_tunnel_streams_total 1",
            "nestplane_tunnel_transferred_bytes_total{direction=\"outbound\"} 0",
            "nestplane_tunnel_transferred_bytes_total{direction=\"inbound\"} 0",
            "nestplane_tunnel_dial_failures_total{reason=\"refused\"} 1",
            "nestplane_tunnel_dial_failures_total{reason=\"no_agent\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }

    #[test]
    fn an_unknown_reason_from_an_agent_counts_as_other() {
        assert_eq!(DialFailure::parse("refused"), DialFailure::Refused);
        assert_eq!(DialFailure::parse("<script>"), DialFailure::Other);
    }
}
