//! The pod network (flannel) inside a hosted cluster.
use super::{HostedInput, HostedObject};
use crate::builders::BuildError;

// replaced by the CNI builder
pub fn objects(_input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    Ok(Vec::new())
}
