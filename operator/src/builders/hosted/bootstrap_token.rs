//! A NodePool's bootstrap token: the Secret the hosted API server authenticates joining
//! kubelets with, in kubeadm's format (`kube-system/bootstrap-token-<id>`, type
//! `bootstrap.kubernetes.io/token`), which the bootstrap signer signs `cluster-info` with.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use rand::RngExt;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::join::{BOOTSTRAPPERS_GROUP, KUBE_SYSTEM};
use super::{HostedObject, hosted_meta, hosted_object};
use crate::builders::BuildError;

/// A label value cannot hold `<namespace>/<name>`: the pool is named by two labels.
pub const NODE_POOL_LABEL: &str = "nestplane.io/node-pool";
pub const NODE_POOL_NAMESPACE_LABEL: &str = "nestplane.io/node-pool-namespace";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";

/// kubeadm's token alphabet: `[a-z0-9]{6}.[a-z0-9]{16}`.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LENGTH: usize = 6;
const SECRET_LENGTH: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
    /// Whole seconds: the Secret stores RFC 3339 without fractions.
    pub expires: OffsetDateTime,
}

impl std::fmt::Debug for BootstrapToken {
    // Never print the secret half: with the id it lets anyone join a node.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl BootstrapToken {
    /// A new token expiring `ttl` after `now`, drawn uniformly from kubeadm's alphabet. The
    /// caller brings the randomness (a CSPRNG in the controller, a seeded one in tests).
    pub fn generate(rng: &mut impl rand::Rng, now: OffsetDateTime, ttl: Duration) -> BootstrapToken {
        let mut draw = |length: usize| -> String {
            (0..length)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = draw(ID_LENGTH);
        let secret = draw(SECRET_LENGTH);
        let expires = (now + ttl).replace_nanosecond(0).unwrap_or(now + ttl);
        BootstrapToken { id, secret, expires }
    }

    /// What `kubeadm join --token` takes: `<id>.<secret>`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// The token Secret in `kube-system`, labelled with the NodePool `namespace/node_pool` it
    /// serves.
    pub fn secret(&self, namespace: &str, node_pool: &str) -> Result<HostedObject, BuildError> {
        let expiration = Timestamp::from_second(self.expires.unix_timestamp())
            .map_err(|e| BuildError::Invalid {
                what: "bootstrap token expiration",
                message: e.to_string(),
            })?
            .to_string();
        let mut meta = hosted_meta(&self.secret_name(), Some(KUBE_SYSTEM));
        meta["labels"][NODE_POOL_NAMESPACE_LABEL] = namespace.into();
        meta["labels"][NODE_POOL_LABEL] = node_pool.into();
        let data: BTreeMap<&str, ByteString> = [
            ("token-id", self.id.as_str()),
            ("token-secret", self.secret.as_str()),
            ("expiration", expiration.as_str()),
            ("usage-bootstrap-authentication", "true"),
            ("usage-bootstrap-signing", "true"),
            ("auth-extra-groups", BOOTSTRAPPERS_GROUP),
            (
                "description",
                &format!("nestplane: joins the workers of NodePool {namespace}/{node_pool}"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.as_bytes().to_vec())))
        .collect();
        hosted_object::<Secret>(
            "bootstrap token Secret",
            json!({ "metadata": meta, "type": SECRET_TYPE, "data": data }),
        )
    }

    /// The token a Secret holds, if it is a well-formed bootstrap token with an expiration.
    pub fn from_secret(secret: &Secret) -> Option<BootstrapToken> {
        if secret.type_.as_deref() != Some(SECRET_TYPE) {
            return None;
        }
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        let id = text("token-id")?;
        let token_secret = text("token-secret")?;
        let valid = |s: &str, length: usize| s.len() == length && s.bytes().all(|b| ALPHABET.contains(&b));
        if !valid(&id, ID_LENGTH) || !valid(&token_secret, SECRET_LENGTH) {
            return None;
        }
        let expires = text("expiration")?.parse::<Timestamp>().ok()?;
        Some(BootstrapToken {
            id,
            secret: token_secret,
            expires: OffsetDateTime::from_unix_timestamp(expires.as_second()).ok()?,
        })
    }
}

/// Selects the token Secrets of one NodePool.
pub fn node_pool_selector(namespace: &str, node_pool: &str) -> String {
    format!("{NODE_POOL_NAMESPACE_LABEL}={namespace},{NODE_POOL_LABEL}={node_pool}")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::builders::testing::assert_golden;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
    }

