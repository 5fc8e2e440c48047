//! The add-ons every worker needs: kube-proxy and CoreDNS, as kubeadm's addon phase
//! (`cmd/kubeadm/app/phases/addons/{proxy,dns}` of v1.35) creates them, except that
//! kube-proxy reaches the API at the hosted cluster's external endpoint: a worker cannot reach
//! the `kubernetes` Service IP before kube-proxy has programmed it.
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::{Value, json};

use super::join::{
    BOOTSTRAPPERS_GROUP, KUBE_SYSTEM, cluster_role_binding, config_map, config_map_reader, group_subject,
    yaml,
};
use super::{HostedInput, HostedObject, hosted_meta, hosted_object};
use crate::builders::BuildError;

/// CoreDNS as the management cluster runs it (`COREDNS_VERSION` in hack/versions.env; a test
/// keeps the two equal).
pub const COREDNS_VERSION: &str = "v1.14.7";

pub const KUBE_PROXY: &str = "kube-proxy";
pub const COREDNS: &str = "coredns";
pub const KUBE_DNS_SERVICE: &str = "kube-dns";
const KUBE_PROXY_CONFIG_KEY: &str = "config.conf";
const KUBE_PROXY_KUBECONFIG_KEY: &str = "kubeconfig.conf";
const KUBE_PROXY_CONFIG_DIR: &str = "/var/lib/kube-proxy";
const COREDNS_ROLE: &str = "system:coredns";
/// The service-account files every pod gets: the token and the cluster CA.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn objects(input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    let mut objects = kube_proxy(input)?;
    objects.extend(coredns(input)?);
    if let Some(agent) = &input.tunnel {
        objects.extend(crate::builders::tunnel::agent_objects(agent)?);
    }
    Ok(objects)
}

fn service_account(name: &str) -> Result<HostedObject, BuildError> {
    hosted_object::<ServiceAccount>(
        "ServiceAccount",
        json!({ "metadata": hosted_meta(name, Some(KUBE_SYSTEM)) }),
    )
}

fn kube_proxy(input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    let service_account_subject =
        json!({ "kind": "ServiceAccount", "name": KUBE_PROXY, "namespace": KUBE_SYSTEM });
    let mut objects = vec![
        service_account(KUBE_PROXY)?,
        cluster_role_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            &[service_account_subject],
        )?,
    ];
    // kubeadm lets joining nodes read kube-proxy's configuration.
    objects.extend(config_map_reader(
        KUBE_SYSTEM,
        KUBE_PROXY,
        KUBE_PROXY,
        &[group_subject(BOOTSTRAPPERS_GROUP)],
    )?);
    objects.push(config_map(
        KUBE_SYSTEM,
        KUBE_PROXY,
        &[
            (
                KUBE_PROXY_CONFIG_KEY,
                yaml("KubeProxyConfiguration", &kube_proxy_configuration(input))?,
            ),
            (
                KUBE_PROXY_KUBECONFIG_KEY,
                yaml("kube-proxy kubeconfig", &kube_proxy_kubeconfig(input))?,
            ),
        ],
    )?);
    objects.push(kube_proxy_daemon_set(input)?);
    Ok(objects)
}

fn kube_proxy_configuration(input: &HostedInput) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": { "kubeconfig": format!("{KUBE_PROXY_CONFIG_DIR}/{KUBE_PROXY_KUBECONFIG_KEY}") },
        "clusterCIDR": input.pod_cidr,
        "mode": "iptables",
    })
}

/// kube-proxy as its service account, at the external endpoint.
fn kube_proxy_kubeconfig(input: &HostedInput) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "default", "cluster": {
            "certificate-authority": format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
            "server": input.endpoint.url(),
        }}],
        "contexts": [{ "name": "default", "context": {
            "cluster": "default", "namespace": "default", "user": "default",
        }}],
        "current-context": "default",
        "users": [{ "name": "default", "user": { "tokenFile": format!("{SERVICE_ACCOUNT_DIR}/token") } }],
    })
}

fn kube_proxy_daemon_set(input: &HostedInput) -> Result<HostedObject, BuildError> {
    let labels = json!({ "k8s-app": KUBE_PROXY });
    let mut meta = hosted_meta(KUBE_PROXY, Some(KUBE_SYSTEM));
    meta["labels"]["k8s-app"] = KUBE_PROXY.into();
    hosted_object::<DaemonSet>(
        "DaemonSet kube-proxy",
        json!({
            "metadata": meta,
            "spec": {
                "selector": { "matchLabels": labels },
                "updateStrategy": { "type": "RollingUpdate" },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "containers": [{
                            "name": KUBE_PROXY,
                            "image": format!("{}/kube-proxy:{}", input.image_registry, input.version),
                            "imagePullPolicy": "IfNotPresent",
                            "command": [
                                "/usr/local/bin/kube-proxy",
                                format!("--config={KUBE_PROXY_CONFIG_DIR}/{KUBE_PROXY_CONFIG_KEY}"),
                                "--hostname-override=$(NODE_NAME)",
                            ],
                            "securityContext": { "privileged": true },
                            "volumeMounts": [
                                { "mountPath": KUBE_PROXY_CONFIG_DIR, "name": KUBE_PROXY },
                                { "mountPath": "/run/xtables.lock", "name": "xtables-lock" },
                                { "mountPath": "/lib/modules", "name": "lib-modules", "readOnly": true },
                            ],
                            "env": [{
                                "name": "NODE_NAME",
                                "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } },
                            }],
                        }],
                        "hostNetwork": true,
                        "serviceAccountName": KUBE_PROXY,
                        "volumes": [
                            { "name": KUBE_PROXY, "configMap": { "name": KUBE_PROXY } },
                            { "name": "xtables-lock", "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" } },
                            { "name": "lib-modules", "hostPath": { "path": "/lib/modules" } },
                        ],
                        "tolerations": [{ "operator": "Exists" }],
                        "nodeSelector": { "kubernetes.io/os": "linux" },
                    },
                },
            },
        }),
    )
}

