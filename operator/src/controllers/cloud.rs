//! A NodePool's cloud: its `clouds.yaml` Secret turned into an `Arc<dyn Compute>`, kept per
//! (namespace, Secret, cloud) while the Secret's content stays the same, so that passes share
//! one Keystone token. And what an OpenStack failure means for the user, as a condition reason.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use nestplane_openstack::{Client, CloudConfig, Compute, Failure};
use sha2::{Digest, Sha256};

use crate::api::NodePool;
use crate::api::conditions as reasons;
use crate::error::{Error, KubeContext, Result};

type Key = (String, String, String);
/// A client and the digest of the Secret key it was built from.
type Entry = ([u8; 32], Arc<dyn Compute>);

/// The clients built from cloud Secrets, by (namespace, Secret name, cloud name), each with the
/// digest of the Secret key it was built from.
#[derive(Default)]
pub struct Clouds {
    clients: Mutex<HashMap<Key, Entry>>,
    /// Where OpenStack requests are counted; none in tests that do not look.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Clouds {
    /// Clients whose requests are counted in `metrics` (`nestplane_openstack_requests_total`).
    pub fn metered(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Clouds {
            clients: Mutex::default(),
            metrics: Some(metrics),
        }
    }

    /// The compute client of `pool`'s cloud, built anew only when its Secret changed.
    pub async fn compute(&self, client: &kube::Client, pool: &NodePool) -> Result<Arc<dyn Compute>> {
        let namespace = pool
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let reference = &pool.spec.openstack.cloud_secret_ref;
        let cloud = &pool.spec.openstack.cloud;
        let problem = |problem: String| Error::CloudSecret {
            namespace: namespace.clone(),
            name: reference.name.clone(),
            problem,
        };
        let key = (namespace.clone(), reference.name.clone(), cloud.clone());
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get_opt(&reference.name)
            .await
            .context("get", "Secret", &reference.name)?;
        let Some(secret) = secret else {
            // A pool being deleted (e.g. with its namespace, whose Secrets go first) still
            // deletes its servers with the client this process built from the Secret before.
            if pool.metadata.deletion_timestamp.is_some()
                && let Some((_, compute)) = self.lock().get(&key)
            {
                return Ok(compute.clone());
            }
            return Err(problem("not found: create it with a clouds.yaml".into()));
        };
        let text = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .ok_or_else(|| problem(format!("has no key {:?}", reference.key)))?;
        let digest: [u8; 32] = Sha256::digest(&text.0).into();
        if let Some((cached, compute)) = self.lock().get(&key)
            && *cached == digest
        {
            return Ok(compute.clone());
        }
        let text = std::str::from_utf8(&text.0).map_err(|_| problem("clouds.yaml is not UTF-8".into()))?;
        let config = CloudConfig::from_yaml(text, cloud).map_err(|e| problem(e.to_string()))?;
        let compute = self.build(config).map_err(|e| problem(e.to_string()))?;
        self.lock().insert(key, (digest, compute.clone()));
        Ok(compute)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one place where a cloud's `Compute` is made.
impl Clouds {
    fn build(
        &self,
        config: CloudConfig,
    ) -> std::result::Result<Arc<dyn Compute>, nestplane_openstack::Error> {
        let client: Arc<dyn Compute> = Arc::new(Client::new(config)?);
        Ok(match &self.metrics {
            Some(metrics) => Arc::new(super::metered_compute::MeteredCompute::new(
                client,
                metrics.clone(),
            )),
            None => client,
        })
    }
}

/// The condition reason for an error of a pass that creates a server.
pub fn reason(error: &Error) -> &'static str {
    match error {
        Error::CloudSecret { .. } => reasons::REASON_CLOUD_SECRET_INVALID,
        Error::OpenStack(e) => openstack_reason(e),
        Error::JoinPreparation { .. } => reasons::REASON_JOIN_PREPARATION_FAILED,
        _ => reasons::REASON_CLOUD_REQUEST_FAILED,
    }
}

/// What an OpenStack failure means for the user.
pub fn openstack_reason(error: &nestplane_openstack::Error) -> &'static str {
    match error.failure() {
        Some(Failure::NotFound { kind, .. }) => match *kind {
            "flavor" => reasons::REASON_FLAVOR_NOT_FOUND,
            "image" => reasons::REASON_IMAGE_NOT_FOUND,
            // A subnet or security group of `ports` is part of the network the user named.
            "network" | "subnet" | "security group" => reasons::REASON_NETWORK_NOT_FOUND,
            _ => reasons::REASON_CLOUD_REQUEST_FAILED,
        },
        Some(Failure::Status {
            status: 400, message, ..
        }) if message.starts_with("Volume type ") && message.contains("could not be found") => {
            reasons::REASON_VOLUME_TYPE_NOT_FOUND
        }
        Some(Failure::Status { status: 401, .. }) => reasons::REASON_AUTHENTICATION_FAILED,
        Some(Failure::Status { status: 413, .. }) => reasons::REASON_QUOTA_EXCEEDED,
        Some(Failure::Status {
            status: 403, message, ..
        }) if message.to_ascii_lowercase().contains("quota exceeded") => reasons::REASON_QUOTA_EXCEEDED,
        Some(Failure::Transport { .. } | Failure::NoEndpoint { .. }) => reasons::REASON_CLOUD_UNREACHABLE,
        Some(Failure::Status { status, .. }) if *status >= 500 => reasons::REASON_CLOUD_UNREACHABLE,
        _ => reasons::REASON_CLOUD_REQUEST_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, message: &str) -> nestplane_openstack::Error {
        nestplane_openstack::Error::OpenStack {
            op: "create server",
            source: Failure::Status {
                method: "POST".into(),
                url: "http://nova/servers".into(),
                status,
                message: message.into(),
                request_id: None,
            },
        }
    }

