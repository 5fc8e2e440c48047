//! [`MeteredCompute`]: a [`Compute`] that counts and times every request of the one it wraps,
//! as `nestplane_openstack_requests_total{service,operation,outcome}` and
//! `nestplane_openstack_request_duration_seconds{service,operation}`. A decorator rather than
//! counters inside the client, so the fake cloud of unit tests is measured the same way and the
//! OpenStack crate stays free of the operator's metrics.
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use tracing::debug;

use crate::metrics::Metrics;
use crate::openstack::{Compute, Error, Failure, Port, PortSpec, Result, Server, ServerSpec};

/// Each operation of [`Compute`]: the service that answers it, its `operation` label, and
/// whether it changes the cloud (the benchmark counts writes and reads apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    pub service: &'static str,
    pub name: &'static str,
    pub write: bool,
}

const fn operation(service: &'static str, name: &'static str, write: bool) -> Operation {
    Operation { service, name, write }
}

pub const CREATE_SERVER: Operation = operation("compute", "create_server", true);
pub const GET_SERVER: Operation = operation("compute", "get_server", false);
pub const LIST_SERVERS_BY_TAG: Operation = operation("compute", "list_servers_by_tag", false);
pub const DELETE_SERVER: Operation = operation("compute", "delete_server", true);
pub const GET_USER_DATA: Operation = operation("compute", "get_user_data", false);
pub const FIND_FLAVOR: Operation = operation("compute", "find_flavor", false);
pub const FIND_IMAGE: Operation = operation("image", "find_image", false);
pub const FIND_NETWORK: Operation = operation("network", "find_network", false);
// Looks the group up by name; creates it once per pool, so it counts as a read.
pub const ENSURE_SERVER_GROUP: Operation = operation("compute", "ensure_server_group", false);
pub const DELETE_SERVER_GROUPS: Operation = operation("compute", "delete_server_groups", true);
pub const FIND_SUBNET: Operation = operation("network", "find_subnet", false);
pub const FIND_SECURITY_GROUP: Operation = operation("network", "find_security_group", false);
pub const CREATE_PORT: Operation = operation("network", "create_port", true);
pub const LIST_PORTS_BY_TAG: Operation = operation("network", "list_ports_by_tag", false);
pub const DELETE_PORT: Operation = operation("network", "delete_port", true);

pub const OPERATIONS: [Operation; 15] = [
    CREATE_SERVER,
    GET_SERVER,
    LIST_SERVERS_BY_TAG,
    DELETE_SERVER,
    GET_USER_DATA,
    FIND_FLAVOR,
    FIND_IMAGE,
    FIND_NETWORK,
    ENSURE_SERVER_GROUP,
    DELETE_SERVER_GROUPS,
    FIND_SUBNET,
    FIND_SECURITY_GROUP,
    CREATE_PORT,
    LIST_PORTS_BY_TAG,
    DELETE_PORT,
];

/// Every `outcome` label: `ok` or the class of the error, bounded so that a message never
/// becomes a label.
pub const OUTCOMES: [&str; 9] = [
    "ok",
    "transient",
    "unauthorized",
    "forbidden",
    "not_found",
    "ambiguous",
    "client",
    "invalid_response",
    "config",
];

/// The `outcome` label of a result: `ok`, or what a user would do about the error: wait
/// (`transient`: no answer, timeout, 409, 429, 5xx), fix credentials (`unauthorized`), quota or
/// policy (`forbidden`, Nova's answer to an exceeded quota), a name (`not_found`, `ambiguous`),
/// the request (`client`), or the cloud's configuration or catalog (`config`).
pub fn outcome<T>(result: &Result<T>) -> &'static str {
    let error = match result {
        Ok(_) => return "ok",
        Err(error) => error,
    };
    if error.is_transient() {
        return "transient";
    }
    match error {
        Error::Config(_) => "config",
        Error::OpenStack { source, .. } => match source {
            Failure::Status { status: 401, .. } => "unauthorized",
            Failure::Status { status: 403, .. } => "forbidden",
            Failure::Status { status: 404, .. } | Failure::NotFound { .. } => "not_found",
            Failure::Status { .. } => "client",
            Failure::Ambiguous { .. } => "ambiguous",
            Failure::Decode { .. } => "invalid_response",
            Failure::NoEndpoint { .. } => "config",
            // Transient, handled above.
            Failure::Transport { .. } => "transient",
        },
    }
}