fn coredns(input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    let cluster_role = hosted_object::<ClusterRole>(
        "ClusterRole system:coredns",
        json!({
            "metadata": hosted_meta(COREDNS_ROLE, None),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"] },
            ],
        }),
    )?;
    let subject = json!({ "kind": "ServiceAccount", "name": COREDNS, "namespace": KUBE_SYSTEM });
    Ok(vec![
        service_account(COREDNS)?,
        cluster_role,
        cluster_role_binding(COREDNS_ROLE, COREDNS_ROLE, &[subject])?,
        config_map(KUBE_SYSTEM, COREDNS, &[("Corefile", corefile(&input.dns_domain))])?,
        coredns_deployment(input)?,
        kube_dns_service(input)?,
    ])
}

/// kubeadm's Corefile for the cluster domain.
fn corefile(domain: &str) -> String {
    format!(
        ".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {domain}
       disable denial {domain}
    }}
    loop
    reload
    loadbalance
}}
"
    )
}

fn coredns_deployment(input: &HostedInput) -> Result<HostedObject, BuildError> {
    let labels = json!({ "k8s-app": KUBE_DNS_SERVICE });
    let mut meta = hosted_meta(COREDNS, Some(KUBE_SYSTEM));
    meta["labels"]["k8s-app"] = KUBE_DNS_SERVICE.into();
    hosted_object::<Deployment>(
        "Deployment coredns",
        json!({
            "metadata": meta,
            "spec": {
                "replicas": 2,
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": COREDNS,
                        "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": { "matchExpressions": [
                                    { "key": "k8s-app", "operator": "In", "values": [KUBE_DNS_SERVICE] },
                                ]},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }]}},
                        "tolerations": [
                            { "key": "CriticalAddonsOnly", "operator": "Exists" },
                            { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" },
                        ],
                        "nodeSelector": { "kubernetes.io/os": "linux" },
                        "containers": [coredns_container(input)],
                        "dnsPolicy": "Default",
                        "volumes": [{
                            "name": "config-volume",
                            "configMap": { "name": COREDNS, "items": [{ "key": "Corefile", "path": "Corefile" }] },
                        }],
                    },
                },
            },
        }),
    )
}

fn coredns_container(input: &HostedInput) -> Value {
    json!({
        "name": COREDNS,
        "image": format!("{}/coredns/coredns:{COREDNS_VERSION}", input.image_registry),
        "imagePullPolicy": "IfNotPresent",
        "resources": {
            "limits": { "memory": "170Mi" },
            "requests": { "cpu": "100m", "memory": "70Mi" },
        },
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{ "name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true }],
        "ports": [
            { "containerPort": 53, "name": "dns", "protocol": "UDP" },
            { "containerPort": 53, "name": "dns-tcp", "protocol": "TCP" },
            { "containerPort": 9153, "name": "metrics", "protocol": "TCP" },
            { "containerPort": 8080, "name": "liveness-probe", "protocol": "TCP" },
            { "containerPort": 8181, "name": "readiness-probe", "protocol": "TCP" },
        ],
        "livenessProbe": {
            "httpGet": { "path": "/health", "port": "liveness-probe", "scheme": "HTTP" },
            "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5,
        },
        "readinessProbe": { "httpGet": { "path": "/ready", "port": "readiness-probe", "scheme": "HTTP" } },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "add": ["NET_BIND_SERVICE"], "drop": ["ALL"] },
            "readOnlyRootFilesystem": true,
        },
    })
}

fn kube_dns_service(input: &HostedInput) -> Result<HostedObject, BuildError> {
    let mut meta = hosted_meta(KUBE_DNS_SERVICE, Some(KUBE_SYSTEM));
    meta["labels"]["k8s-app"] = KUBE_DNS_SERVICE.into();
    meta["labels"]["kubernetes.io/cluster-service"] = "true".into();
    meta["labels"]["kubernetes.io/name"] = "CoreDNS".into();
    meta["annotations"] = json!({ "prometheus.io/port": "9153", "prometheus.io/scrape": "true" });
    hosted_object::<Service>(
        "Service kube-dns",
        json!({
            "metadata": meta,
            "spec": {
                "clusterIP": input.dns_service_ip,
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                    { "name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153 },
                ],
                "selector": { "k8s-app": KUBE_DNS_SERVICE },
            },
        }),
    )
}

#[cfg(test)]
mod tests;