    #[test]
    fn failures_become_the_reasons_a_user_acts_on() {
        let quota = status(
            403,
            "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances",
        );
        assert_eq!(openstack_reason(&quota), "QuotaExceeded");
        assert_eq!(openstack_reason(&status(413, "over limit")), "QuotaExceeded");
        assert_eq!(
            openstack_reason(&status(403, "Policy doesn't allow os_compute_api:servers:create")),
            "CloudRequestFailed",
            "a 403 that is not about quota is not called one"
        );
        assert_eq!(
            openstack_reason(&status(401, "The request you have made requires authentication.")),
            "AuthenticationFailed"
        );
        assert_eq!(openstack_reason(&status(503, "unavailable")), "CloudUnreachable");
        assert_eq!(
            openstack_reason(&status(400, "Volume type fast could not be found.")),
            "VolumeTypeNotFound"
        );
        assert_eq!(
            openstack_reason(&status(400, "Invalid input for field/attribute volume_size.")),
            "CloudRequestFailed"
        );
        let transport = nestplane_openstack::Error::OpenStack {
            op: "list servers by tag",
            source: Failure::Transport {
                method: "GET".into(),
                url: "http://nova/servers".into(),
                message: "connection refused".into(),
                timeout: false,
            },
        };
        assert_eq!(openstack_reason(&transport), "CloudUnreachable");
        for (kind, expected) in [
            ("flavor", "FlavorNotFound"),
            ("image", "ImageNotFound"),
            ("network", "NetworkNotFound"),
        ] {
            let missing = nestplane_openstack::Error::OpenStack {
                op: "find",
                source: Failure::NotFound {
                    kind,
                    name: "x".into(),
                },
            };
            assert_eq!(openstack_reason(&missing), expected);
        }
        let secret = Error::CloudSecret {
            namespace: "team-a".into(),
            name: "cloud".into(),
            problem: "not found".into(),
        };
        assert_eq!(reason(&secret), "CloudSecretInvalid");
        assert!(secret.to_string().contains("team-a/cloud"));
    }
}