/// A [`Compute`] that records each request of `inner` in the operator's metrics.
pub struct MeteredCompute {
    inner: Arc<dyn Compute>,
    metrics: Arc<Metrics>,
}

impl MeteredCompute {
    /// Wraps `inner`; the `ok` series of every operation start at zero, so rates and the
    /// dashboard show 0 rather than no data before the first request.
    pub fn new(inner: Arc<dyn Compute>, metrics: Arc<Metrics>) -> Self {
        for op in OPERATIONS {
            metrics.register_openstack_operation(op.service, op.name);
        }
        Self { inner, metrics }
    }

    fn metered<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let start = Instant::now();
            let result = call.await;
            let seconds = start.elapsed().as_secs_f64();
            let outcome = outcome(&result);
            debug!(
                service = op.service,
                operation = op.name,
                outcome,
                seconds,
                "OpenStack request"
            );
            self.metrics
                .openstack_request(op.service, op.name, outcome, seconds);
            result
        })
    }
}

impl Compute for MeteredCompute {
    fn create_server<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, Result<Server>> {
        self.metered(CREATE_SERVER, self.inner.create_server(spec))
    }

    fn get_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>> {
        self.metered(GET_SERVER, self.inner.get_server(id))
    }

    fn list_servers_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Server>>> {
        self.metered(LIST_SERVERS_BY_TAG, self.inner.list_servers_by_tag(tag))
    }

