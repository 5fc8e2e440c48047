//! The operator's error type. Each variant names the action and the object, and maps to a
//! bounded metric label.
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {kind} {name}: {source}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("building objects: {0}")]
    Build(#[from] crate::builders::BuildError),
    #[error("certificates: {0}")]
    Pki(#[from] nestplane_pki::Error),
    /// The client's error names the operation (`create server`, `find image`, ...).
    #[error("{0}")]
    OpenStack(#[from] nestplane_openstack::Error),
    #[error("Secret {name} is missing key {key}")]
    SecretKey { name: String, key: &'static str },
    #[error("no Ready node has an InternalIP address to expose NodePort {0} on")]
    NoNodeAddress(i32),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error(
        "{kind} {name} belongs to an earlier HostedCluster of the same name; waiting for the \
         garbage collector to remove it"
    )]
    PredecessorNotGone { kind: &'static str, name: String },
    #[error("generating the key for Secret {secret}: {source}")]
    GenerateKey {
        secret: String,
        #[source]
        source: getrandom::Error,
    },
    #[error("{action} etcd member {endpoint}: {source}")]
    Etcd {
        action: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{kind} {name} already exists and is not this HostedCluster's ({owner}); nestplane never \
         adopts, overwrites or deletes it: delete it if it is left over, or give the HostedCluster \
         another name"
    )]
    NotOwned {
        kind: &'static str,
        name: String,
        owner: String,
    },
    #[error(
        "the watch of {0} objects has not completed its first list; is the operator allowed to \
         list and watch them? (its log names the watch error)"
    )]
    CacheNotReady(&'static str),
    #[error("HostedCluster {name} is not available yet: {why}")]
    HostedClusterNotAvailable { name: String, why: String },
    #[error("connecting to the API of HostedCluster {cluster}: {message}")]
    HostedApi { cluster: String, message: String },
    /// `object` is the kind and name, e.g. `DaemonSet kube-system/kube-proxy`.
    #[error("{action} {object} in the hosted cluster: {source}")]
    HostedKube {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cloud Secret {namespace}/{name}: {problem}")]
    CloudSecret {
        namespace: String,
        name: String,
        problem: String,
    },
    #[error("preparing HostedCluster {cluster} for joins: {message}")]
    JoinPreparation { cluster: String, message: String },
    #[error("HostedCluster {cluster} waits until its NodePools are gone: {}", names.join(", "))]
    NodePoolsRemain { cluster: String, names: Vec<String> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Every value [`Error::metric_label`] returns, so that the failures counter starts at zero
    /// for each (a counter that appears only on the first failure has no rate before it).
    pub const METRIC_LABELS: [&'static str; 19] = [
        "Kube",
        "Build",
        "Pki",
        "OpenStack",
        "SecretKey",
        "NoNodeAddress",
        "MissingField",
        "PredecessorNotGone",
        "GenerateKey",
        "Etcd",
        "NotOwned",
        "CacheNotReady",
        "HostedClusterNotAvailable",
        "HostedApi",
        "HostedKube",
        "Finalizer",
        "CloudSecret",
        "JoinPreparation",
        "NodePoolsRemain",
    ];

    /// A bounded label for the failures metric: the variant name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "Kube",
            Error::Build(_) => "Build",
            Error::Pki(_) => "Pki",
            Error::OpenStack(_) => "OpenStack",
            Error::SecretKey { .. } => "SecretKey",
            Error::NoNodeAddress(_) => "NoNodeAddress",
            Error::MissingField(_) => "MissingField",
            Error::PredecessorNotGone { .. } => "PredecessorNotGone",
            Error::GenerateKey { .. } => "GenerateKey",
            Error::Etcd { .. } => "Etcd",
            Error::NotOwned { .. } => "NotOwned",
            Error::CacheNotReady(_) => "CacheNotReady",
            Error::HostedClusterNotAvailable { .. } => "HostedClusterNotAvailable",
            Error::HostedApi { .. } => "HostedApi",
            Error::HostedKube { .. } => "HostedKube",
            Error::CloudSecret { .. } => "CloudSecret",
            Error::JoinPreparation { .. } => "JoinPreparation",
            Error::NodePoolsRemain { .. } => "NodePoolsRemain",
            // Every reconcile error passes through the finalizer helper: label the cause.
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "Finalizer",
            },
        }
    }

    /// True when retrying soon may help (API hiccups, conflicts, a node not Ready yet); false
    /// when a person must change something (an invalid spec, a damaged Secret).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube { source, .. } | Error::HostedKube { source, .. } => match source {
                kube::Error::Api(status) => !matches!(status.code, 400 | 403 | 422),
                _ => true,
            },
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_transient(),
                _ => true,
            },
            // The client knows which answers may change (no answer, 409, 429, 5xx).
            Error::OpenStack(e) => e.is_transient(),
            // The system's random source may come back; etcd may answer again.
            Error::NoNodeAddress(_)
            | Error::PredecessorNotGone { .. }
            | Error::GenerateKey { .. }
            | Error::Etcd { .. }
            | Error::CacheNotReady(_)
            // The control plane is coming up, or its API answers again soon.
            | Error::HostedClusterNotAvailable { .. }
            | Error::HostedApi { .. }
            | Error::JoinPreparation { .. }
            | Error::NodePoolsRemain { .. } => true,
            Error::Build(_) | Error::Pki(_) | Error::SecretKey { .. } | Error::MissingField(_) => false,
            Error::NotOwned { .. } | Error::CloudSecret { .. } => false,
        }
    }

    /// The `Available` condition's reason when this error fails a pass, if more specific than
    /// `ReconcileError`.
    pub fn condition_reason(&self) -> Option<&'static str> {
        match self {
            Error::NotOwned { .. } => Some(crate::api::conditions::REASON_OBJECT_NOT_OWNED),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.condition_reason(),
                _ => None,
            },
            _ => None,
        }
    }

    /// How long to wait before retrying: soon for what may pass, longer for what needs a person.
    pub fn retry_after(&self) -> Duration {
        if self.is_transient() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(60)
        }
    }
}