    fn token(seed: u64) -> BootstrapToken {
        BootstrapToken::generate(&mut StdRng::seed_from_u64(seed), now(), Duration::hours(24))
    }

    #[test]
    fn tokens_have_kubeadms_format() {
        for seed in 0..200 {
            let token = token(seed).token();
            let (id, secret) = token.split_once('.').expect("dot");
            assert_eq!((id.len(), secret.len()), (6, 16), "{token}");
            assert!(
                token
                    .bytes()
                    .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{token}"
            );
        }
    }

    #[test]
    fn tokens_differ_and_use_the_whole_alphabet() {
        let tokens: Vec<String> = (0..200).map(|seed| token(seed).token()).collect();
        let distinct: std::collections::BTreeSet<_> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        let used: std::collections::BTreeSet<u8> = tokens.iter().flat_map(|t| t.bytes()).collect();
        assert!(ALPHABET.iter().all(|b| used.contains(b)), "{used:?}");
    }

    #[test]
    fn secret_matches_golden_and_reads_back() {
        let token = BootstrapToken {
            id: "abcdef".into(),
            secret: "0123456789abcdef".into(),
            expires: now() + Duration::hours(24),
        };
        let object = token.secret("team-a", "workers").expect("secret");
        assert_golden("hosted-bootstrap-token", &object.object);
        let secret: Secret = object.object.clone().try_parse().expect("Secret");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some(token.secret_name().as_str())
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
        let data = secret.data.clone().expect("data");
        let text = |k: &str| String::from_utf8(data[k].0.clone()).expect("utf-8");
        assert_eq!(text("expiration"), "2027-01-16T08:00:00Z");
        assert_eq!(text("usage-bootstrap-authentication"), "true");
        assert_eq!(text("usage-bootstrap-signing"), "true");
        assert_eq!(text("auth-extra-groups"), BOOTSTRAPPERS_GROUP);
        assert_eq!(BootstrapToken::from_secret(&secret), Some(token));
    }

    #[test]
    fn the_pool_is_named_by_labels_its_selector_matches() {
        let object = token(1).secret("team-a", "workers").expect("secret");
        let labels = object.object.metadata.labels.clone().expect("labels");
        for requirement in node_pool_selector("team-a", "workers").split(',') {
            let (key, value) = requirement.split_once('=').expect("key=value");
            assert_eq!(labels.get(key).map(String::as_str), Some(value));
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "nestplane");
    }

    #[test]
    fn malformed_secrets_are_not_tokens() {
        let good: Secret = token(2)
            .secret("team-a", "workers")
            .expect("secret")
            .object
            .try_parse()
            .expect("Secret");
        let mut wrong_type = good.clone();
        wrong_type.type_ = Some("Opaque".into());
        assert_eq!(BootstrapToken::from_secret(&wrong_type), None);
        let mut short_id = good.clone();
        short_id
            .data
            .as_mut()
            .expect("data")
            .insert("token-id".into(), ByteString(b"abc".to_vec()));
        assert_eq!(BootstrapToken::from_secret(&short_id), None);
        let mut no_expiry = good;
        no_expiry.data.as_mut().expect("data").remove("expiration");
        assert_eq!(BootstrapToken::from_secret(&no_expiry), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = token(3);
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