    fn delete_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.metered(DELETE_SERVER, self.inner.delete_server(id))
    }

    fn get_user_data<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        self.metered(GET_USER_DATA, self.inner.get_user_data(id))
    }

    fn find_flavor<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(FIND_FLAVOR, self.inner.find_flavor(name_or_id))
    }

    fn find_image<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(FIND_IMAGE, self.inner.find_image(name_or_id))
    }

    fn find_network<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(FIND_NETWORK, self.inner.find_network(name_or_id))
    }

    fn ensure_server_group<'a>(&'a self, name: &'a str, policy: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(ENSURE_SERVER_GROUP, self.inner.ensure_server_group(name, policy))
    }

    fn delete_server_groups<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        self.metered(DELETE_SERVER_GROUPS, self.inner.delete_server_groups(name))
    }

    fn find_subnet<'a>(&'a self, network_id: &'a str, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(FIND_SUBNET, self.inner.find_subnet(network_id, name_or_id))
    }

    fn find_security_group<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>> {
        self.metered(FIND_SECURITY_GROUP, self.inner.find_security_group(name_or_id))
    }

    fn create_port<'a>(&'a self, spec: &'a PortSpec) -> BoxFuture<'a, Result<Port>> {
        self.metered(CREATE_PORT, self.inner.create_port(spec))
    }

    fn list_ports_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Port>>> {
        self.metered(LIST_PORTS_BY_TAG, self.inner.list_ports_by_tag(tag))
    }

    fn delete_port<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.metered(DELETE_PORT, self.inner.delete_port(id))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::openstack::fake::Cloud;

    fn metered() -> (Arc<Cloud>, Arc<Metrics>, MeteredCompute) {
        let cloud = Arc::new(Cloud::new());
        cloud
            .add("flavor", "f-1", "nestplane.tiny")
            .add("image", "i-1", "nestplane-tiny")
            .add("network", "n-1", "nestplane-net");
        let metrics = Arc::new(Metrics::default());
        let compute = MeteredCompute::new(cloud.clone(), metrics.clone());
        (cloud, metrics, compute)
    }

    /// The value of one series in the exposition, e.g. `nestplane_openstack_requests_total{...}`.
    fn sample(metrics: &Metrics, series: &str) -> Option<f64> {
        let text = metrics.encode().expect("encode");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    fn requests(metrics: &Metrics, service: &str, operation: &str, outcome: &str) -> Option<f64> {
        sample(
            metrics,
            &format!(
                r#"nestplane_openstack_requests_total{{service="{service}",operation="{operation}",outcome="{outcome}"}}"#
            ),
        )
    }

    fn transport_failure() -> Failure {
        Failure::Transport {
            method: "POST".into(),
            url: "http://nova/servers".into(),
            message: "connection reset".into(),
            timeout: false,
        }
    }

    fn status(status: u16) -> Failure {
        Failure::Status {
            method: "POST".into(),
            url: "http://nova/servers".into(),
            status,
            message: "no".into(),
            request_id: None,
        }
    }

    #[test]
    fn each_request_is_counted_by_service_operation_and_outcome_and_passed_through() {
        let (cloud, metrics, compute) = metered();
        assert_eq!(
            requests(&metrics, "compute", "create_server", "ok"),
            Some(0.0),
            "series start at zero"
        );

        let spec = ServerSpec {
            name: "pool-0".into(),
            tags: vec!["uid-1".into()],
            ..ServerSpec::default()
        };
        let server = block_on(compute.create_server(&spec)).expect("create");
        assert_eq!(
            cloud.servers(),
            vec![server.clone()],
            "the create reached the cloud"
        );
        assert_eq!(
            block_on(compute.list_servers_by_tag("uid-1")).expect("list"),
            vec![server]
        );
        assert_eq!(
            block_on(compute.find_image("nestplane-tiny")).expect("image"),
            "i-1"
        );
        assert_eq!(
            block_on(compute.find_network("nestplane-net")).expect("net"),
            "n-1"
        );
        let missing = block_on(compute.find_flavor("huge")).expect_err("no such flavor");
        assert_eq!(outcome::<()>(&Err(missing)), "not_found");

        assert_eq!(requests(&metrics, "compute", "create_server", "ok"), Some(1.0));
        assert_eq!(
            requests(&metrics, "compute", "list_servers_by_tag", "ok"),
            Some(1.0)
        );
        assert_eq!(requests(&metrics, "image", "find_image", "ok"), Some(1.0));
        assert_eq!(requests(&metrics, "network", "find_network", "ok"), Some(1.0));
        assert_eq!(
            requests(&metrics, "compute", "find_flavor", "not_found"),
            Some(1.0)
        );
        assert_eq!(requests(&metrics, "compute", "find_flavor", "ok"), Some(0.0));
        assert_eq!(
            sample(
                &metrics,
                r#"nestplane_openstack_request_duration_seconds_count{service="compute",operation="find_flavor"}"#
            ),
            Some(1.0),
            "a failed request is timed too"
        );
    }

    #[test]
    fn failures_are_counted_by_class_and_returned_unchanged() {
        let (cloud, metrics, compute) = metered();
        cloud
            .fail_next("create server", transport_failure())
            .fail_next("create server", status(503))
            .fail_next("create server", status(403))
            .fail_next("create server", status(401))
            .fail_next("create server", status(400));
        let spec = ServerSpec::default();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let error = block_on(compute.create_server(&spec)).expect_err("failure");
            statuses.push(error.status());
        }
        assert_eq!(statuses, [None, Some(503), Some(403), Some(401), Some(400)]);
        assert!(cloud.servers().is_empty(), "nothing was created");

        assert_eq!(
            requests(&metrics, "compute", "create_server", "transient"),
            Some(2.0)
        );
        assert_eq!(
            requests(&metrics, "compute", "create_server", "forbidden"),
            Some(1.0)
        );
        assert_eq!(
            requests(&metrics, "compute", "create_server", "unauthorized"),
            Some(1.0)
        );
        assert_eq!(
            requests(&metrics, "compute", "create_server", "client"),
            Some(1.0)
        );
        assert_eq!(requests(&metrics, "compute", "create_server", "ok"), Some(0.0));
    }

    #[test]
    fn every_outcome_is_a_known_label() {
        let failures = [
            transport_failure(),
            status(404),
            status(409),
            status(429),
            status(500),
            Failure::Decode {
                url: "u".into(),
                message: "m".into(),
            },
            Failure::NoEndpoint {
                service: "compute".into(),
                interface: "public".into(),
                region: "RegionOne".into(),
            },
            Failure::Ambiguous {
                kind: "image",
                name: "x".into(),
                count: 2,
            },
        ];
        let mut seen: Vec<&str> = failures
            .into_iter()
            .map(|source| outcome::<()>(&Err(Error::OpenStack { op: "op", source })))
            .collect();
        seen.push(outcome::<()>(&Err(Error::Config("no cloud".into()))));
        seen.push(outcome(&Ok(())));
        assert_eq!(
            seen,
            [
                "transient",
                "not_found",
                "transient",
                "transient",
                "transient",
                "invalid_response",
                "config",
                "ambiguous",
                "config",
                "ok"
            ]
        );
        assert!(seen.iter().all(|o| OUTCOMES.contains(o)), "{seen:?}");
    }
}
