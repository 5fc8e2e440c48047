//! Objects that support the workloads without running anything: the configuration files the
//! components mount (ConfigMaps) and the PodDisruptionBudgets. Applied on every pass, so the
//! orphan sweep removes one the spec no longer wants.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::owned::OwnedSet;
use crate::api::HostedCluster;
use crate::builders::{Component, disruption};
use crate::error::Result;

/// ConfigMap data by component, for the inputs hash.
pub type ConfigData = BTreeMap<Component, Vec<ConfigMap>>;

/// Applies every component's ConfigMaps; returns them as stored.
pub async fn apply_config_maps(hc: &HostedCluster, owned: &mut OwnedSet) -> Result<ConfigData> {
    let mut applied = ConfigData::new();
    for component in Component::ALL {
        for config_map in component.config_maps(hc)? {
            let stored = owned.apply(&config_map).await?;
            applied.entry(component).or_default().push(stored);
        }
    }
    Ok(applied)
}

/// Applies the PodDisruptionBudgets the spec wants.
pub async fn apply_disruption_budgets(hc: &HostedCluster, owned: &mut OwnedSet) -> Result<()> {
    for budget in disruption::pod_disruption_budgets(hc)? {
        owned.apply(&budget).await?;
    }
    Ok(())
}
