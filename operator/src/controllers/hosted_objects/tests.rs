use k8s_openapi::api::core::v1::Secret;
use kube::api::DynamicObject;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::builders::hosted::bootstrap_token::BootstrapToken;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
}

fn token_secret(id: &str, expires: OffsetDateTime) -> Secret {
    let token = BootstrapToken {
        id: id.into(),
        secret: "0123456789abcdef".into(),
        expires,
    };
    token
        .secret("team-a", "workers")
        .expect("secret")
        .object
        .try_parse()
        .expect("Secret")
}

#[test]
fn endpoints_parse_as_status_writes_them() {
    let v4 = parse_endpoint("https://192.0.2.2:31030").expect("v4");
    assert_eq!((v4.host.as_str(), v4.port), ("192.0.2.2", 31030));
    let v6 = parse_endpoint("https://[2001:db8::2]:6443").expect("v6");
    assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::2", 6443));
    assert_eq!(v6.url(), "https://[2001:db8::2]:6443", "round trip");
    let name = parse_endpoint("https://api.example.com").expect("name");
    assert_eq!((name.host.as_str(), name.port), ("api.example.com", 443));
    assert_eq!(parse_endpoint("not a url"), None);
}

#[test]
fn the_input_follows_the_spec_and_the_running_version() {
    let mut hc = crate::builders::testing::hosted_cluster();
    hc.spec.network.service_cidr = "10.100.0.0/16".into();
    hc.status = Some(crate::api::HostedClusterStatus {
        version: Some("v1.35.3".into()),
        ..Default::default()
    });
    let endpoint = parse_endpoint("https://192.0.2.2:31030").expect("endpoint");
    let input = hosted_input(&hc, endpoint, "CA".into(), "registry.example").expect("input");
    assert_eq!(input.dns_service_ip, "10.100.0.10");
    assert_eq!(input.version, "v1.35.3", "what runs, not what is asked for yet");
    assert_eq!(input.image_registry, "registry.example");
    assert_eq!(
        input.apiserver_kubelet_client_user,
        "kube-apiserver-kubelet-client"
    );
    assert_eq!(input.cluster_name, "demo");
}

#[test]
fn a_token_is_kept_until_renew_before_its_expiry() {
    let renew = Duration::hours(8);
    let fresh = token_secret("aaaaaa", now() + Duration::hours(20));
    let older = token_secret("bbbbbb", now() + Duration::hours(10));
    let chosen = current_token(&[older.clone(), fresh], now(), renew).expect("token");
    assert_eq!(chosen.id, "aaaaaa", "the one that lasts longest");
    assert_eq!(
        current_token(std::slice::from_ref(&older), now(), renew).map(|t| t.id),
        Some("bbbbbb".into())
    );
    let due = token_secret("cccccc", now() + Duration::hours(8));
    assert_eq!(
        current_token(&[due], now(), renew),
        None,
        "renewed at the boundary"
    );
    let expired = token_secret("dddddd", now() - Duration::hours(1));
    assert_eq!(current_token(&[expired], now(), renew), None);
    let mut deleting = token_secret("eeeeee", now() + Duration::hours(20));
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
    ));
    assert_eq!(current_token(&[deleting], now(), renew), None);
}

#[test]
fn ttl_outlasts_the_renewal_window() {
    assert!(BOOTSTRAP_TOKEN_TTL > BOOTSTRAP_TOKEN_RENEW_BEFORE);
}

fn applied(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).expect("object")
}

fn kube_proxy(desired: i32, ready: i32) -> DynamicObject {
    applied(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "kube-proxy", "namespace": "kube-system" },
        "status": { "desiredNumberScheduled": desired, "numberReady": ready,
                    "currentNumberScheduled": desired, "numberMisscheduled": 0 },
    }))
}

fn coredns(available: Option<i32>) -> DynamicObject {
    let mut status = json!({});
    if let Some(available) = available {
        status["availableReplicas"] = available.into();
    }
    applied(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "coredns", "namespace": "kube-system" },
        "spec": { "replicas": 2, "selector": {}, "template": {} },
        "status": status,
    }))
}

#[test]
fn without_nodes_the_add_ons_wait_for_workers() {
    let config_map = applied(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" } }));
    let status = AddonsStatus::of(&[config_map, kube_proxy(0, 0), coredns(None)]);
    assert_eq!(status.workloads.len(), 2, "only workloads count");
    assert!(!status.is_ready());
    assert!(status.waits_for_workers());
    assert_eq!(
        status.message(),
        "DaemonSet kube-system/kube-proxy 0/0 ready, Deployment kube-system/coredns 0/2 ready"
    );
}

#[test]
fn add_ons_are_ready_when_every_node_runs_them_and_dns_answers() {
    let partly = AddonsStatus::of(&[kube_proxy(2, 1), coredns(Some(1))]);
    assert!(!partly.is_ready());
    assert!(!partly.waits_for_workers());
    assert_eq!(partly.message(), "DaemonSet kube-system/kube-proxy 1/2 ready");
    let ready = AddonsStatus::of(&[kube_proxy(2, 2), coredns(Some(1))]);
    assert!(ready.is_ready());
    assert_eq!(ready.message(), "");
}

#[test]
fn every_kind_built_is_pruned() {
    let input = crate::builders::hosted::testing::hosted_input();
    let built = build_objects(&input).expect("build");
    let kinds = pruned_kinds(&built);
    for object in &built {
        assert!(
            kinds
                .iter()
                .any(|k| k.kind == object.resource.kind && k.api_version == object.resource.api_version),
            "{} is built but never pruned",
            object.resource.kind
        );
    }
    let namespace = crate::builders::hosted::hosted_object::<k8s_openapi::api::core::v1::Namespace>(
        "Namespace",
        json!({ "metadata": { "name": "kube-flannel" } }),
    )
    .expect("namespace");
    let with_namespace = pruned_kinds(&[namespace]);
    assert!(
        with_namespace.iter().any(|k| k.kind == "Namespace"),
        "a kind a builder adds is pruned too"
    );
}
