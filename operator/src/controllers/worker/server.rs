//! A Worker's one server in Nova: found by its tag before anything is created (so a create whose
//! answer was lost is adopted, never sent twice), created from the pool's spec, and its state as
//! a Worker phase. Talks only to `Compute`, so the fake cloud tests it.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use nestplane_openstack::{
    Compute, FixedIp, Port, PortSpec, Result, RootVolumeSpec, Server, ServerSpec, ServerStatus,
};

use crate::api::conditions as reasons;
use crate::api::{NodePool, ServerGroupPolicy, WorkerPhase};

use super::super::hosted_nodes::NodeState;
use super::super::node_pool::plan::no_node_within;

/// Who a server belongs to: the UIDs that go into its tags, and the names into its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owners {
    pub namespace: String,
    pub cluster: String,
    pub cluster_uid: String,
    pub pool: String,
    pub pool_uid: String,
    pub worker: String,
    pub worker_uid: String,
}

/// The tag that names a Worker's server; a Worker has at most one server with it.
pub fn worker_tag(worker_uid: &str) -> String {
    format!("np-worker:{worker_uid}")
}

/// The tag every server of a NodePool carries.
pub fn pool_tag(pool_uid: &str) -> String {
    format!("np-pool:{pool_uid}")
}

/// The tag every server of a HostedCluster carries.
pub fn cluster_tag(cluster_uid: &str) -> String {
    format!("np-cluster:{cluster_uid}")
}

/// The server to create for `owners` from `pool`'s spec, with resolved flavor, image and network IDs.
pub fn spec(
    pool: &NodePool,
    owners: &Owners,
    ids: (String, String, Vec<String>),
    user_data: Vec<u8>,
) -> ServerSpec {
    let openstack = &pool.spec.openstack;
    let tags = tags(pool, owners);
    // Nova allows only `[a-zA-Z0-9-_:. ]` in metadata keys: `nestplane.io:` stands for the
    // `nestplane.io/` prefix of Kubernetes keys.
    let mut metadata: BTreeMap<String, String> = openstack.metadata.clone();
    for (key, value) in [
        ("nestplane.io:namespace", &owners.namespace),
        ("nestplane.io:cluster", &owners.cluster),
        ("nestplane.io:node-pool", &owners.pool),
        ("nestplane.io:worker", &owners.worker),
    ] {
        metadata.insert(key.to_string(), value.clone());
    }
    let (flavor_id, image_id, network_ids) = ids;
    ServerSpec {
        name: owners.worker.clone(),
        flavor_id,
        image_id,
        network_ids,
        user_data,
        tags,
        metadata,
        availability_zone: openstack.availability_zone.clone(),
        key_name: openstack.key_name.clone(),
        // Nova applies security groups only to the ports it makes: those of `ports` get them
        // when they are created.
        security_groups: if openstack.ports.is_empty() {
            openstack.security_groups.clone()
        } else {
            Vec::new()
        },
        server_group_id: None,
        port_ids: Vec::new(),
        root_volume: openstack.root_volume.as_ref().map(|volume| RootVolumeSpec {
            // The schema keeps the size in 1..=16384.
            size_gib: volume.size_gi_b.unsigned_abs(),
            volume_type: volume.volume_type.clone(),
        }),
    }
}

/// The tags of a worker's server and ports: nestplane's (cluster, pool, worker), then the user's.
fn tags(pool: &NodePool, owners: &Owners) -> Vec<String> {
    let mut tags = vec![
        cluster_tag(&owners.cluster_uid),
        pool_tag(&owners.pool_uid),
        worker_tag(&owners.worker_uid),
    ];
    tags.extend(
        pool.spec
            .openstack
            .tags
            .iter()
            .filter(|t| !tags.contains(t))
            .cloned()
            .collect::<Vec<_>>(),
    );
    tags
}

/// The name of a worker's port for `ports[index]`: `<worker>-<index>`, as Cluster API's
/// OpenStack provider names them, so a look at Neutron tells whose port it is.
pub fn port_name(worker: &str, index: usize) -> String {
    format!("{worker}-{index}")
}

