//! Certificates, keys and kubeconfigs for a hosted control plane.
//!
//! Pure: no Kubernetes client, no I/O and no clock reads (callers pass `now`).
//! Every key is ECDSA P-256, which kube-apiserver, etcd, kubelets and kubeadm accept.
#![forbid(unsafe_code)]

mod ca;
mod check;
mod kubeconfig;
mod leaf;
pub mod profiles;

pub use ca::{generate_ca, generate_service_account_keys};
pub use check::{Verdict, ca_cert_hash, check, check_ca, not_after};
pub use kubeconfig::{KubeconfigSpec, cluster_info_kubeconfig, kubeconfig};
pub use leaf::{LeafSpec, Usage, issue_leaf};
pub use profiles::ApiServerSans;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPair {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The key pair that signs and verifies service-account tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeys {
    pub private_key_pem: String,
    pub public_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a key pair: {0}")]
    GenerateKey(#[source] rcgen::Error),
    #[error("reading the private key of {what}: {source}")]
    ParseKey { what: String, source: rcgen::Error },
    #[error("building certificate {common_name}: {source}")]
    Sign {
        common_name: String,
        source: rcgen::Error,
    },
    #[error("parsing certificate PEM: {0}")]
    ParsePem(String),
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
