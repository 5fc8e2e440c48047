//! OpenStack compute for worker nodes: the [`Compute`] trait with plain request and response types.
//!
//! [`client::Client`] implements it against a real cloud (Keystone, Nova, Glance, Neutron over
//! HTTP); with the `fake` feature, `fake::Cloud` implements it in memory for unit tests.
//! Nothing here knows about Kubernetes: the crate has no kube dependency.
#![forbid(unsafe_code)]

pub mod client;
#[cfg(any(test, feature = "fake"))]
pub mod fake;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

pub use client::{Client, CloudConfig};

/// The Nova microversion every compute request pins: tags on create and in `GET /servers?tags=`
/// (2.26, 2.52), `OS-EXT-SRV-ATTR:user_data` in server show (2.3, subject to the cloud's policy)
/// `hostname` (2.90), and `volume_type` in a block device mapping (2.67). Supported by every Nova since Xena (2021.2).
pub const COMPUTE_MICROVERSION: &str = "2.90";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to create. Flavor, image and network are IDs: resolve names with the `find_*` methods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub flavor_id: String,
    pub image_id: String,
    pub network_ids: Vec<String>,
    /// Ports made beforehand with [`Compute::create_port`], attached after `network_ids`.
    pub port_ids: Vec<String>,
    /// Raw user-data (cloud-init); the client base64-encodes it. Nova allows 64 KiB encoded.
    pub user_data: Vec<u8>,
    /// Server tags, e.g. the owning NodePool's UID. Nova allows 50 tags of 60 characters.
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
    /// Security groups (name or ID) of every port; the project's `default` when empty.
    pub security_groups: Vec<String>,
    /// The server group to schedule into (its policy spreads the servers), by ID.
    pub server_group_id: Option<String>,
    /// Boot from a Cinder volume that Nova makes from the image, instead of the flavor's disk.
    pub root_volume: Option<RootVolumeSpec>,
}

/// A root volume: Nova asks Cinder for it while it builds the server (block device mapping
/// image → volume) and deletes it with the server, so it never outlives its server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootVolumeSpec {
    pub size_gib: u32,
    /// The Cinder volume type (name or ID); the cloud's default when `None`.
    pub volume_type: Option<String>,
}

/// A server as Nova reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Fixed IPs by network name.
    pub addresses: BTreeMap<String, Vec<String>>,
    pub availability_zone: Option<String>,
    /// Nova's fault message for a server in ERROR.
    pub fault: Option<String>,
    /// The Cinder volumes attached to it (its root volume among them).
    pub volume_ids: Vec<String>,
    /// When Nova created it, as Nova writes it (ISO 8601, e.g. `2026-01-01T00:00:00Z`); kept as
    /// text because this crate has no time library and callers parse it with theirs.
    pub created: Option<String>,
}

impl Server {
    /// What a create answers: the server as asked for, building, with no address yet.
    pub fn building(id: String, spec: &ServerSpec) -> Server {
        Server {
            id,
            name: spec.name.clone(),
            status: ServerStatus::Build,
            tags: spec.tags.clone(),
            metadata: spec.metadata.clone(),
            addresses: BTreeMap::new(),
            availability_zone: spec.availability_zone.clone(),
            fault: None,
            volume_ids: Vec::new(),
            // A create's answer does not carry it; the next show does.
            created: None,
        }
    }

    /// Every fixed IP, in network-name order.
    pub fn fixed_ips(&self) -> Vec<String> {
        self.addresses.values().flatten().cloned().collect()
    }
}

/// A Neutron port to create. Network, subnets and security groups are IDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub network_id: String,
    /// Addresses to take; empty lets Neutron pick one from any subnet of the network.
    pub fixed_ips: Vec<FixedIp>,
    /// Security groups of the port; the project's `default` when empty.
    pub security_group_ids: Vec<String>,
    /// Port tags, set right after the create (Neutron's `standard-attr-tag`).
    pub tags: Vec<String>,
}

/// An address of a port: from this subnet, and this exact address when given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: Option<String>,
}

/// A port as Neutron reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub fixed_ips: Vec<FixedIp>,
    /// The server it is attached to, if any.
    pub device_id: Option<String>,
    pub tags: Vec<String>,
}

impl Port {
    /// What a create answers when Neutron's body is not read back: the port as asked for.
    pub fn requested(id: String, spec: &PortSpec) -> Port {
        Port {
            id,
            name: spec.name.clone(),
            network_id: spec.network_id.clone(),
            fixed_ips: spec.fixed_ips.clone(),
            device_id: None,
            tags: spec.tags.clone(),
        }
    }
}

/// Nova's server status, with the states a controller acts on named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    Build,
    Active,
    Error,
    ShutOff,
    Deleted,
    Other(String),
}

