use std::process::Command;

use serde_json::Value;

use super::*;
use crate::builders::Endpoint;
use crate::builders::testing::assert_golden;

fn input() -> HostedInput {
    HostedInput {
        cluster_name: "demo".into(),
        version: "v1.35.4".into(),
        endpoint: Endpoint {
            host: "192.0.2.2".into(),
            port: 31443,
        },
        ca_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        service_cidr: "10.96.0.0/12".into(),
        pod_cidr: "10.244.0.0/16".into(),
        dns_domain: "cluster.local".into(),
        dns_service_ip: "10.96.0.10".into(),
        cni: Cni::Flannel,
        image_registry: "registry.k8s.io".into(),
        apiserver_kubelet_client_user: "kube-apiserver-kubelet-client".into(),
        tunnel: None,
    }
}

/// The built object of `kind`, as JSON.
fn find(objects: &[HostedObject], kind: &str) -> Value {
    let object = objects
        .iter()
        .find(|o| o.resource.kind == kind)
        .unwrap_or_else(|| panic!("no {kind}"));
    serde_json::to_value(&object.object).expect("json")
}

fn config_data(input: &HostedInput, key: &str) -> String {
    let config_map = find(&objects(input).expect("build"), "ConfigMap");
    config_map["data"][key].as_str().expect("key").to_string()
}

/// What the install-cni script makes of the template for a lease (the same substitution).
fn render(template: &str, subnet: &str, mtu: u32) -> Value {
    let rendered = template
        .replace(&format!("\"{MTU_PLACEHOLDER}\""), &mtu.to_string())
        .replace(SUBNET_PLACEHOLDER, subnet);
    serde_json::from_str(&rendered).expect("rendered conflist is JSON")
}

#[test]
fn golden() {
    let objects = objects(&input()).expect("build");
    let bodies: Vec<_> = objects.iter().map(|o| &o.object).collect();
    assert_golden("hosted-flannel", &bodies);
}

#[test]
fn net_conf_is_the_pod_cidr_over_vxlan() {
    let mut input = input();
    input.pod_cidr = "172.20.0.0/14".into();
    let net_conf: Value =
        serde_json::from_str(&config_data(&input, NET_CONF_KEY)).expect("net-conf.json is JSON");
    assert_eq!(net_conf["Network"], "172.20.0.0/14");
    assert_eq!(net_conf["Backend"]["Type"], "vxlan");
}

#[test]
fn cni_config_bridges_pods_on_the_leased_subnet_and_routes_the_pod_cidr() {
    let template = config_data(&input(), CNI_CONF_KEY);
    let conflist = render(&template, "10.244.3.0/24", 1450);
    let plugins = conflist["plugins"].as_array().expect("plugins");
    let types: Vec<_> = plugins.iter().map(|p| p["type"].as_str()).collect();
    assert_eq!(types, [Some("bridge"), Some("portmap")]);
    let bridge = &plugins[0];
    assert_eq!(bridge["bridge"], "cni0");
    assert_eq!(bridge["isGateway"], true);
    assert_eq!(bridge["ipMasq"], false, "flanneld masquerades (--ip-masq)");
    assert_eq!(bridge["mtu"], 1450);
    assert_eq!(bridge["ipam"]["type"], "host-local");
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
    assert_eq!(bridge["ipam"]["routes"][0]["dst"], "10.244.0.0/16");
}

/// The script itself (with the machine's `sh`): flanneld's lease names the gateway address,
/// host-local needs the network; the MTU becomes a number.
#[test]
fn install_script_writes_the_conflist_from_flanneld_s_lease() {
    let dir = std::env::temp_dir().join(format!("nestplane-flannel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (env, template, conflist, script) = (
        dir.join("subnet.env"),
        dir.join("cni-conf.json"),
        dir.join("10-flannel.conflist"),
        dir.join("install-cni.sh"),
    );
    std::fs::write(&template, config_data(&input(), CNI_CONF_KEY)).expect("template");
    std::fs::write(&script, INSTALL_CNI_SCRIPT).expect("script");
    let run = || {
        Command::new("sh")
            .arg(&script)
            .arg("--once")
            .env("FLANNEL_SUBNET_ENV", &env)
            .env("FLANNEL_CNI_TEMPLATE", &template)
            .env("FLANNEL_CNI_CONFLIST", &conflist)
            .status()
            .expect("run sh")
    };

    assert!(!run().success(), "no lease yet: nothing to write");
    assert!(!conflist.exists());

    std::fs::write(
        &env,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.130.1/23\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n",
    )
    .expect("subnet.env");
    assert!(run().success());
    let written: Value = serde_json::from_slice(&std::fs::read(&conflist).expect("conflist")).expect("JSON");
    let bridge = &written["plugins"][0];
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.130.0/23");
    assert_eq!(bridge["mtu"], 1400);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn flanneld_reaches_the_hosted_api_at_its_external_endpoint() {
    let daemon_set = find(&objects(&input()).expect("build"), "DaemonSet");
    let containers = daemon_set["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let flanneld = containers
        .iter()
        .find(|c| c["name"] == "kube-flannel")
        .expect("flanneld");
    let env: BTreeMap<_, _> = flanneld["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e["value"].clone()))
        .collect();
    assert_eq!(env["KUBERNETES_SERVICE_HOST"], "192.0.2.2");
    assert_eq!(env["KUBERNETES_SERVICE_PORT"], "31443");
    assert!(
        flanneld["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--kube-subnet-mgr"))
    );
}

#[test]
fn runs_on_every_node_in_the_host_network() {
    let daemon_set = find(&objects(&input()).expect("build"), "DaemonSet");
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["tolerations"], json!([{ "operator": "Exists" }]));
    assert_eq!(pod["priorityClassName"], "system-node-critical");
}

#[test]
fn a_changed_pod_cidr_rolls_the_pods() {
    let hash = |input: &HostedInput| {
        let daemon_set = find(&objects(input).expect("build"), "DaemonSet");
        daemon_set["spec"]["template"]["metadata"]["annotations"][INPUTS_HASH_ANNOTATION].clone()
    };
    let mut other = input();
    other.pod_cidr = "10.200.0.0/16".into();
    assert_ne!(hash(&input()), hash(&other));
}

#[test]
fn every_object_is_labelled_as_nestplane_s() {
    for object in objects(&input()).expect("build") {
        let labels = object.object.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get(HOSTED_MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY),
            "{}",
            object.resource.kind
        );
    }
}

#[test]
fn a_cluster_with_its_own_cni_gets_no_flannel() {
    let mut input = input();
    input.cni = Cni::None;
    assert!(objects(&input).expect("build").is_empty());
}

#[test]
fn an_ipv6_pod_cidr_is_refused_with_the_cidr() {
    let mut input = input();
    input.pod_cidr = "fd00:10:244::/56".into();
    let error = objects(&input).expect_err("IPv6 is not built").to_string();
    assert!(error.contains("fd00:10:244::/56"), "{error}");
}

/// The image the DaemonSet names is the one hack/images.sh builds.
#[test]
fn version_is_the_one_the_image_is_built_at() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/versions.env");
    let versions = std::fs::read_to_string(path).expect("versions.env");
    let pinned = versions
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_VERSION="))
        .expect("FLANNEL_VERSION");
    assert_eq!(pinned, VERSION);
}
