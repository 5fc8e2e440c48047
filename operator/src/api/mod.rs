//! The nestplane.io/v1alpha1 API: types only, no I/O.
pub mod conditions;
mod hosted_cluster;

pub use hosted_cluster::*;