impl ServerStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "BUILD" => Self::Build,
            "ACTIVE" => Self::Active,
            "ERROR" => Self::Error,
            "SHUTOFF" => Self::ShutOff,
            "DELETED" | "SOFT_DELETED" => Self::Deleted,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Build => f.write_str("BUILD"),
            Self::Active => f.write_str("ACTIVE"),
            Self::Error => f.write_str("ERROR"),
            Self::ShutOff => f.write_str("SHUTOFF"),
            Self::Deleted => f.write_str("DELETED"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// Compute operations nestplane needs for NodePool workers.
///
/// Object-safe so that the controller can hold an `Arc<dyn Compute>`.
pub trait Compute: Send + Sync {
    /// Creates a server; returns it as Nova first reports it (usually BUILD).
    fn create_server<'a>(&'a self, spec: &'a ServerSpec) -> BoxFuture<'a, Result<Server>>;
    /// The server with this ID, or `None` once it is gone.
    fn get_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>>;
    /// Every server of the project that carries `tag`.
    fn list_servers_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Server>>>;
    /// Requests deletion; a server that is already gone is not an error.
    fn delete_server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// The user-data the server was created with, or `None` if it had none. Needs a cloud policy
    /// that shows `OS-EXT-SRV-ATTR:user_data` to the caller (admin only upstream).
    fn get_user_data<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
    /// Flavor ID for a name or ID.
    fn find_flavor<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>>;
    /// Image ID for a name or ID (Glance).
    fn find_image<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>>;
    /// Network ID for a name or ID (Neutron).
    fn find_network<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>>;
    /// The ID of the server group named `name`, created with `policy` (`anti-affinity`,
    /// `soft-anti-affinity`) when there is none.
    fn ensure_server_group<'a>(&'a self, name: &'a str, policy: &'a str) -> BoxFuture<'a, Result<String>>;
    /// Deletes every server group named `name`; none is not an error.
    fn delete_server_groups<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Subnet ID for a name or ID (Neutron), on the network with ID `network_id`.
    fn find_subnet<'a>(&'a self, network_id: &'a str, name_or_id: &'a str) -> BoxFuture<'a, Result<String>>;
    /// Security group ID for a name or ID (Neutron).
    fn find_security_group<'a>(&'a self, name_or_id: &'a str) -> BoxFuture<'a, Result<String>>;
    /// Creates a port tagged `spec.tags`, or returns the one already named `spec.name` on that
    /// network (made by a create whose answer was lost), tagged.
    fn create_port<'a>(&'a self, spec: &'a PortSpec) -> BoxFuture<'a, Result<Port>>;
    /// Every port of the project that carries `tag`.
    fn list_ports_by_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Vec<Port>>>;
    /// Deletes a port; one that is already gone is not an error.
    fn delete_port<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Every failure carries the operation it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("OpenStack {op}: {source}")]
    OpenStack {
        op: &'static str,
        #[source]
        source: Failure,
    },
    #[error("cloud configuration: {0}")]
    Config(String),
}

/// What went wrong in one operation.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No HTTP response: connection refused or reset, timeout, broken body.
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        timeout: bool,
    },
    /// The service answered with an error status.
    #[error("{method} {url} returned {status}: {message}")]
    Status {
        method: String,
        url: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// The service answered 2xx with something we could not read.
    #[error("unexpected response from {url}: {message}")]
    Decode { url: String, message: String },
    #[error("no {service} endpoint (interface {interface}, region {region}) in the service catalog")]
    NoEndpoint {
        service: String,
        interface: String,
        region: String,
    },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} is ambiguous: {count} matches")]
    Ambiguous {
        kind: &'static str,
        name: String,
        count: usize,
    },
}

impl Error {
    pub(crate) fn op(op: &'static str, source: Failure) -> Self {
        Self::OpenStack { op, source }
    }

    /// The underlying failure, if this came from a request.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Self::OpenStack { source, .. } => Some(source),
            Self::Config(_) => None,
        }
    }

    /// The HTTP status the service answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self.failure() {
            Some(Failure::Status { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying with backoff: no answer, a timeout, 409 (the server is busy with another task),
    /// 429, or a 5xx. Quota errors (403) and bad requests (400) are not.
    pub fn is_transient(&self) -> bool {
        match self.failure() {
            Some(Failure::Transport { .. }) => true,
            Some(Failure::Status { status, .. }) => matches!(status, 409 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// The one ID among the objects named `name_or_id` (a flavor, image or network looked up by
/// name): none is `NotFound`, several are `Ambiguous`, as Nova would not pick one either.
pub(crate) fn the_one_named<S: AsRef<str>>(
    op: &'static str,
    kind: &'static str,
    name_or_id: &str,
    ids: &[S],
) -> Result<String> {
    match ids {
        [id] => Ok(id.as_ref().to_string()),
        [] => Err(Error::op(
            op,
            Failure::NotFound {
                kind,
                name: name_or_id.to_string(),
            },
        )),
        many => Err(Error::op(
            op,
            Failure::Ambiguous {
                kind,
                name: name_or_id.to_string(),
                count: many.len(),
            },
        )),
    }
}
