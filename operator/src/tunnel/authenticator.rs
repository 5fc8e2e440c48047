//! Agents authenticate with a projected service-account token, checked by a TokenReview
//! against the hosted API server: the token must be valid for the tunnel's audience, belong to
//! the agents' service account, and be bound to a pod on the node the agent claims.
//!
//! Nothing is cached: an agent authenticates once per connection (at start and after a
//! server or network interruption), so a review per connection costs little, and without a
//! cache a token whose pod or service account was deleted is refused at its next use.
use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use nestplane_tunnel::{AgentAuthenticator, AgentIdentity, AuthError};
use tracing::{Instrument, debug, info_span};

/// The key of a pod-bound token's user extra naming the pod's node (Kubernetes ≥ 1.32).
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The service account whose tokens the agents present, `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name the API server gives the account's tokens.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: namespace.into(),
                    name: name.into(),
                })
            }
            _ => Err(format!("expected namespace/name, got {s:?}")),
        }
    }
}

/// What an agent's token must show.
#[derive(Clone, Debug)]
pub struct Expected {
    pub audience: String,
    pub service_account: ServiceAccountRef,
}

/// Checks agents' tokens with TokenReviews through `client` (an identity bound to
/// `system:auth-delegator` in the hosted cluster).
pub struct TokenReviewAuthenticator {
    reviews: Api<TokenReview>,
    expected: Expected,
}

impl TokenReviewAuthenticator {
    pub fn new(client: Client, expected: Expected) -> Self {
        Self {
            reviews: Api::all(client),
            expected,
        }
    }

    async fn review(&self, token: &str, node_name: &str) -> Result<AgentIdentity, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.expected.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let reviewed = self
            .reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(review_failed)?;
        let verdict = decide(reviewed.status.as_ref(), &self.expected, node_name);
        debug!(accepted = verdict.is_ok(), "token reviewed");
        verdict
    }
}

impl AgentAuthenticator for TokenReviewAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        node_name: &'a str,
    ) -> BoxFuture<'a, Result<AgentIdentity, AuthError>> {
        let span = info_span!("token_review", node = node_name);
        Box::pin(self.review(token, node_name).instrument(span))
    }
}

/// Any failure to get a review is `Unavailable`: the agent is refused for now (fail closed)
/// and retries with backoff.
fn review_failed(error: KubeError) -> AuthError {
    match &error {
        KubeError::Api(status) if status.code == 403 => AuthError::Unavailable(format!(
            "the tunnel server may not create TokenReviews in the hosted cluster (its identity needs a \
             binding to system:auth-delegator): {}",
            status.message
        )),
        KubeError::Api(status) => AuthError::Unavailable(format!(
            "TokenReview answered {} {}: {}",
            status.code, status.reason, status.message
        )),
        _ => AuthError::Unavailable(format!("sending the TokenReview: {error}")),
    }
}

/// The verdict on a TokenReview's status for an agent claiming `node_name`. The identity is
/// `node/<node>`: one service account serves every node's agent, and the node tells them apart.
pub fn decide(
    status: Option<&TokenReviewStatus>,
    expected: &Expected,
    node_name: &str,
) -> Result<AgentIdentity, AuthError> {
    let rejected = |reason: String| Err(AuthError::Rejected(reason));
    let Some(status) = status else {
        return Err(AuthError::Unavailable(
            "the TokenReview came back without a status".into(),
        ));
    };
    if status.authenticated != Some(true) {
        let error = status.error.as_deref().unwrap_or("no reason given");
        return rejected(format!(
            "token not valid for audience {:?}: {error}",
            expected.audience
        ));
    }
    // An authenticated review with no audiences means the token is valid for the API server's
    // own audience, not ours.
    if !status.audiences.iter().flatten().any(|a| *a == expected.audience) {
        return rejected(format!("token not issued for audience {:?}", expected.audience));
    }
    let user = status.user.as_ref();
    let username = user.and_then(|u| u.username.as_deref()).unwrap_or_default();
    if username != expected.service_account.username() {
        return rejected(format!(
            "token of {username:?}, not of service account {}",
            expected.service_account
        ));
    }
    let bound_node = user
        .and_then(|u| u.extra.as_ref())
        .and_then(|extra| extra.get(NODE_NAME_EXTRA))
        .and_then(|values| values.first());
    match bound_node {
        None => rejected(format!(
            "token not bound to a pod on a node (no {NODE_NAME_EXTRA}): the agent needs a projected \
             token of its own pod"
        )),
        Some(bound) if node_name.is_empty() || bound != node_name => rejected(format!(
            "token bound to a pod on node {bound:?}, the agent claims node {node_name:?}"
        )),
        Some(bound) => Ok(AgentIdentity {
            id: format!("node/{bound}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn expected() -> Expected {
        Expected {
            audience: "nestplane-tunnel".into(),
            service_account: "kube-system/nestplane-tunnel-agent".parse().unwrap(),
        }
    }

    /// What the API server answers for a projected token of the agent pod on `node`.
    fn agent_token_on(node: &str) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["nestplane-tunnel".into()]),
            error: None,
            user: Some(UserInfo {
                username: Some("system:serviceaccount:kube-system:nestplane-tunnel-agent".into()),
                extra: Some(BTreeMap::from([
                    (NODE_NAME_EXTRA.to_string(), vec![node.to_string()]),
                    (
                        "authentication.kubernetes.io/pod-name".to_string(),
                        vec!["nestplane-tunnel-agent-x7k2p".to_string()],
                    ),
                ])),
                ..UserInfo::default()
            }),
        }
    }

    fn rejected(verdict: Result<AgentIdentity, AuthError>) -> String {
        match verdict {
            Err(AuthError::Rejected(reason)) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn the_agent_pods_token_is_accepted_for_its_own_node() {
        let verdict = decide(Some(&agent_token_on("worker-0")), &expected(), "worker-0").unwrap();
        assert_eq!(verdict.id, "node/worker-0");
    }

    #[test]
    fn a_token_bound_to_another_node_is_rejected() {
        let reason = rejected(decide(Some(&agent_token_on("worker-0")), &expected(), "worker-1"));
        assert!(
            reason.contains("\"worker-0\"") && reason.contains("\"worker-1\""),
            "{reason}"
        );
        rejected(decide(Some(&agent_token_on("worker-0")), &expected(), ""));
    }

    #[test]
    fn an_invalid_token_is_rejected_with_the_servers_reason() {
        let status = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token audiences [\"https://kubernetes.default.svc\"] is invalid".into()),
            ..TokenReviewStatus::default()
        };
        let reason = rejected(decide(Some(&status), &expected(), "worker-0"));
        assert!(reason.contains("is invalid"), "{reason}");
        rejected(decide(
            Some(&TokenReviewStatus::default()),
            &expected(),
            "worker-0",
        ));
    }

    #[test]
    fn a_token_for_the_api_servers_own_audience_is_rejected() {
        for audiences in [
            None,
            Some(vec![]),
            Some(vec!["https://kubernetes.default.svc".into()]),
        ] {
            let status = TokenReviewStatus {
                audiences,
                ..agent_token_on("worker-0")
            };
            rejected(decide(Some(&status), &expected(), "worker-0"));
        }
    }

    #[test]
    fn another_service_accounts_token_is_rejected() {
        let mut status = agent_token_on("worker-0");
        if let Some(user) = status.user.as_mut() {
            user.username = Some("system:serviceaccount:kube-system:default".into());
        }
        let reason = rejected(decide(Some(&status), &expected(), "worker-0"));
        assert!(reason.contains("kube-system:default"), "{reason}");
    }

    #[test]
    fn a_token_not_bound_to_a_pod_is_rejected() {
        let mut status = agent_token_on("worker-0");
        if let Some(user) = status.user.as_mut() {
            user.extra = None;
        }
        let reason = rejected(decide(Some(&status), &expected(), "worker-0"));
        assert!(reason.contains(NODE_NAME_EXTRA), "{reason}");
    }

    #[test]
    fn a_review_without_status_is_unavailable_not_accepted() {
        assert!(matches!(
            decide(None, &expected(), "worker-0"),
            Err(AuthError::Unavailable(_))
        ));
    }

    #[test]
    fn a_forbidden_review_names_the_missing_binding() {
        let status = kube::core::Status {
            code: 403,
            message: "tokenreviews.authentication.k8s.io is forbidden".into(),
            ..kube::core::Status::default()
        };
        match review_failed(KubeError::Api(Box::new(status))) {
            AuthError::Unavailable(message) => {
                assert!(message.contains("system:auth-delegator"), "{message}")
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[test]
    fn the_service_account_flag_is_namespace_slash_name() {
        let sa: ServiceAccountRef = "kube-system/nestplane-tunnel-agent".parse().unwrap();
        assert_eq!(
            sa.username(),
            "system:serviceaccount:kube-system:nestplane-tunnel-agent"
        );
        for bad in ["nestplane-tunnel-agent", "/a", "a/", "a/b/c"] {
            assert!(bad.parse::<ServiceAccountRef>().is_err(), "{bad}");
        }
    }
}
