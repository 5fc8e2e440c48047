//! nestplane: hosted Kubernetes control planes as pods, OpenStack VMs as workers.
#![forbid(unsafe_code)]

pub mod api;
pub mod builders;
pub mod controllers;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openstack;
pub mod runtime;
pub mod telemetry;
