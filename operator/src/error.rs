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
    #[error("Secret {name} is missing key {key}")]
    SecretKey { name: String, key: &'static str },
    #[error("no Ready node has an InternalIP address to expose NodePort {0} on")]
    NoNodeAddress(i32),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bounded label for the failures metric: the variant name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "Kube",
            Error::Build(_) => "Build",
            Error::Pki(_) => "Pki",
            Error::SecretKey { .. } => "SecretKey",
            Error::NoNodeAddress(_) => "NoNodeAddress",
            Error::MissingField(_) => "MissingField",
            Error::Finalizer(_) => "Finalizer",
        }
    }

    /// How long to wait before retrying: soon for API hiccups, longer for what needs a person.
    pub fn retry_after(&self) -> Duration {
        match self {
            Error::Kube { .. } | Error::Finalizer(_) | Error::NoNodeAddress(_) => Duration::from_secs(5),
            _ => Duration::from_secs(60),
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
