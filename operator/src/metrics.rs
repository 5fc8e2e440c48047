//! Prometheus metrics. Names are an API: the Grafana dashboard in
//! `deploy/chart/nestplane/dashboards/` queries them, and a test checks that it names no other.
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::HostedCluster;
use crate::api::conditions::{PHASE_AVAILABLE, PHASE_DEGRADED, PHASE_DELETING, PHASE_PROVISIONING};
use crate::builders::secrets::SecretRole;
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
pub struct PhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: &'static str,
}

/// Every phase a HostedCluster can be in: the phase gauge has one series per phase, 1 for the
/// current one, so that a query can count clusters per phase.
pub const PHASES: [&str; 4] = [
    PHASE_PROVISIONING,
    PHASE_AVAILABLE,
    PHASE_DEGRADED,
    PHASE_DELETING,
];

/// A request to the management cluster's API, by Kubernetes verb.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    pub verb: &'static str,
}

/// The verbs of [`kube_verb`]; each series starts at zero.
pub const KUBE_VERBS: [&str; 8] = [
    "get", "list", "watch", "create", "update", "patch", "delete", "other",
];

/// The Kubernetes verb of a request to the API: `get` and `list` told apart by whether the path
/// names one object, `watch` by its query.
pub fn kube_verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    let query = uri.query().unwrap_or_default();
    if query.split('&').any(|p| p == "watch=true" || p == "watch=1") {
        return "watch";
    }
    let path = uri.path().trim_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    // `api/v1/...` or `apis/<group>/<version>/...`; then `namespaces/<ns>/` for namespaced kinds.
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return "other",
    };
    let rest = match rest {
        ["namespaces", _, kind, tail @ ..] => std::iter::once(*kind).chain(tail.iter().copied()).count(),
        other => other.len(),
    };
    let names_one_object = rest >= 2;
    match *method {
        http::Method::GET if names_one_object => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub namespace: String,
    pub name: String,
    pub cert: &'static str,
}

