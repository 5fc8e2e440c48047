use serde_json::Value;

use super::*;
use crate::builders::testing::{assert_golden, hosted_cluster, inputs};
use crate::builders::{apiserver_config, kube_apiserver};

fn pod_spec(hc: &HostedCluster) -> Value {
    let deployment = kube_apiserver::deployment(hc, &inputs()).expect("deployment");
    serde_json::to_value(deployment).expect("json")["spec"]["template"]["spec"].clone()
}

fn container<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    spec["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
}

fn arg(container: &Value, flag: &str) -> Option<String> {
    let prefix = format!("--{flag}=");
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn mount_path(container: &Value, volume: &str) -> Option<String> {
    container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume)
        .and_then(|m| m["mountPath"].as_str().map(str::to_string))
}

/// The socket kube-apiserver's egress file names is the one the tunnel server listens on, in a
/// directory both containers mount; the egress file is in the config volume the API server reads.
#[test]
fn the_api_server_dials_the_socket_the_tunnel_server_listens_on() {
    let hc = hosted_cluster();
    let spec = pod_spec(&hc);
    let apiserver = container(&spec, "kube-apiserver").expect("kube-apiserver");
    let server = container(&spec, "tunnel-server").expect("tunnel-server");

    let egress_file = arg(apiserver, "egress-selector-config-file").expect("egress flag");
    let config_dir = mount_path(apiserver, "config").expect("config mount");
    let file = egress_file
        .strip_prefix(&format!("{config_dir}/"))
        .expect("egress file in the config volume");
    let maps = apiserver_config::config_maps(&hc).expect("config maps");
    let egress = maps
        .iter()
        .find_map(|m| m.data.as_ref()?.get(file))
        .expect("a ConfigMap holds the egress file");
    let egress: Value = serde_yaml::from_str(egress).expect("yaml");
    let selection = &egress["egressSelections"][0];
    assert_eq!(selection["name"], "cluster");
    assert_eq!(selection["connection"]["proxyProtocol"], "HTTPConnect");
    let socket = selection["connection"]["transport"]["uds"]["udsName"]
        .as_str()
        .expect("udsName");

    assert_eq!(arg(server, "connect-socket").as_deref(), Some(socket));
    let socket_dir = socket.rsplit_once('/').expect("a directory").0;
    assert_eq!(
        mount_path(apiserver, "tunnel-socket").as_deref(),
        Some(socket_dir)
    );
    assert_eq!(mount_path(server, "tunnel-socket").as_deref(), Some(socket_dir));
    // Its listener presents the API server's serving certificate, which names the endpoint.
    let pki = mount_path(server, "pki").expect("pki");
    assert_eq!(arg(server, "tls-cert-file"), Some(format!("{pki}/apiserver.crt")));
    assert_eq!(arg(apiserver, "tls-cert-file"), arg(server, "tls-cert-file"));
}

/// The agent's projected token is of the audience and the service account the server accepts.
#[test]
fn agents_present_the_token_the_server_reviews() {
    let spec = pod_spec(&hosted_cluster());
    let server = container(&spec, "tunnel-server").expect("tunnel-server");
    let agent = AgentInput {
        server_url: "https://192.0.2.2:31132".into(),
        image: "ghcr.io/nestplane/nestplane:v0.1.0".into(),
    };
    let objects = agent_objects(&agent).expect("agent");
    let daemon_set = objects
        .iter()
        .find(|o| o.object.types.as_ref().is_some_and(|t| t.kind == "DaemonSet"))
        .expect("DaemonSet");
    let pod = &daemon_set.object.data["spec"]["template"]["spec"];
    let token = &pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(arg(server, "audience").as_deref(), token["audience"].as_str());
    let account = format!(
        "{}/{}",
        daemon_set
            .object
            .metadata
            .namespace
            .as_deref()
            .expect("namespace"),
        pod["serviceAccountName"].as_str().expect("account")
    );
    assert_eq!(arg(server, "agent-service-account"), Some(account));
    let agent_container = &pod["containers"][0];
    assert_eq!(
        arg(agent_container, "server").as_deref(),
        Some("https://192.0.2.2:31132")
    );
    assert_eq!(pod["hostNetwork"], true);
}

/// With the tunnel disabled the control plane is what it was before the tunnel existed: no
/// container, no egress file, no Service port, no agent.
#[test]
fn a_disabled_tunnel_leaves_no_trace() {
    let mut hc = hosted_cluster();
    hc.spec.api_server.tunnel.enabled = false;
    let spec = pod_spec(&hc);
    assert!(container(&spec, "tunnel-server").is_none());
    let apiserver = container(&spec, "kube-apiserver").expect("kube-apiserver");
    assert_eq!(arg(apiserver, "egress-selector-config-file"), None);
    assert_eq!(mount_path(apiserver, "tunnel-socket"), None);
    let maps = apiserver_config::config_maps(&hc).expect("config maps");
    assert!(
        maps.iter()
            .all(|m| !m.data.as_ref().expect("data").contains_key(EGRESS_SELECTOR_KEY)),
        "{maps:?}"
    );
    let service = kube_apiserver::service(&hc, None).expect("service");
    let ports = service.spec.expect("spec").ports.expect("ports");
    assert_eq!(ports.len(), 1, "{ports:?}");

    let enabled = kube_apiserver::service(&hosted_cluster(), None).expect("service");
    let names: Vec<_> = enabled
        .spec
        .expect("spec")
        .ports
        .expect("ports")
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(names, ["https", AGENT_PORT_NAME]);
}

#[test]
fn agent_objects_match_golden() {
    let agent = AgentInput {
        server_url: "https://192.0.2.2:31132".into(),
        image: "ghcr.io/nestplane/nestplane:v0.1.0".into(),
    };
    let objects = agent_objects(&agent).expect("agent");
    assert_golden(
        "hosted-tunnel-agent",
        &crate::builders::hosted::testing::documents(&objects),
    );
}

/// The agent is an add-on like kube-proxy: built with the others once its endpoint is known.
#[test]
fn the_agent_comes_with_the_add_ons_once_its_endpoint_is_known() {
    let mut input = crate::builders::hosted::testing::hosted_input();
    let daemon_sets = |input: &crate::builders::hosted::HostedInput| -> Vec<String> {
        crate::builders::hosted::addons::objects(input)
            .expect("add-ons")
            .iter()
            .filter(|o| o.object.types.as_ref().is_some_and(|t| t.kind == "DaemonSet"))
            .filter_map(|o| o.object.metadata.name.clone())
            .collect()
    };
    assert!(!daemon_sets(&input).iter().any(|n| n == AGENT_NAME));
    input.tunnel = Some(AgentInput {
        server_url: "https://192.0.2.2:31132".into(),
        image: "ghcr.io/nestplane/nestplane:v0.1.0".into(),
    });
    assert!(daemon_sets(&input).iter().any(|n| n == AGENT_NAME));
}
