//! Prometheus metrics. Names are an API: `deploy/grafana` uses them.
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::HostedCluster;
use crate::builders::secrets::{SecretRole, TLS_CERT};
use crate::controllers::pki_store::SecretData;
use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub namespace: String,
    pub name: String,
    pub cert: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    runs: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    certificate_expiry: Family<CertificateLabels, Gauge<i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nestplane");
        let runs = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        let certificate_expiry = Family::<CertificateLabels, Gauge<i64>>::default();
        registry.register("reconcile_runs", "Reconciles started", runs.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each hosted control-plane certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        Metrics {
            registry,
            runs,
            failures,
            duration,
            certificate_expiry,
        }
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    pub fn reconcile_run(&self, controller: &'static str) {
        self.runs.get_or_create(&ControllerLabels { controller }).inc();
    }

    pub fn reconcile_timer(&self, controller: &'static str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self
                .duration
                .get_or_create(&ControllerLabels { controller })
                .clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failure(&self, controller: &'static str, error: &Error) {
        self.failures
            .get_or_create(&FailureLabels {
                controller,
                error: error.metric_label(),
            })
            .inc();
    }

    pub fn record_certificates(&self, hc: &HostedCluster, data: &SecretData) {
        for (role, secret) in data {
            let Some(cert) = secret.get(TLS_CERT) else {
                continue;
            };
            let Ok(not_after) = nestplane_pki::not_after(&String::from_utf8_lossy(&cert.0)) else {
                continue;
            };
            let labels = CertificateLabels {
                namespace: hc.metadata.namespace.clone().unwrap_or_default(),
                name: hc.metadata.name.clone().unwrap_or_default(),
                cert: SecretRole::suffix(*role),
            };
            self.certificate_expiry
                .get_or_create(&labels)
                .set(not_after.unix_timestamp());
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
