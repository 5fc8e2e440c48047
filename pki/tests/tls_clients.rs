//! openssl and Go's crypto/tls (through kubectl) accept the certificates for what they are for.
use std::process::Command;
use std::time::Duration;

use nestplane_pki::{CertKeyPair, KubeconfigRole, KubeconfigSpec, LeafRole, Usage, generate_ca, kubeconfig};
use nestplane_testenv::process::{TempDir, describe, free_port, port_open, run, stdout, tools, wait_for};
use nestplane_testenv::{bundle, write_pki};

/// `openssl verify -x509_strict` checks the chain, RFC 5280 rules and, with `-purpose`,
/// keyUsage and extendedKeyUsage.
#[test]
fn openssl_verifies_every_leaf_for_its_purpose() {
    let Some([openssl]) = tools(["openssl"]) else {
        return;
    };
    let dir = TempDir::new("openssl-verify");
    let (plan, bundle) = bundle();
    write_pki(&dir, &bundle);
    let verify = |ca: &str, leaf: &str, purpose: &str| {
        run(Command::new(&openssl)
            .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
            .arg(dir.0.join(format!("{ca}.crt")))
            .arg(dir.0.join(format!("{leaf}.crt"))))
    };
    for (name, issuer, spec) in plan.certificates() {
        let ca = issuer.file_name();
        let (good, bad): (&[&str], &[&str]) = match spec.usage {
            Usage::Server => (&["sslserver"], &["sslclient"]),
            Usage::Client => (&["sslclient"], &["sslserver"]),
            Usage::ServerAndClient => (&["sslserver", "sslclient"], &[]),
        };
        for purpose in good {
            let out = verify(ca, name, purpose);
            assert!(out.status.success(), "{} as {purpose}: {}", name, describe(&out));
            assert!(stdout(&out).trim_end().ends_with(": OK"), "{}", describe(&out));
        }
        for purpose in bad {
            let out = verify(ca, name, purpose);
            assert!(!out.status.success(), "{} must not pass as {purpose}", name);
        }
        let wrong_ca = if ca == "ca" { "etcd/ca" } else { "ca" };
        let out = verify(wrong_ca, name, good[0]);
        assert!(!out.status.success(), "{} must not chain to {wrong_ca}", name);
    }
}

/// kubectl (Go's TLS client, as kubelets and kubeadm use) talks to a TLS server that presents the
/// API server certificate and demands a client certificate from the cluster CA.
#[test]
fn go_client_and_openssl_server_authenticate_each_other() {
    let Some([openssl, kubectl]) = tools(["openssl", "kubectl"]) else {
        return;
    };
    let dir = TempDir::new("go-tls");
    let (_, bundle) = bundle();
    write_pki(&dir, &bundle);
    let port = free_port();
    let mut server = nestplane_testenv::Running::spawn(
        "openssl s_server",
        Command::new(&openssl)
            .args(["s_server", "-www", "-verify_return_error", "-Verify", "1"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(dir.0.join("apiserver.crt"))
            .arg("-key")
            .arg(dir.0.join("apiserver.key"))
            .arg("-CAfile")
            .arg(dir.0.join("ca.crt")),
        &dir,
    );
    wait_for(&mut server, Duration::from_secs(30), || {
        port_open(port).then_some(())
    });

    let get = |name: &str, server_url: &str, ca_pem: &str, client: &CertKeyPair| {
        let config = kubeconfig(&KubeconfigSpec {
            cluster_name: "demo",
            server: server_url,
            ca_cert_pem: ca_pem,
            user_name: "user",
            client,
        });
        let path = dir.write(&format!("{name}.conf"), &config);
        run(Command::new(&kubectl)
            .args(["get", "--raw", "/", "--request-timeout=10s", "--kubeconfig"])
            .arg(path))
    };
    let admin = &bundle.kubeconfig(KubeconfigRole::Admin).expect("admin").client;
    // Both the address and a DNS name from the certificate's SANs.
    for url in [
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
    ] {
        let out = get("admin", &url, &bundle.ca.cert_pem, admin);
        assert!(out.status.success(), "{url}: {}", describe(&out));
        assert!(stdout(&out).contains("s_server"), "{}", describe(&out));
    }

    let stranger = generate_ca(
        "kubernetes",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .expect("ca");
    let out = get(
        "wrong-ca",
        &format!("https://127.0.0.1:{port}"),
        &stranger.cert_pem,
        admin,
    );
    assert!(
        !out.status.success(),
        "a CA that did not sign the server must be refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("x509"),
        "{}",
        describe(&out)
    );

    // front-proxy-client is signed by the front-proxy CA, which the server does not trust.
    let out = get(
        "foreign-client",
        &format!("https://127.0.0.1:{port}"),
        &bundle.ca.cert_pem,
        bundle.leaf(LeafRole::FrontProxyClient).expect("leaf"),
    );
    assert!(
        !out.status.success(),
        "a client certificate from another CA must be refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls: unknown certificate authority"),
        "{}",
        describe(&out)
    );
    server.assert_running();
}