/// The worker's ports for the pool's `ports`, in spec order: those a previous pass made (found by
/// the worker's tag and their name, so a create whose answer was lost is not sent again) and the
/// missing ones created. Empty when the pool names `networks` instead: Nova makes those ports.
pub async fn ensure_ports(compute: &dyn Compute, pool: &NodePool, owners: &Owners) -> Result<Vec<String>> {
    let openstack = &pool.spec.openstack;
    if openstack.ports.is_empty() {
        return Ok(Vec::new());
    }
    let existing = compute.list_ports_by_tag(&worker_tag(&owners.worker_uid)).await?;
    let mut security_groups = Vec::with_capacity(openstack.security_groups.len());
    let mut ids = Vec::with_capacity(openstack.ports.len());
    for (index, wanted) in openstack.ports.iter().enumerate() {
        let name = port_name(&owners.worker, index);
        if let Some(port) = existing.iter().find(|p| p.name == name) {
            ids.push(port.id.clone());
            continue;
        }
        if security_groups.is_empty() {
            for group in &openstack.security_groups {
                security_groups.push(compute.find_security_group(group).await?);
            }
        }
        let network_id = compute.find_network(&wanted.network).await?;
        let mut fixed_ips = Vec::with_capacity(wanted.fixed_ips.len());
        for fixed in &wanted.fixed_ips {
            fixed_ips.push(FixedIp {
                subnet_id: compute.find_subnet(&network_id, &fixed.subnet).await?,
                ip_address: fixed.ip_address.clone(),
            });
        }
        let spec = PortSpec {
            name,
            network_id,
            fixed_ips,
            security_group_ids: security_groups.clone(),
            tags: tags(pool, owners),
        };
        ids.push(compute.create_port(&spec).await?.id);
    }
    Ok(ids)
}

