//! nestplane: hosted Kubernetes control planes as pods, OpenStack VMs as workers.
#![forbid(unsafe_code)]

pub mod builders;
pub mod controllers;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod runtime;
pub mod telemetry;
pub mod tunnel;

// The API types and the OpenStack client live in their own crates (so Cargo keeps them free of
// the operator's runtime); re-exported under their old paths so `crate::api::...` still names them.
pub use nestplane_api as api;
pub use nestplane_openstack as openstack;
