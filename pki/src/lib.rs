//! Certificates, keys and kubeconfigs for a hosted control plane.
//!
//! Pure: no Kubernetes client, no I/O and no clock reads (callers pass `now`).
//! Every key is ECDSA P-256, which kube-apiserver, etcd, kubelets and kubeadm accept
//! (ring, behind rcgen, cannot generate RSA keys).
//!
//! Each piece can be made alone, so a controller creates only what is missing:
//! [`generate_ca`], [`issue_leaf`] with a [`profiles`] spec, [`generate_service_account_keys`];
//! [`check`] and [`check_ca`] say whether a stored piece is still good.
//! [`plan()`] is the one list of every CA, leaf and kubeconfig with its issuer and identity;
//! [`ControlPlaneBundle`] issues the whole set at once.
#![forbid(unsafe_code)]

mod bundle;
mod ca;
mod check;
mod csr;
mod kubeconfig;
mod leaf;
mod plan;
pub mod profiles;
#[cfg(test)]
mod test_support;

pub use bundle::{ControlPlaneBundle, IssuedKubeconfig, Validity};
pub use ca::{generate_ca, generate_service_account_keys};
pub use check::{
    Verdict, ca_cert_hash, check, check_ca, check_service_account_keys, fingerprint, not_after,
    public_key_fingerprint,
};
pub use csr::{CsrRequest, parse_csr};
pub use kubeconfig::{KubeconfigSpec, cluster_info_kubeconfig, kubeconfig};
pub use leaf::{LeafSpec, Usage, issue_leaf};
pub use plan::{
    CaRole, KubeconfigRole, LeafRole, Plan, PlanInput, PlannedKubeconfig, PlannedLeaf, first_service_ip, plan,
};
pub use profiles::ApiServerSans;

/// A certificate and its private key, both PEM (the key is PKCS#8, `PRIVATE KEY`).
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

/// The key pair that signs (kube-apiserver `--service-account-signing-key-file`,
/// kube-controller-manager `--service-account-private-key-file`) and verifies
/// (`--service-account-key-file`) service-account tokens. Tokens are ES256.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeys {
    /// PKCS#8 `PRIVATE KEY`.
    pub private_key_pem: String,
    /// SubjectPublicKeyInfo `PUBLIC KEY`.
    pub public_key_pem: String,
}

impl std::fmt::Debug for ServiceAccountKeys {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKeys")
            .field("public_key_pem", &self.public_key_pem)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a key pair: {0}")]
    GenerateKey(#[source] rcgen::Error),
    #[error("reading the private key of {what}: {source}")]
    ParseKey {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("reading the CA certificate to issue {leaf:?}: {source}")]
    ParseIssuer {
        leaf: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("building certificate {common_name:?}: {source}")]
    Sign {
        common_name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("certificate {common_name:?} needs a positive validity, got {validity}")]
    InvalidValidity {
        common_name: String,
        validity: time::Duration,
    },
    #[error("certificate {common_name:?} cannot be built: {reason}")]
    UnsupportedSubject {
        common_name: String,
        reason: &'static str,
    },
    #[error("the CA issuing {leaf:?} expired at {not_after}: accept a new CA")]
    IssuerExpired {
        leaf: String,
        not_after: time::OffsetDateTime,
    },
    #[error("parsing certificate PEM: {0}")]
    ParsePem(String),
    #[error("reading a certificate signing request: {0}")]
    ParseCsr(String),
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    #[error("planning the API server certificate: service CIDR {0:?} is not a CIDR")]
    InvalidServiceCidr(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