/// Deletes every port tagged `tag` that no server holds; returns how many.
pub async fn delete_unattached_ports(compute: &dyn Compute, tag: &str) -> Result<usize> {
    let mut deleted = 0;
    for port in compute.list_ports_by_tag(tag).await? {
        if port.device_id.is_none() {
            compute.delete_port(&port.id).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The worker's ports once its server is gone (an unattached port of a failed create included).
pub async fn ports_of(compute: &dyn Compute, worker_uid: &str) -> Result<Vec<Port>> {
    compute.list_ports_by_tag(&worker_tag(worker_uid)).await
}

/// The server group of a pool with a `serverGroupPolicy`, made on its first server: its ID, or
/// `None` when the pool has no policy. Named after the pool's tag, so cleanup finds it.
pub async fn server_group(compute: &dyn Compute, pool: &NodePool, pool_uid: &str) -> Result<Option<String>> {
    let Some(policy) = pool.spec.openstack.server_group_policy else {
        return Ok(None);
    };
    let policy = match policy {
        ServerGroupPolicy::AntiAffinity => "anti-affinity",
        ServerGroupPolicy::SoftAntiAffinity => "soft-anti-affinity",
    };
    Ok(Some(
        compute.ensure_server_group(&pool_tag(pool_uid), policy).await?,
    ))
}

/// Flavor, image and network IDs of `pool`'s spec. Networks come from `networks` only: the
/// networks of `ports` are resolved by [`ensure_ports`], which makes those ports.
pub async fn resolve(compute: &dyn Compute, pool: &NodePool) -> Result<(String, String, Vec<String>)> {
    let openstack = &pool.spec.openstack;
    let flavor = compute.find_flavor(&openstack.flavor).await?;
    let image = compute.find_image(&openstack.image).await?;
    let mut networks = Vec::with_capacity(openstack.networks.len());
    for name in &openstack.networks {
        networks.push(compute.find_network(name).await?);
    }
    Ok((flavor, image, networks))
}

/// What Nova has for a Worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Observation {
    /// The server, and any other server with the Worker's tag (to delete: there must be one).
    /// Boxed: a server is large next to the other variants.
    Found(Box<Server>, Vec<Server>),
    /// The server the Worker recorded is gone.
    Gone(String),
    /// No server was ever recorded and none carries the tag: create one.
    Missing,
}

/// The Worker's server: by its recorded ID, else by its tag.
pub async fn observe(
    compute: &dyn Compute,
    worker_uid: &str,
    server_id: Option<&str>,
) -> Result<Observation> {
    if let Some(id) = server_id {
        return Ok(match compute.get_server(id).await? {
            Some(server) if server.status != ServerStatus::Deleted => {
                Observation::Found(Box::new(server), Vec::new())
            }
            _ => Observation::Gone(id.to_string()),
        });
    }
    let mut servers: Vec<Server> = compute
        .list_servers_by_tag(&worker_tag(worker_uid))
        .await?
        .into_iter()
        .filter(|s| s.status != ServerStatus::Deleted)
        .collect();
    // Keep the one furthest along, so a duplicate that is still building goes first.
    servers.sort_by_key(|s| (s.status != ServerStatus::Active, s.id.clone()));
    let mut servers = servers.into_iter();
    Ok(match servers.next() {
        Some(first) => Observation::Found(Box::new(first), servers.collect()),
        None => Observation::Missing,
    })
}

/// Every server carrying the Worker's tag, plus the recorded one: what its deletion deletes.
pub async fn all_of(compute: &dyn Compute, worker_uid: &str, server_id: Option<&str>) -> Result<Vec<String>> {
    let mut ids: Vec<String> = compute
        .list_servers_by_tag(&worker_tag(worker_uid))
        .await?
        .into_iter()
        .filter(|s| s.status != ServerStatus::Deleted)
        .map(|s| s.id)
        .collect();
    if let Some(id) = server_id
        && !ids.iter().any(|i| i == id)
        && compute
            .get_server(id)
            .await?
            .is_some_and(|s| s.status != ServerStatus::Deleted)
    {
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// A failure to show on the Worker (and its pool): reason and message.
pub type Failure = (&'static str, String);

/// The Worker's phase for its server's state and its Node (`None`: not registered).
pub fn phase(server: &Server, node: Option<&NodeState>) -> (WorkerPhase, Option<Failure>) {
    match server.status {
        ServerStatus::Build => (WorkerPhase::Provisioning, None),
        ServerStatus::Error => {
            let fault = server.fault.as_deref().unwrap_or("no fault given");
            let message = format!("server {} ({}) is in ERROR: {fault}", server.name, server.id);
            (WorkerPhase::Failed, Some((reasons::REASON_SERVER_ERROR, message)))
        }
        ServerStatus::Deleted => gone(&server.id),
        _ if node.is_some() => (WorkerPhase::Running, None),
        ServerStatus::Active => (WorkerPhase::Joining, None),
        // SHUTOFF and the transient states: the Node's readiness (and auto-repair) decides.
        _ => (WorkerPhase::Provisioning, None),
    }
}

/// When `server` was created: Nova's `created` when it says, else when the Worker first recorded
/// it (`recorded`), else `now` (a create's answer carries no time).
pub fn created_at(server: &Server, recorded: Option<&Time>, now: Timestamp) -> Time {
    server
        .created
        .as_deref()
        .and_then(|text| text.parse::<Timestamp>().ok())
        .map(Time)
        .or_else(|| recorded.cloned())
        .unwrap_or(Time(now))
}

/// `NodeStartupTimeout` for a server created at `created` whose Node has not registered (the
/// caller saw that it has not) when `timeout_s` have passed since.
pub fn node_startup(server: &Server, created: Timestamp, timeout_s: i32, now: Timestamp) -> Option<Failure> {
    if now.duration_since(created).as_secs() < i64::from(timeout_s) {
        return None;
    }
    let message = format!(
        "{}: server {} ({}) is {}, created {created}",
        no_node_within(timeout_s),
        server.name,
        server.id,
        server.status
    );
    Some((reasons::REASON_NODE_STARTUP_TIMEOUT, message))
}

/// A server that vanished behind nestplane's back.
pub fn gone(id: &str) -> (WorkerPhase, Option<Failure>) {
    let message = format!("server {id} no longer exists in Nova: it was deleted outside nestplane");
    (WorkerPhase::Failed, Some((reasons::REASON_SERVER_GONE, message)))
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use nestplane_openstack::fake::Cloud;

    use super::*;
    use crate::controllers::node_pool::testing::pool;

    fn owners() -> Owners {
        Owners {
            namespace: "team-a".into(),
            cluster: "demo".into(),
            cluster_uid: "c-uid".into(),
            pool: "workers".into(),
            pool_uid: "p-uid".into(),
            worker: "workers-abcde".into(),
            worker_uid: "w-uid".into(),
        }
    }

    fn cloud() -> Cloud {
        let cloud = Cloud::new();
        cloud
            .add("flavor", "f-1", "nestplane.tiny")
            .add("image", "i-1", "nestplane-tiny")
            .add("network", "n-1", "nestplane-net")
            .add("subnet", "s-1", "nestplane-subnet")
            .add("security group", "sg-1", "default");
        cloud
    }

    /// A pool whose workers get a port on `nestplane-subnet`, at `address` when given.
    fn pool_with_port(address: Option<&str>) -> NodePool {
        let mut pool = pool();
        pool.spec.openstack.networks.clear();
        pool.spec.openstack.security_groups = vec!["default".into()];
        pool.spec.openstack.ports = vec![crate::api::PortSpec {
            network: "nestplane-net".into(),
            fixed_ips: vec![crate::api::FixedIp {
                subnet: "nestplane-subnet".into(),
                ip_address: address.map(str::to_string),
            }],
        }];
        pool
    }

    #[test]
    fn a_worker_with_ports_boots_on_its_own_port_with_the_asked_address() {
        let cloud = cloud();
        let pool = pool_with_port(Some("172.31.250.40"));
        let ids = block_on(resolve(&cloud, &pool)).expect("resolve");
        let mut spec = spec(&pool, &owners(), ids, Vec::new());
        spec.port_ids = block_on(ensure_ports(&cloud, &pool, &owners())).expect("ports");
        assert!(spec.network_ids.is_empty(), "no second interface from Nova");
        assert!(
            spec.security_groups.is_empty(),
            "the groups go on the port, where Nova would not put them"
        );
        let server = block_on(cloud.create_server(&spec)).expect("create");
        assert_eq!(server.fixed_ips(), ["172.31.250.40"]);

        let ports = cloud.ports();
        assert_eq!(ports.len(), 1);
        let port = &ports[0];
        assert_eq!(port.name, "workers-abcde-0");
        assert_eq!(
            (port.network_id.as_str(), port.fixed_ips[0].subnet_id.as_str()),
            ("n-1", "s-1")
        );
        assert_eq!(
            port.tags[..3],
            ["np-cluster:c-uid", "np-pool:p-uid", "np-worker:w-uid"]
        );
        assert_eq!(port.device_id.as_deref(), Some(server.id.as_str()));
    }

    #[test]
    fn ports_made_by_an_earlier_pass_are_used_again_not_made_twice() {
        let cloud = cloud();
        let pool = pool_with_port(None);
        // The server create failed (or the port create's answer was lost) after the port was made.
        let first = block_on(ensure_ports(&cloud, &pool, &owners())).expect("ports");
        let again = block_on(ensure_ports(&cloud, &pool, &owners())).expect("ports");
        assert_eq!(first, again);
        assert_eq!(cloud.ports_created(), 1);

        let mut other = owners();
        other.worker = "workers-fghij".into();
        other.worker_uid = "w-uid-2".into();
        let second_worker = block_on(ensure_ports(&cloud, &pool, &other)).expect("ports");
        assert_ne!(second_worker, first, "each worker has its own port");
        assert_eq!(block_on(ports_of(&cloud, "w-uid")).expect("ports").len(), 1);
    }

    #[test]
    fn a_missing_subnet_is_a_network_failure_and_makes_no_port() {
        let cloud = cloud();
        let mut pool = pool_with_port(None);
        pool.spec.openstack.ports[0].fixed_ips[0].subnet = "no-such-subnet".into();
        let error = block_on(ensure_ports(&cloud, &pool, &owners())).expect_err("no such subnet");
        assert_eq!(
            crate::controllers::cloud::openstack_reason(&error),
            "NetworkNotFound"
        );
        assert!(error.to_string().contains("no-such-subnet"));
        assert!(cloud.ports().is_empty());
    }

    #[test]
    fn only_ports_no_server_holds_are_swept() {
        let cloud = cloud();
        let pool = pool_with_port(None);
        let held = block_on(ensure_ports(&cloud, &pool, &owners())).expect("ports");
        let mut spec = spec(
            &pool,
            &owners(),
            (String::new(), String::new(), Vec::new()),
            Vec::new(),
        );
        spec.port_ids = held.clone();
        block_on(cloud.create_server(&spec)).expect("create");
        let mut other = owners();
        other.worker = "workers-fghij".into();
        other.worker_uid = "w-uid-2".into();
        let leaked = block_on(ensure_ports(&cloud, &pool, &other)).expect("ports");
        assert_eq!(
            block_on(delete_unattached_ports(&cloud, &pool_tag("p-uid"))).expect("sweep"),
            1
        );
        let left: Vec<String> = cloud.ports().into_iter().map(|p| p.id).collect();
        assert_eq!(left, held);
        assert!(!left.contains(&leaked[0]));
    }

    #[test]
    fn the_server_carries_the_owners_tags_and_metadata_and_the_users_own() {
        let mut pool = pool();
        pool.spec.openstack.tags = vec!["team-a".into()];
        pool.spec
            .openstack
            .metadata
            .insert("cost-center".into(), "42".into());
        let spec = spec(
            &pool,
            &owners(),
            ("f".into(), "i".into(), vec!["n".into()]),
            b"x".to_vec(),
        );
        assert_eq!(spec.name, "workers-abcde");
        assert_eq!(
            spec.tags,
            ["np-cluster:c-uid", "np-pool:p-uid", "np-worker:w-uid", "team-a"]
        );
        assert!(spec.tags.iter().all(|t| t.len() <= 60));
        assert_eq!(
            spec.metadata.get("nestplane.io:worker").map(String::as_str),
            Some("workers-abcde")
        );
        assert_eq!(spec.metadata.get("cost-center").map(String::as_str), Some("42"));
    }

    #[test]
    fn a_root_volume_is_asked_of_nova_with_its_size_and_type() {
        let ids = || ("f".to_string(), "i".to_string(), vec!["n".to_string()]);
        let mut pool = pool();
        assert_eq!(spec(&pool, &owners(), ids(), Vec::new()).root_volume, None);
        pool.spec.openstack.root_volume = Some(crate::api::RootVolume {
            size_gi_b: 20,
            volume_type: Some("nestplane-standard".into()),
        });
        assert_eq!(
            spec(&pool, &owners(), ids(), Vec::new()).root_volume,
            Some(RootVolumeSpec {
                size_gib: 20,
                volume_type: Some("nestplane-standard".into()),
            })
        );
    }

    #[test]
    fn a_create_whose_answer_was_lost_is_found_by_tag_not_sent_again() {
        let cloud = cloud();
        let pool = pool();
        let ids = block_on(resolve(&cloud, &pool)).expect("resolve");
        assert_eq!(ids, ("f-1".into(), "i-1".into(), vec!["n-1".to_string()]));
        assert_eq!(
            block_on(observe(&cloud, "w-uid", None)).expect("observe"),
            Observation::Missing
        );
        // The create went through but its answer never arrived: no ID was recorded.
        block_on(cloud.create_server(&spec(&pool, &owners(), ids, Vec::new()))).expect("create");
        let Observation::Found(server, extra) = block_on(observe(&cloud, "w-uid", None)).expect("observe")
        else {
            panic!("the server made by the lost create is not found");
        };
        assert!(extra.is_empty());
        assert_eq!(server.name, "workers-abcde");
        assert_eq!(cloud.created(), 1);
        assert_eq!(
            block_on(observe(&cloud, "other-uid", None)).expect("observe"),
            Observation::Missing
        );
    }

    #[test]
    fn a_recorded_server_deleted_behind_our_back_is_gone_and_fails_the_worker() {
        let cloud = cloud();
        let pool = pool();
        let ids = block_on(resolve(&cloud, &pool)).expect("resolve");
        let server = block_on(cloud.create_server(&spec(&pool, &owners(), ids, Vec::new()))).expect("create");
        block_on(cloud.delete_server(&server.id)).expect("delete");
        let observed = block_on(observe(&cloud, "w-uid", Some(&server.id))).expect("observe");
        assert_eq!(observed, Observation::Gone(server.id.clone()));
        let (phase, failure) = gone(&server.id);
        assert_eq!(phase, WorkerPhase::Failed);
        assert!(failure.is_some_and(|(r, m)| r == "ServerGone" && m.contains(&server.id)));
    }

    #[test]
    fn a_missing_flavor_fails_before_any_server_is_created() {
        let cloud = cloud();
        let mut pool = pool();
        pool.spec.openstack.flavor = "no-such-flavor".into();
        let error = block_on(resolve(&cloud, &pool)).expect_err("no such flavor");
        assert_eq!(
            crate::controllers::cloud::openstack_reason(&error),
            "FlavorNotFound"
        );
        assert!(error.to_string().contains("no-such-flavor"));
        assert_eq!(cloud.created(), 0);
    }

    #[test]
    fn a_pool_with_a_policy_gets_one_server_group_and_one_without_none() {
        let cloud = cloud();
        let mut pool = pool();
        assert_eq!(
            block_on(server_group(&cloud, &pool, "p-uid")).expect("group"),
            None
        );
        pool.spec.openstack.server_group_policy = Some(ServerGroupPolicy::SoftAntiAffinity);
        let first = block_on(server_group(&cloud, &pool, "p-uid")).expect("group");
        let second = block_on(server_group(&cloud, &pool, "p-uid")).expect("group");
        assert!(first.is_some());
        assert_eq!(first, second, "the group is made once");
        assert_eq!(
            cloud.server_groups(),
            [("np-pool:p-uid".to_string(), "soft-anti-affinity".to_string())]
        );
    }

    #[test]
    fn the_startup_clock_is_novas_created_else_the_recorded_time_else_now() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().expect("ts");
        let recorded = Time("2026-01-01T00:30:00Z".parse().expect("ts"));
        let mut server = Server::building("s-1".into(), &ServerSpec::default());
        assert_eq!(created_at(&server, None, now), Time(now), "a create's answer");
        assert_eq!(created_at(&server, Some(&recorded), now), recorded);
        server.created = Some("2026-01-01T00:29:58Z".into());
        assert_eq!(
            created_at(&server, Some(&recorded), now).0.to_string(),
            "2026-01-01T00:29:58Z"
        );
        server.created = Some("not a time".into());
        assert_eq!(created_at(&server, Some(&recorded), now), recorded);
    }

    #[test]
    fn a_server_without_a_node_times_out_only_once_the_startup_timeout_has_passed() {
        let mut server = Server::building("s-1".into(), &ServerSpec::default());
        server.name = "workers-abcde".into();
        server.status = ServerStatus::ShutOff;
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let at = |s: &str| s.parse::<Timestamp>().expect("ts");
        assert_eq!(
            node_startup(&server, created, 1200, at("2026-01-01T00:19:59Z")),
            None
        );
        let (reason, message) =
            node_startup(&server, created, 1200, at("2026-01-01T00:20:00Z")).expect("timed out");
        assert_eq!(reason, "NodeStartupTimeout");
        assert_eq!(
            message,
            "no Node registered within 1200s of server creation: server workers-abcde (s-1) is \
             SHUTOFF, created 2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn phases_follow_the_server_and_the_node() {
        let mut server = Server::building("s-1".into(), &ServerSpec::default());
        assert_eq!(phase(&server, None).0, WorkerPhase::Provisioning);
        server.status = ServerStatus::Active;
        assert_eq!(phase(&server, None).0, WorkerPhase::Joining);
        let node = NodeState {
            ready: false,
            not_ready_since: None,
        };
        assert_eq!(phase(&server, Some(&node)).0, WorkerPhase::Running);
        server.status = ServerStatus::Error;
        server.fault = Some("No valid host was found.".into());
        let (failed, failure) = phase(&server, None);
        assert_eq!(failed, WorkerPhase::Failed);
        assert!(failure.is_some_and(|(r, m)| r == "ServerError" && m.contains("No valid host")));
    }
}
