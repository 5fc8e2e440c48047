use std::collections::BTreeMap;
use std::process::Command;

use super::*;
use crate::api::{RegistryMirror, TaintEffect};
use crate::builders::testing::assert_golden_text;

const SERVER_ID: &str = "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
const HASH: &str = "sha256:0f8e3c6d1b2a4958f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180";

/// Label and taint values with what YAML (`:`, `#`, quotes, `{`) and Jinja (`%`, `}`) treat specially.
const TRICKY: &str = r#"a: b #c 'single' "double" {x} %y"#;

fn input() -> JoinInput {
    JoinInput {
        endpoint: Endpoint {
            host: "192.0.2.2".into(),
            port: 31030,
        },
        token: "abcdef.0123456789abcdef".into(),
        ca_cert_hashes: vec![HASH.into()],
        node_name: "workers-x7k2p".into(),
        node_labels: BTreeMap::from([
            ("node-role.kubernetes.io/worker".into(), String::new()),
            ("topology.example.com/rack".into(), "r12".into()),
        ]),
        node_taints: vec![
            NodeTaint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: TaintEffect::NoSchedule,
            },
            NodeTaint {
                key: "example.com/maintenance".into(),
                value: None,
                effect: TaintEffect::NoExecute,
            },
        ],
        kubelet_extra_args: BTreeMap::from([
            ("--max-pods".into(), "58".into()),
            (
                "eviction-hard".into(),
                "memory.available<100Mi,nodefs.available<10%".into(),
            ),
        ]),
        version: "v1.35.4".into(),
        registry_mirrors: Vec::new(),
    }
}

/// The user-data as cloud-init reads it before templating: the two headers, then the document.
fn parse(user_data: &str) -> CloudConfig {
    let mut lines = user_data.splitn(3, '\n');
    assert_eq!(lines.next(), Some(JINJA_HEADER), "first line");
    assert_eq!(lines.next(), Some(CLOUD_CONFIG_HEADER), "second line");
    serde_yaml::from_str(lines.next().expect("a document")).expect("cloud-config")
}

/// Renders the template as cloud-init does on a server whose ID is [`SERVER_ID`]: the Jinja
/// header line is dropped and the rest rendered with the instance data.
fn render_on_server(user_data: &str) -> String {
    let template = user_data
        .strip_prefix(JINJA_HEADER)
        .and_then(|rest| rest.strip_prefix('\n'))
        .expect("jinja header");
    let env = minijinja::Environment::new();
    let instance_data = BTreeMap::from([("v1", BTreeMap::from([("instance_id", SERVER_ID)]))]);
    env.render_str(template, instance_data).expect("jinja")
}

fn file<'a>(config: &'a CloudConfig, path: &str) -> Option<&'a WriteFile> {
    config.write_files.iter().find(|f| f.path == path)
}

fn join_file(config: &CloudConfig) -> JoinConfiguration {
    let file = file(config, JOIN_CONFIG_PATH).expect("the JoinConfiguration is written");
    serde_yaml::from_str(&file.content).expect("JoinConfiguration")
}

fn arg<'a>(join: &'a JoinConfiguration, name: &str) -> Option<&'a str> {
    let args = &join.node_registration.kubelet_extra_args;
    args.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// `--node-labels` parsed as the kubelet does (`k=v` pairs split on `,`, then on the first `=`).
