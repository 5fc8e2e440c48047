//! nestplane's OpenStack client against the real test cloud that `make openstack-up` starts.
//!
//! The clouds.yaml comes from `NESTPLANE_E2E_CLOUDS_YAML` (default
//! `/var/lib/nestplane/openstack/clouds.yaml`); its cloud `nestplane` holds an application
//! credential, `nestplane-quota` one for a project that allows two servers. Without the cloud these
//! tests fail: start it with `make openstack-up`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use ipnet::Ipv4Net;
use nestplane_e2e::openstack::cloud_config;
use nestplane_openstack::{Client, Compute, Server, ServerSpec, ServerStatus};

const FLAVOR: &str = "nestplane.tiny";
const IMAGE: &str = "nestplane-tiny";
const NETWORK: &str = "nestplane-net";
const FAKE_ZONE: &str = "nestplane-fake";
const QEMU_ZONE: &str = "nestplane-qemu";

/// hack/network.env: the one place for the test cloud's addresses, which up.sh reads too.
const NETWORK_ENV: &str = include_str!("../../hack/network.env");

/// The value of `name` in hack/network.env.
fn network_setting(name: &str) -> Result<&'static str> {
    NETWORK_ENV
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .with_context(|| format!("no {name} in hack/network.env"))
}

/// The provider subnet the test cloud gives fixed IPs from (`OS_NET_CIDR`).
fn provider_subnet() -> Result<Ipv4Net> {
    let cidr = network_setting("OS_NET_CIDR")?;
    cidr.parse()
        .with_context(|| format!("OS_NET_CIDR {cidr:?} in hack/network.env"))
}

/// Needs no cloud: a subnet edited in hack/network.env must still hold the addresses up.sh gives
/// the host and Neutron, or the cloud would start with a provider network it cannot route.
#[test]
fn provider_addresses_lie_in_the_provider_subnet() -> Result<()> {
    let subnet = provider_subnet()?;
    for name in ["OS_NET_GATEWAY", "OS_NET_POOL_START", "OS_NET_POOL_END"] {
        let ip: Ipv4Addr = network_setting(name)?
            .parse()
            .with_context(|| format!("{name} in hack/network.env"))?;
        ensure!(subnet.contains(&ip), "{name} {ip} outside OS_NET_CIDR {subnet}");
    }
    Ok(())
}

fn client(cloud: &str) -> Result<Client> {
    Ok(Client::new(cloud_config(cloud)?)?)
}

/// A tag no other run uses, standing in for a NodePool UID.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn spec(
    os: &Client,
    name: &str,
    zone: &str,
    tags: Vec<String>,
    user_data: &[u8],
) -> Result<ServerSpec> {
    Ok(ServerSpec {
        name: name.into(),
        flavor_id: os.find_flavor(FLAVOR).await?,
        image_id: os.find_image(IMAGE).await?,
        network_ids: vec![os.find_network(NETWORK).await?],
        user_data: user_data.to_vec(),
        tags,
        availability_zone: Some(zone.into()),
        ..ServerSpec::default()
    })
}