/// Adds the action and object to a kube error.
pub(crate) trait KubeContext<T> {
    fn context(self, action: &'static str, kind: &'static str, name: &str) -> Result<T>;
}

impl<T> KubeContext<T> for std::result::Result<T, kube::Error> {
    fn context(self, action: &'static str, kind: &'static str, name: &str) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action,
            kind,
            name: name.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Error {
        let status = kube::core::Status::failure("boom", "Reason").with_code(code);
        Error::Kube {
            action: "apply",
            kind: "Secret",
            name: "demo-ca".into(),
            source: kube::Error::Api(Box::new(status)),
        }
    }

    #[test]
    fn labels_are_variant_names_never_messages() {
        assert_eq!(api_error(500).metric_label(), "Kube");
        assert_eq!(Error::MissingField("metadata.uid").metric_label(), "MissingField");
        assert_eq!(Error::NoNodeAddress(31000).metric_label(), "NoNodeAddress");
        let nested = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::MissingField("metadata.uid"),
        )));
        assert_eq!(
            nested.metric_label(),
            "MissingField",
            "the cause, not the wrapper"
        );
        let unnamed = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject));
        assert_eq!(unnamed.metric_label(), "Finalizer");
    }

    #[test]
    fn messages_name_the_action_and_the_object() {
        assert!(api_error(500).to_string().starts_with("apply Secret demo-ca: "));
    }

    #[test]
    fn not_owned_names_the_object_its_owner_and_the_way_out() {
        let error = Error::NotOwned {
            kind: "Secret",
            name: "demo-etcd-ca".into(),
            owner: "no controller ownerReference".into(),
        };
        let message = error.to_string();
        for part in [
            "Secret demo-etcd-ca",
            "no controller ownerReference",
            "delete it",
            "another name",
        ] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
        assert_eq!(error.metric_label(), "NotOwned");
        assert!(Error::METRIC_LABELS.contains(&error.metric_label()));
        assert!(!error.is_transient(), "a person must act");
        assert_eq!(error.condition_reason(), Some("ObjectNotOwned"));
        assert_eq!(api_error(500).condition_reason(), None);
    }

    fn openstack_error(status: u16) -> Error {
        Error::from(nestplane_openstack::Error::OpenStack {
            op: "create server",
            source: nestplane_openstack::Failure::Status {
                method: "POST".into(),
                url: "https://nova.example/v2.1/servers".into(),
                status,
                message: "boom".into(),
                request_id: None,
            },
        })
    }

    #[test]
    fn openstack_errors_retry_as_the_client_says() {
        assert_eq!(openstack_error(503).metric_label(), "OpenStack");
        assert!(Error::METRIC_LABELS.contains(&"OpenStack"));
        assert!(
            openstack_error(503)
                .to_string()
                .starts_with("OpenStack create server: POST https://nova.example"),
            "{}",
            openstack_error(503)
        );
        assert!(openstack_error(503).is_transient(), "Nova may answer again");
        assert!(!openstack_error(403).is_transient(), "a quota needs a person");
        assert_eq!(openstack_error(403).retry_after(), Duration::from_secs(60));
        let config = Error::from(nestplane_openstack::Error::Config("no cloud".into()));
        assert!(!config.is_transient());
    }

    #[test]
    fn forbidden_and_invalid_wait_for_a_person_the_rest_retries_soon() {
        assert!(api_error(500).is_transient());
        assert!(api_error(409).is_transient());
        assert!(!api_error(403).is_transient());
        assert!(!api_error(422).is_transient());
        assert!(!Error::MissingField("metadata.namespace").is_transient());
        let nested = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(api_error(
            422,
        ))));
        assert_eq!(nested.retry_after(), Duration::from_secs(60));
    }
}