fn node_labels(join: &JoinConfiguration) -> BTreeMap<String, String> {
    arg(join, "node-labels")
        .map(|flag| {
            flag.split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("k=v");
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn invalid_message(result: Result<String, BuildError>) -> String {
    match result {
        Err(BuildError::Invalid { message, .. }) => message,
        other => panic!("expected an invalid input, got {other:?}"),
    }
}

#[test]
fn user_data_matches_golden() {
    let rendered = render(&input()).expect("render");
    assert_golden_text("user-data", &rendered);
}

#[test]
fn join_configuration_carries_what_discovery_and_registration_need() {
    let config = parse(&render(&input()).expect("render"));
    let join = join_file(&config);

    assert_eq!(join.api_version, "kubeadm.k8s.io/v1beta4");
    assert_eq!(join.kind, "JoinConfiguration");
    let discovery = &join.discovery.bootstrap_token;
    assert_eq!(discovery.api_server_endpoint, "192.0.2.2:31030");
    assert_eq!(discovery.token, "abcdef.0123456789abcdef");
    assert_eq!(discovery.ca_cert_hashes, vec![HASH.to_string()]);

    let registration = &join.node_registration;
    assert_eq!(registration.name, "workers-x7k2p");
    let taints: Vec<(&str, Option<&str>, &str)> = registration
        .taints
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_deref(), t.effect.as_str()))
        .collect();
    assert_eq!(
        taints,
        vec![
            ("dedicated", Some("gpu"), "NoSchedule"),
            ("example.com/maintenance", None, "NoExecute"),
        ]
    );
    assert_eq!(node_labels(&join), input().node_labels);
    assert_eq!(
        arg(&join, "provider-id"),
        Some("openstack:///{{ v1.instance_id }}")
    );
    // The user's flags, without their dashes, after nestplane's.
    assert_eq!(arg(&join, "max-pods"), Some("58"));
    assert_eq!(
        arg(&join, "eviction-hard"),
        Some("memory.available<100Mi,nodefs.available<10%")
    );
    assert!(arg(&join, "--max-pods").is_none());
}

#[test]
fn join_configuration_is_root_only_and_the_join_uses_it() {
    let config = parse(&render(&input()).expect("render"));
    let file = file(&config, JOIN_CONFIG_PATH).expect("written");
    assert_eq!(file.permissions, "0600", "the file holds the bootstrap token");
    assert_eq!(file.owner, "root:root");
    assert_eq!(config.runcmd.len(), 1);
    let command = &config.runcmd[0];
    assert_eq!(command[..2], ["sh", "-c"]);
    assert_eq!(command[4..], ["v1.35.4", JOIN_CONFIG_PATH]);
}

/// Runs the join command with a stand-in `kubeadm` of version `have` that prints its arguments.
fn run_join_command(command: &[String], have: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("nestplane-join-{}-{have}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeadm = dir.join("kubeadm");
    let script =
        format!("#!/bin/sh\nif [ \"$1\" = version ]; then echo {have}; else echo \"kubeadm $*\"; fi\n");
    std::fs::write(&kubeadm, script).expect("stand-in kubeadm");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&kubeadm)
        .status()
        .expect("chmod");
    assert!(status.success());
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new(&command[0])
        .args(&command[1..])
        .env("PATH", path)
        .output()
        .expect("sh");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn join_command_joins_only_with_the_pools_kubeadm_version() {
    let config = parse(&render(&input()).expect("render"));
    let command = &config.runcmd[0];

    let (ok, output) = run_join_command(command, "v1.35.4");
    assert!(ok, "{output}");
    assert_eq!(
        output.trim(),
        "kubeadm join --config /etc/kubernetes/kubeadm-join.yaml"
    );

    let (ok, output) = run_join_command(command, "v1.34.2");
    assert!(!ok, "joined with another kubeadm: {output}");
    assert!(!output.contains("kubeadm join"), "{output}");
    assert!(
        output.contains("v1.34.2") && output.contains("v1.35.4"),
        "{output}"
    );
}

#[test]
fn cloud_init_templating_fills_in_the_server_id_and_nothing_else() {
    let mut input = input();
    input
        .node_labels
        .insert("example.com/tricky".into(), TRICKY.into());
    input.node_taints[0].value = Some(TRICKY.into());
    input.kubelet_extra_args.insert("v".into(), TRICKY.into());
    let user_data = render(&input).expect("render");

    let on_server = render_on_server(&user_data);
    let lines: Vec<&str> = on_server.splitn(2, '\n').collect();
    assert_eq!(lines[0], CLOUD_CONFIG_HEADER);
    let config: CloudConfig = serde_yaml::from_str(lines[1]).expect("rendered cloud-config");
    let join = join_file(&config);
    assert_eq!(
        arg(&join, "provider-id"),
        Some(format!("openstack:///{SERVER_ID}").as_str())
    );

    // Apart from the provider ID, templating changed nothing.
    let mut expected = parse(&user_data);
    for file in &mut expected.write_files {
        file.content = file
            .content
            .replace(PROVIDER_ID, &format!("openstack:///{SERVER_ID}"));
    }
    assert_eq!(config, expected);
}

#[test]
fn yaml_special_characters_in_labels_taints_and_args_survive() {
    let mut input = input();
    input
        .node_labels
        .insert("example.com/tricky".into(), TRICKY.into());
    input.node_taints.push(NodeTaint {
        key: "example.com/tricky".into(),
        value: Some(TRICKY.into()),
        effect: TaintEffect::PreferNoSchedule,
    });
    input.kubelet_extra_args.insert("v".into(), TRICKY.into());
    let join = join_file(&parse(&render(&input).expect("render")));

    assert_eq!(node_labels(&join)["example.com/tricky"], TRICKY);
    let taint = join.node_registration.taints.last().expect("taint");
    assert_eq!(taint.value.as_deref(), Some(TRICKY));
    assert_eq!(taint.effect, "PreferNoSchedule");
    assert_eq!(arg(&join, "v"), Some(TRICKY));
}

#[test]
fn no_labels_means_no_node_labels_flag_and_no_taints_an_empty_list() {
    let mut input = input();
    input.node_labels.clear();
    input.node_taints.clear();
    input.kubelet_extra_args.clear();
    let join = join_file(&parse(&render(&input).expect("render")));
    assert!(arg(&join, "node-labels").is_none());
    assert!(join.node_registration.taints.is_empty());
    let names: Vec<&str> = join
        .node_registration
        .kubelet_extra_args
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["provider-id"]);
}

#[test]
fn ipv6_endpoint_is_bracketed() {
    let mut input = input();
    input.endpoint.host = "2001:db8::2".into();
    let join = join_file(&parse(&render(&input).expect("render")));
    assert_eq!(
        join.discovery.bootstrap_token.api_server_endpoint,
        "[2001:db8::2]:31030"
    );
}

/// The mirrors a platform engineer names for a cloud without internet access.
fn mirrors() -> Vec<RegistryMirror> {
    vec![
        RegistryMirror {
            registry: "registry.k8s.io".into(),
            endpoints: vec![
                "https://mirror.example.com/registry.k8s.io".into(),
                "https://mirror.example.com:5000".into(),
            ],
            ca_bundle: None,
        },
        RegistryMirror {
            registry: "ghcr.io".into(),
            endpoints: vec!["https://mirror.example.com/ghcr.io".into()],
            ca_bundle: None,
        },
    ]
}

/// A CA certificate as a private mirror's operator would paste it.
fn mirror_ca() -> String {
    nestplane_pki::generate_ca(
        "mirror-ca",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(30),
    )
    .expect("CA")
    .cert_pem
}

#[test]
fn a_mirror_ca_bundle_is_written_beside_its_hosts_file_and_named_by_every_mirror_host() {
    let mut input = input();
    input.registry_mirrors = mirrors();
    let without = render(&input).expect("render");
    let bundle = format!("{}{}", mirror_ca(), mirror_ca());
    input.registry_mirrors[0].ca_bundle = Some(bundle.clone());
    let config = parse(&render(&input).expect("render"));

    let paths: Vec<(&str, &str)> = config
        .write_files
        .iter()
        .filter(|f| f.path.starts_with(CERTS_D))
        .map(|f| (f.path.as_str(), f.permissions.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/etc/containerd/certs.d/registry.k8s.io/ca.crt", "0644"),
            ("/etc/containerd/certs.d/registry.k8s.io/hosts.toml", "0644"),
            ("/etc/containerd/certs.d/ghcr.io/hosts.toml", "0644"),
        ]
    );
    let ca = file(&config, "/etc/containerd/certs.d/registry.k8s.io/ca.crt").expect("ca.crt");
    assert_eq!(ca.content, bundle, "the bundle as given, both certificates");

    let hosts = |path: &str| -> toml::Table {
        toml::from_str(&file(&config, path).expect("hosts.toml").content).expect("TOML")
    };
    let k8s = hosts("/etc/containerd/certs.d/registry.k8s.io/hosts.toml");
    let k8s_hosts = k8s["host"].as_table().expect("hosts");
    assert_eq!(k8s_hosts.len(), 2);
    for (url, host) in k8s_hosts {
        assert_eq!(
            host["ca"].as_str(),
            Some("/etc/containerd/certs.d/registry.k8s.io/ca.crt"),
            "{url}"
        );
    }
    // The upstream itself keeps the system CAs: `ca` is per mirror host, not at the top level.
    assert!(!k8s.contains_key("ca"));
    let ghcr = hosts("/etc/containerd/certs.d/ghcr.io/hosts.toml");
    for (url, host) in ghcr["host"].as_table().expect("hosts") {
        assert!(
            !host.as_table().expect("host").contains_key("ca"),
            "{url}: no bundle, no ca"
        );
    }

    input.registry_mirrors[0].ca_bundle = None;
    assert_eq!(
        render(&input).expect("render"),
        without,
        "a pool without a CA bundle keeps its user-data"
    );
}

#[test]
fn refuses_a_ca_bundle_that_is_not_only_certificates() {
    let key = nestplane_pki::generate_ca(
        "mirror-ca",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(30),
    )
    .expect("CA")
    .key_pem;
    let cases = [
        (String::new(), "no PEM certificate"),
        ("not a certificate".to_string(), "no PEM certificate"),
        (format!("{}{key}", mirror_ca()), "only CERTIFICATE blocks"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
            "does not parse",
        ),
    ];
    for (bundle, says) in cases {
        let mut input = input();
        input.registry_mirrors = mirrors();
        input.registry_mirrors[1].ca_bundle = Some(bundle.clone());
        let message = invalid_message(render(&input));
        assert!(message.contains("caBundle of ghcr.io"), "{bundle:?}: {message}");
        assert!(message.contains(says), "{bundle:?}: {message}");
        assert!(
            !message.contains("PRIVATE KEY-----\n"),
            "the key is not echoed: {message}"
        );
    }
}

#[test]
fn registry_mirrors_write_one_containerd_hosts_file_per_registry() {
    let mut input = input();
    let config = parse(&render(&input).expect("render"));
    assert!(
        !config.write_files.iter().any(|f| f.path.starts_with(CERTS_D)),
        "no mirror, no hosts.toml"
    );

    input.registry_mirrors = mirrors();
    let config = parse(&render(&input).expect("render"));
    let hosts: Vec<(&str, &str)> = config
        .write_files
        .iter()
        .filter(|f| f.path.starts_with(CERTS_D))
        .map(|f| (f.path.as_str(), f.permissions.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("/etc/containerd/certs.d/registry.k8s.io/hosts.toml", "0644"),
            ("/etc/containerd/certs.d/ghcr.io/hosts.toml", "0644"),
        ]
    );
    let k8s = file(&config, "/etc/containerd/certs.d/registry.k8s.io/hosts.toml").expect("hosts.toml");
    let parsed: toml::Table = toml::from_str(&k8s.content).expect("TOML");
    assert_eq!(parsed["server"].as_str(), Some("https://registry.k8s.io"));
    assert!(
        k8s.content.find("mirror.example.com/registry.k8s.io") < k8s.content.find("mirror.example.com:5000"),
        "mirrors in the pool's order:\n{}",
        k8s.content
    );
    assert_eq!(
        join_file(&config),
        join_file(&parse(&render(&self::input()).expect("render")))
    );

    input.registry_mirrors[1].endpoints = vec!["http://harbor.example.com".into()];
    let message = invalid_message(render(&input));
    assert!(message.contains("https URL"), "{message}");
    input.registry_mirrors[1].endpoints = vec!["https://harbor.example.com/{{v1.region}}".into()];
    let message = invalid_message(render(&input));
    assert!(message.contains("template delimiter"), "{message}");
}

#[test]
fn user_data_with_registry_mirrors_matches_golden() {
    let mut input = input();
    input.registry_mirrors = mirrors();
    let rendered = render(&input).expect("render");
    assert_golden_text("user-data-registry-mirrors", &rendered);
}

#[test]
fn refuses_kubelet_flags_nestplane_sets() {
    for name in [
        "--provider-id",
        "node-labels",
        "-register-with-taints",
        "kubeconfig",
    ] {
        let mut input = input();
        input.kubelet_extra_args.insert(name.into(), "x".into());
        let message = invalid_message(render(&input));
        assert!(message.contains(name), "{name}: {message}");
    }
}

#[test]
fn refuses_a_malformed_token_or_ca_hash() {
    for token in [
        "abcdef0123456789abcdef",
        "ABCDEF.0123456789abcdef",
        "abcde.0123456789abcdef",
    ] {
        let mut input = input();
        input.token = token.into();
        assert!(invalid_message(render(&input)).contains("[a-z0-9]{6}"), "{token}");
    }
    let mut input = input();
    input.ca_cert_hashes.clear();
    assert!(invalid_message(render(&input)).contains("none given"));
    input.ca_cert_hashes = vec!["sha256:abc".into()];
    assert!(invalid_message(render(&input)).contains("sha256:abc"));
}

#[test]
fn refuses_template_delimiters_and_label_commas() {
    type Change = fn(&mut JoinInput);
    let cases: [(&str, Change); 4] = [
        ("label", |i| {
            i.node_labels.insert("a".into(), "{{ v1.region }}".into());
        }),
        ("taint", |i| i.node_taints[0].value = Some("{% if x %}".into())),
        ("kubelet arg", |i| {
            i.kubelet_extra_args.insert("v".into(), "{# comment".into());
        }),
        ("label comma", |i| {
            i.node_labels.insert("a".into(), "b,c=d".into());
        }),
    ];
    for (what, change) in cases {
        let mut input = input();
        change(&mut input);
        assert!(
            matches!(render(&input), Err(BuildError::Invalid { .. })),
            "{what}"
        );
    }
}

#[test]
fn fits_novas_user_data_limit_or_says_why_not() {
    // As many labels and taints as the NodePool API allows, each at its longest.
    let mut input = input();
    input.node_labels = (0..64)
        .map(|i| (format!("{}/{i:0>60}", "a".repeat(190)), "v".repeat(63)))
        .collect();
    input.node_taints = (0..32)
        .map(|i| NodeTaint {
            key: format!("{}/{i:0>60}", "t".repeat(250)),
            value: Some("v".repeat(63)),
            effect: TaintEffect::NoSchedule,
        })
        .collect();
    let user_data = render(&input).expect("the API's label and taint limits fit");
    let encoded = base64::encoded_len(user_data.len(), true).expect("length");
    assert!(encoded <= NOVA_USER_DATA_LIMIT, "{encoded}");

    // kubeletExtraArgs allow 64 values of 4096 characters: more than Nova takes.
    input.kubelet_extra_args = (0..64).map(|i| (format!("arg-{i}"), "x".repeat(4096))).collect();
    let message = invalid_message(render(&input));
    assert!(message.contains("Nova takes at most 65535"), "{message}");
}
