use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

use super::*;
use crate::test_support::{NOW, YEAR, key_signs_for, pem};
use crate::{generate_ca, issue_leaf, profiles};

/// An independent decoder, so the encoder is not checked against itself.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let bits: String = digits.iter().map(|d| format!("{d:06b}")).collect();
    bits.as_bytes()
        .chunks_exact(8)
        .map(|byte| u8::from_str_radix(std::str::from_utf8(byte).expect("ascii"), 2).expect("bits"))
        .collect()
}

fn field<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| &v[*key])
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn only<'a>(value: &'a Value, list: &str) -> &'a Value {
    let items = value[list].as_sequence().expect(list);
    assert_eq!(items.len(), 1, "{list}");
    &items[0]
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected, "input {input:?}");
        assert_eq!(decode_base64(expected), input.as_bytes());
    }
    let every_byte: Vec<u8> = (0..=255).collect();
    for len in 0..every_byte.len() {
        assert_eq!(decode_base64(&base64(&every_byte[..len])), &every_byte[..len]);
    }
}

struct Rendered {
    ca: crate::CertKeyPair,
    client: crate::CertKeyPair,
    yaml: String,
}

fn render(cluster_name: &str, user_name: &str) -> Rendered {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let client = issue_leaf(&ca, &profiles::admin(), NOW, YEAR).expect("leaf");
    let yaml = kubeconfig(&KubeconfigSpec {
        cluster_name,
        server: "https://192.0.2.2:6443",
        ca_cert_pem: &ca.cert_pem,
        user_name,
        client: &client,
    });
    Rendered { ca, client, yaml }
}

#[test]
fn kubeconfig_has_one_cluster_user_and_current_context() {
    let r = render("demo", "admin");
    let config: Value = serde_yaml::from_str(&r.yaml).expect("YAML");
    assert_eq!(text(&config["apiVersion"]), "v1");
    assert_eq!(text(&config["kind"]), "Config");

    let cluster = only(&config, "clusters");
    assert_eq!(text(&cluster["name"]), "demo");
    assert_eq!(
        text(field(cluster, &["cluster", "server"])),
        "https://192.0.2.2:6443"
    );
    let ca_pem = decode_base64(text(field(cluster, &["cluster", "certificate-authority-data"])));
    assert_eq!(ca_pem, r.ca.cert_pem.as_bytes());

    let user = only(&config, "users");
    assert_eq!(text(&user["name"]), "admin");
    let cert_pem = String::from_utf8(decode_base64(text(field(
        user,
        &["user", "client-certificate-data"],
    ))))
    .expect("utf-8");
    let key_pem =
        String::from_utf8(decode_base64(text(field(user, &["user", "client-key-data"])))).expect("utf-8");
    let parsed = pem(&cert_pem);
    let cert = parsed.parse_x509().expect("client certificate");
    assert_eq!(
        cert.subject().to_string(),
        "O=system:masters, CN=kubernetes-admin"
    );
    assert!(
        key_signs_for(&key_pem, cert.public_key()),
        "the embedded key belongs to the certificate"
    );
    assert_eq!(cert_pem, r.client.cert_pem);

    let context = only(&config, "contexts");
    assert_eq!(text(field(context, &["context", "cluster"])), "demo");
    assert_eq!(text(field(context, &["context", "user"])), "admin");
    assert_eq!(text(&config["current-context"]), text(&context["name"]));
}

#[test]
fn names_with_yaml_syntax_survive() {
    for name in [
        "system:kube-scheduler",
        "a@b",
        "quote\"back\\slash",
        "# not a comment",
        "- dash",
        "line\nbreak",
    ] {
        let r = render(name, name);
        let config: Value = serde_yaml::from_str(&r.yaml).expect("YAML");
        assert_eq!(text(&only(&config, "clusters")["name"]), name);
        assert_eq!(text(&only(&config, "users")["name"]), name);
        assert_eq!(text(&config["current-context"]), format!("{name}@{name}"));
    }
}

#[test]
fn cluster_info_has_only_an_unnamed_cluster() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let yaml = cluster_info_kubeconfig("https://api.demo.example:6443", &ca.cert_pem);
    let config: Value = serde_yaml::from_str(&yaml).expect("YAML");
    assert_eq!(text(&config["apiVersion"]), "v1");
    assert_eq!(text(&config["kind"]), "Config");
    // kubeadm join takes the cluster named "" (GetClusterFromKubeConfig).
    let cluster = only(&config, "clusters");
    assert_eq!(text(&cluster["name"]), "");
    assert_eq!(
        text(field(cluster, &["cluster", "server"])),
        "https://api.demo.example:6443"
    );
    let ca_pem = decode_base64(text(field(cluster, &["cluster", "certificate-authority-data"])));
    assert_eq!(ca_pem, ca.cert_pem.as_bytes());
    assert!(config["users"].as_sequence().is_none_or(Vec::is_empty));
    assert!(!yaml.contains("client-key-data"));
}

/// kubectl, when installed, reads the kubeconfig as a client would.
#[test]
fn kubectl_accepts_the_kubeconfig() {
    let r = render("demo", "admin");
    let path: PathBuf = std::env::temp_dir().join(format!("nestplane-pki-{}.kubeconfig", std::process::id()));
    std::fs::write(&path, &r.yaml).expect("write");
    let output = Command::new("kubectl")
        .args(["config", "view", "--raw", "-o"])
        .arg("jsonpath={.current-context} {.clusters[0].cluster.server} {.users[0].name}")
        .arg("--kubeconfig")
        .arg(&path)
        .output();
    std::fs::remove_file(&path).expect("remove");
    let Ok(output) = output else {
        eprintln!("kubectl not found; skipped");
        return;
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "admin@demo https://192.0.2.2:6443 admin"
    );
}