async fn wait_active(os: &Client, id: &str, timeout: Duration) -> Result<Server> {
    let deadline = Instant::now() + timeout;
    loop {
        let server = os
            .get_server(id)
            .await?
            .context("server vanished while building")?;
        match server.status {
            ServerStatus::Active if !server.fixed_ips().is_empty() => return Ok(server),
            ServerStatus::Error => bail!("server {id} went to ERROR: {:?}", server.fault),
            _ if Instant::now() > deadline => bail!("server {id} still {} after {timeout:?}", server.status),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn wait_gone(os: &Client, id: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while os.get_server(id).await?.is_some() {
        ensure!(
            Instant::now() < deadline,
            "server {id} still there {timeout:?} after delete"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Runs `case`, then deletes every server tagged `tag`, whether the case passed or not.
async fn with_cleanup<F: std::future::Future<Output = Result<()>>>(
    os: &Client,
    tag: &str,
    case: F,
) -> Result<()> {
    let outcome = case.await;
    for server in os.list_servers_by_tag(tag).await.unwrap_or_default() {
        let _ = os.delete_server(&server.id).await;
    }
    outcome
}

#[tokio::test]
async fn server_with_user_data_and_tags_round_trips() -> Result<()> {
    let os = client("nestplane")?;
    let tag = unique("np-e2e");
    let user_data = b"#cloud-config\nruncmd:\n  - [echo, nestplane]\n";
    with_cleanup(&os, &tag, async {
        let spec = spec(
            &os,
            &unique("worker"),
            FAKE_ZONE,
            vec![tag.clone(), "nestplane-e2e".into()],
            user_data,
        )
        .await?;
        let created = os.create_server(&spec).await?;
        let active = wait_active(&os, &created.id, Duration::from_secs(120)).await?;
        assert_eq!(active.availability_zone.as_deref(), Some(FAKE_ZONE));
        let subnet = provider_subnet()?;
        let ip: Ipv4Addr = active.fixed_ips()[0].parse().context("fixed IP of the server")?;
        assert!(
            subnet.contains(&ip),
            "fixed IP {ip} outside the provider subnet {subnet}"
        );
        let mut tags = active.tags.clone();
        tags.sort();
        assert_eq!(tags, vec!["nestplane-e2e".to_string(), tag.clone()]);

        let found = os.list_servers_by_tag(&tag).await?;
        assert_eq!(
            found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec![created.id.as_str()]
        );
        assert_eq!(
            os.get_user_data(&created.id).await?.as_deref(),
            Some(&user_data[..])
        );

        os.delete_server(&created.id).await?;
        os.delete_server(&created.id)
            .await
            .context("a second delete is not an error")?;
        wait_gone(&os, &created.id, Duration::from_secs(120)).await?;
        assert!(os.list_servers_by_tag(&tag).await?.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn server_on_the_libvirt_host_runs_in_qemu() -> Result<()> {
    let os = client("nestplane")?;
    let tag = unique("np-e2e-qemu");
    with_cleanup(&os, &tag, async {
        let spec = spec(
            &os,
            &unique("qemu"),
            QEMU_ZONE,
            vec![tag.clone()],
            b"#cloud-config\n",
        )
        .await?;
        let created = os.create_server(&spec).await?;
        wait_active(&os, &created.id, Duration::from_secs(240)).await?;
        // libvirt starts QEMU with `-uuid <server id>`.
        ensure!(
            qemu_running(&created.id)?,
            "no qemu-system process for server {}",
            created.id
        );
        os.delete_server(&created.id).await?;
        wait_gone(&os, &created.id, Duration::from_secs(120)).await?;
        ensure!(
            !qemu_running(&created.id)?,
            "qemu for server {} outlived its deletion",
            created.id
        );
        Ok(())
    })
    .await
}

fn qemu_running(server_id: &str) -> Result<bool> {
    for entry in std::fs::read_dir("/proc")? {
        let Ok(cmdline) = std::fs::read(entry?.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"qemu-system-x86_64"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-uuid" && w[1] == server_id.as_bytes())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[tokio::test]
async fn quota_exceeded_is_a_clear_permanent_error() -> Result<()> {
    // The nestplane-quota project allows two servers. Nova checks the quota in the API against
    // servers already in a cell, so two creates in quick succession can both pass it and then both
    // fail Nova's second check in the conductor (ERROR, fault 413). Waiting for each server to be
    // ACTIVE makes the third create fail in the API, with 403.
    let os = client("nestplane-quota")?;
    let tag = unique("np-e2e-quota");
    with_cleanup(&os, &tag, async {
        for i in 0..2 {
            let spec = spec(&os, &format!("quota-{i}"), FAKE_ZONE, vec![tag.clone()], b"").await?;
            let created = os.create_server(&spec).await?;
            wait_active(&os, &created.id, Duration::from_secs(120)).await?;
        }
        let spec = spec(&os, "quota-2", FAKE_ZONE, vec![tag.clone()], b"").await?;
        let Err(error) = os.create_server(&spec).await else {
            bail!("a third server was accepted beyond a quota of two");
        };
        let message = error.to_string();
        ensure!(error.status() == Some(403), "expected 403: {message}");
        ensure!(!error.is_transient(), "quota errors are not retried: {message}");
        ensure!(
            message.contains("OpenStack create server") && message.contains("Quota exceeded"),
            "{message}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn security_groups_are_asked_for_by_name_and_an_unknown_one_is_refused() -> Result<()> {
    let os = client("nestplane")?;
    let tag = unique("np-e2e-sg");
    with_cleanup(&os, &tag, async {
        let mut spec = spec(&os, &unique("worker"), FAKE_ZONE, vec![tag.clone()], b"").await?;
        spec.security_groups = vec!["default".into()];
        let created = os.create_server(&spec).await?;
        wait_active(&os, &created.id, Duration::from_secs(120)).await?;
        os.delete_server(&created.id).await?;
        wait_gone(&os, &created.id, Duration::from_secs(120)).await?;

        spec.name = unique("worker");
        spec.security_groups = vec!["no-such-group".into()];
        let refused = os
            .create_server(&spec)
            .await
            .expect_err("a server with a security group that does not exist");
        assert!(!refused.is_transient(), "retrying cannot help: {refused}");
        assert!(
            refused.to_string().contains("no-such-group"),
            "the error names the group: {refused}"
        );
        assert!(
            os.list_servers_by_tag(&tag).await?.is_empty(),
            "a refused create left a server"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_server_group_is_made_once_holds_servers_and_is_deleted_by_name() -> Result<()> {
    let os = client("nestplane")?;
    let tag = unique("np-e2e-group");
    let outcome = with_cleanup(&os, &tag, async {
        let group = os.ensure_server_group(&tag, "soft-anti-affinity").await?;
        assert_eq!(
            os.ensure_server_group(&tag, "soft-anti-affinity").await?,
            group,
            "a second ensure finds the first group"
        );
        let mut spec = spec(&os, &unique("worker"), FAKE_ZONE, vec![tag.clone()], b"").await?;
        spec.server_group_id = Some(group.clone());
        let created = os.create_server(&spec).await?;
        wait_active(&os, &created.id, Duration::from_secs(120)).await?;
        os.delete_server(&created.id).await?;
        wait_gone(&os, &created.id, Duration::from_secs(120)).await?;

        os.delete_server_groups(&tag).await?;
        os.delete_server_groups(&tag)
            .await
            .context("deleting groups that are gone is not an error")?;
        let again = os.ensure_server_group(&tag, "soft-anti-affinity").await?;
        assert_ne!(again, group, "the first group was deleted");
        Ok(())
    })
    .await;
    os.delete_server_groups(&tag).await?;
    outcome
}