/// Workers of a NodePool: `desired` (spec.replicas) and `ready` (Node Ready).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodePoolWorkerLabels {
    pub namespace: String,
    pub name: String,
    pub state: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    node_pool_workers: Family<NodePoolWorkerLabels, Gauge>,
    runs: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    certificate_expiry: Family<CertificateLabels, Gauge<i64>>,
    phase: Family<PhaseLabels, Gauge>,
    kube_requests: Family<KubeRequestLabels, Counter>,
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
        let phase = Family::<PhaseLabels, Gauge>::default();
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
        registry.register(
            "hosted_cluster_phase",
            "1 for the phase each HostedCluster is in, 0 for the others",
            phase.clone(),
        );
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests the operator sent to the management cluster's API, by verb",
            kube_requests.clone(),
        );
        for verb in KUBE_VERBS {
            let _ = kube_requests.get_or_create(&KubeRequestLabels { verb });
        }
        let node_pool_workers = Family::<NodePoolWorkerLabels, Gauge>::default();
        registry.register(
            "nodepool_workers",
            "Workers of each NodePool: desired, and ready (their Node is Ready)",
            node_pool_workers.clone(),
        );
        Metrics {
            node_pool_workers,
            kube_requests,
            registry,
            runs,
            failures,
            duration,
            certificate_expiry,
            phase,
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
    /// Creates a controller's series at zero, so dashboards show 0 instead of no data until the
    /// first reconcile and the first failure of each kind.
    pub fn register_controller(&self, controller: &'static str) {
        let _ = self.runs.get_or_create(&ControllerLabels { controller });
        let _ = self.duration.get_or_create(&ControllerLabels { controller });
        for error in Error::METRIC_LABELS {
            let _ = self.failures.get_or_create(&FailureLabels { controller, error });
        }
    }

    /// Counts one request to the management cluster's API.
    pub fn kube_request(&self, method: &http::Method, uri: &http::Uri) {
        let verb = kube_verb(method, uri);
        self.kube_requests
            .get_or_create(&KubeRequestLabels { verb })
            .inc();
    }

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

    /// Records the expiry of each certificate (PEM) of `hc`, by the role of the Secret it is in.
    /// Takes plain data so that metrics know nothing of where certificates are stored.
    pub fn record_certificates<'a>(
        &self,
        hc: &HostedCluster,
        certificates: impl IntoIterator<Item = (SecretRole, &'a [u8])>,
    ) {
        for (role, pem) in certificates {
            let Ok(not_after) = nestplane_pki::not_after(&String::from_utf8_lossy(pem)) else {
                continue;
            };
            self.certificate_expiry
                .get_or_create(&certificate_labels(hc, role))
                .set(not_after.unix_timestamp());
        }
    }

    /// Sets the phase series of `hc`: 1 for `current`, 0 for every other phase.
    pub fn record_phase(&self, hc: &HostedCluster, current: &str) {
        for phase in PHASES {
            self.phase
                .get_or_create(&phase_labels(hc, phase))
                .set(i64::from(phase == current));
        }
    }

    /// Drops every series of a HostedCluster that is gone, so dashboards do not show it.
    pub fn forget(&self, hc: &HostedCluster) {
        for phase in PHASES {
            self.phase.remove(&phase_labels(hc, phase));
        }
        for role in SecretRole::ALL {
            self.certificate_expiry.remove(&certificate_labels(hc, role));
        }
    }

    /// Sets the desired and ready worker counts of `pool`.
    pub fn record_node_pool_workers(&self, pool: &crate::api::NodePool, desired: i32, ready: i32) {
        for (state, value) in [("desired", desired), ("ready", ready)] {
            self.node_pool_workers
                .get_or_create(&node_pool_labels(pool, state))
                .set(i64::from(value));
        }
    }

    /// Drops the series of a NodePool that is gone.
    pub fn forget_node_pool(&self, pool: &crate::api::NodePool) {
        for state in ["desired", "ready"] {
            self.node_pool_workers.remove(&node_pool_labels(pool, state));
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn certificate_labels(hc: &HostedCluster, role: SecretRole) -> CertificateLabels {
    CertificateLabels {
        namespace: hc.metadata.namespace.clone().unwrap_or_default(),
        name: hc.metadata.name.clone().unwrap_or_default(),
        cert: role.suffix(),
    }
}

fn node_pool_labels(pool: &crate::api::NodePool, state: &'static str) -> NodePoolWorkerLabels {
    NodePoolWorkerLabels {
        namespace: pool.metadata.namespace.clone().unwrap_or_default(),
        name: pool.metadata.name.clone().unwrap_or_default(),
        state,
    }
}

fn phase_labels(hc: &HostedCluster, phase: &'static str) -> PhaseLabels {
    PhaseLabels {
        namespace: hc.metadata.namespace.clone().unwrap_or_default(),
        name: hc.metadata.name.clone().unwrap_or_default(),
        phase,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use nestplane_pki::CaRole;
    use serde_json::Value;

    use super::*;
    use crate::builders::testing::hosted_cluster;

    #[test]
    fn requests_are_counted_by_kubernetes_verb() {
        let verb = |method: http::Method, uri: &str| kube_verb(&method, &uri.parse().expect("uri"));
        use http::Method;
        assert_eq!(verb(Method::GET, "/api/v1/namespaces/a/secrets/demo-ca"), "get");
        assert_eq!(
            verb(Method::GET, "/api/v1/namespaces/a/secrets?labelSelector=x"),
            "list"
        );
        assert_eq!(verb(Method::GET, "/api/v1/secrets"), "list");
        assert_eq!(verb(Method::GET, "/api/v1/nodes"), "list");
        assert_eq!(verb(Method::GET, "/api/v1/nodes/n1"), "get");
        assert_eq!(verb(Method::GET, "/api/v1/namespaces"), "list");
        assert_eq!(verb(Method::GET, "/api/v1/namespaces/a"), "get");
        assert_eq!(
            verb(
                Method::GET,
                "/apis/apps/v1/namespaces/a/statefulsets?watch=true&resourceVersion=1"
            ),
            "watch"
        );
        assert_eq!(
            verb(
                Method::PATCH,
                "/apis/nestplane.io/v1alpha1/namespaces/a/hostedclusters/x/status"
            ),
            "patch"
        );
        assert_eq!(verb(Method::POST, "/api/v1/namespaces/a/secrets"), "create");
        assert_eq!(verb(Method::DELETE, "/api/v1/namespaces/a/secrets/x"), "delete");
        assert_eq!(verb(Method::GET, "/version"), "other");
        for v in ["get", "list", "watch", "patch", "create", "delete", "other"] {
            assert!(KUBE_VERBS.contains(&v));
        }
    }

    const DASHBOARD: &str = include_str!("../../deploy/chart/nestplane/dashboards/nestplane.json");

    /// Every `nestplane_*` name in the dashboard's queries.
    fn dashboard_metrics() -> BTreeSet<String> {
        let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(exprs.len() >= 10, "found only {} queries", exprs.len());
        exprs
            .iter()
            .flat_map(|expr| {
                expr.match_indices("nestplane_").map(|(start, _)| {
                    expr[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
            })
            .collect()
    }

    fn collect_exprs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(expr)) => out.push(expr.clone()),
                        _ => collect_exprs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
            _ => {}
        }
    }

    fn exported_series(metrics: &Metrics) -> BTreeSet<String> {
        metrics
            .encode()
            .expect("encode")
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn dashboard_queries_only_metrics_the_operator_exports() {
        let metrics = Metrics::default();
        let hc = hosted_cluster();
        // What a fresh operator exports before anything failed: counters at zero.
        metrics.register_controller("hostedcluster");
        metrics.record_phase(&hc, PHASE_AVAILABLE);
        let ca = nestplane_pki::generate_ca(
            "test-ca",
            time::OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .expect("CA");
        metrics.record_certificates(&hc, [(SecretRole::ApiServer, ca.cert_pem.as_bytes())]);

        let exported = exported_series(&metrics);
        let queried = dashboard_metrics();
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard queries {unknown:?}; exported: {exported:?}"
        );
        for family in [
            "nestplane_reconcile_runs_total",
            "nestplane_reconcile_failures_total",
            "nestplane_reconcile_duration_seconds_bucket",
            "nestplane_hosted_cluster_phase",
            "nestplane_certificate_expiry_timestamp_seconds",
        ] {
            assert!(queried.contains(family), "no panel shows {family}");
        }
    }

    const PROMETHEUS_RULE: &str = include_str!("../../deploy/chart/nestplane/templates/prometheusrule.yaml");

    /// Certificate series for each CA and one leaf, as a running cluster has them.
    fn record_cas_and_a_leaf(metrics: &Metrics, hc: &HostedCluster) {
        let now = time::OffsetDateTime::now_utc();
        let ca = nestplane_pki::generate_ca("kubernetes", now, time::Duration::days(10)).expect("CA");
        let roles = CaRole::ALL
            .map(SecretRole::from)
            .into_iter()
            .chain([SecretRole::ApiServer]);
        metrics.record_certificates(hc, roles.map(|role| (role, ca.cert_pem.as_bytes())));
    }

    #[test]
    fn each_alert_queries_a_metric_the_operator_exports_with_the_cert_labels_it_uses() {
        let metrics = Metrics::default();
        record_cas_and_a_leaf(&metrics, &hosted_cluster());
        let exported = exported_series(&metrics);
        let text = metrics.encode().expect("encode");

        let alerts: Vec<&str> = PROMETHEUS_RULE.split("- alert: ").skip(1).collect();
        let names: Vec<&str> = alerts
            .iter()
            .filter_map(|a| a.lines().next())
            .map(str::trim)
            .collect();
        assert_eq!(
            names,
            [
                "NestplaneCertificateAuthorityExpiring",
                "NestplaneCertificateExpiring"
            ]
        );
        for alert in &alerts {
            let expr = alert.split("for:").next().unwrap_or_default();
            let queried: BTreeSet<String> = expr
                .match_indices("nestplane_")
                .map(|(start, _)| {
                    expr[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect()
                })
                .collect();
            assert!(!queried.is_empty(), "no metric in {alert}");
            let unknown: Vec<_> = queried.difference(&exported).collect();
            assert!(unknown.is_empty(), "{unknown:?} not exported: {exported:?}");
        }

        // The CA alert selects exactly the CAs' `cert` label values.
        let cas = PROMETHEUS_RULE
            .split("$cas := \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the $cas variable");
        let expected: Vec<&str> = CaRole::ALL.map(|role| SecretRole::from(role).suffix()).into();
        assert_eq!(cas, expected.join("|"));
        for suffix in expected {
            let series = format!(r#"cert="{suffix}""#);
            assert!(text.contains(&series), "no series with {series}:\n{text}");
        }
        assert!(text.contains(r#"cert="apiserver""#), "{text}");
    }

    #[test]
    fn failure_series_exist_at_zero_for_every_error_kind() {
        let metrics = Metrics::default();
        metrics.register_controller("hostedcluster");
        let text = metrics.encode().expect("encode");
        for error in Error::METRIC_LABELS {
            let line = format!(
                r#"nestplane_reconcile_failures_total{{controller="hostedcluster",error="{error}"}} 0"#
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        for error in [
            Error::MissingField("metadata.namespace"),
            Error::NoNodeAddress(30000),
            Error::SecretKey {
                name: "demo-ca".into(),
                key: "tls.crt",
            },
        ] {
            assert!(Error::METRIC_LABELS.contains(&error.metric_label()), "{error}");
        }
    }

    #[test]
    fn phase_gauge_marks_one_phase_and_forget_drops_the_cluster() {
        let metrics = Metrics::default();
        let hc = hosted_cluster();
        metrics.record_phase(&hc, PHASE_PROVISIONING);
        metrics.record_phase(&hc, PHASE_AVAILABLE);
        let text = metrics.encode().expect("encode");
        let ones: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("nestplane_hosted_cluster_phase{") && l.ends_with(" 1"))
            .collect();
        assert_eq!(ones.len(), 1, "{text}");
        assert!(ones[0].contains(r#"phase="Available""#), "{text}");

        metrics.forget(&hc);
        let text = metrics.encode().expect("encode");
        assert!(!text.contains("nestplane_hosted_cluster_phase{"), "{text}");
    }
}
