//! The real components accept the PKI: a two-member etcd, kube-apiserver and
//! kube-controller-manager run on it, and kubeadm computes the same discovery hash.
//! Runs when the pinned binaries are installed (`make binaries` puts them in $NESTPLANE_CACHE);
//! set NESTPLANE_TESTENV_SKIP to skip.
#![allow(clippy::expect_used)] // Helpers below are test code too.

use std::process::Command;

use nestplane_pki::{ControlPlaneBundle, ca_cert_hash};
use nestplane_testenv::components::{
    Etcd, Kubeconfigs, STARTUP, Tools, kubectl, start_apiserver, start_controller_manager, start_etcd, whoami,
};
use nestplane_testenv::process::{Running, TempDir, describe, free_port, run, stdout, wait_for};
use nestplane_testenv::{bundle_for, write_pki};

#[test]
fn etcd_apiserver_controller_manager_and_kubeadm_accept_the_pki() {
    let Some(t) = Tools::find() else { return };
    let dir = TempDir::new("control-plane");
    // The port first: the plan's kubeconfigs name the server.
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let (_, bundle) = bundle_for(&server);
    write_pki(&dir, &bundle);

    let mut etcd = start_etcd(&t, &dir, 2);
    etcd_authenticates_clients_by_ca(&t, &dir, &mut etcd);
    let mut apiserver = start_apiserver(&t, &dir, &etcd.urls, port);
    let kubeconfigs = Kubeconfigs::write(&dir, &bundle, &server);
    wait_for(&mut apiserver, STARTUP, || {
        let out = kubectl(&t, &kubeconfigs.admin, &["get", "--raw", "/readyz"]);
        (out.status.success() && stdout(&out) == "ok").then_some(())
    });

    client_certificates_name_their_users(&t, &kubeconfigs);
    service_account_tokens_verify(&t, &dir, &server, &kubeconfigs, &mut apiserver);
    front_proxy_identity_is_trusted(&t, &dir, &server);
    kubeadm_computes_the_same_discovery_hash(&t, &kubeconfigs, &bundle);
    controller_manager_signs_kubelet_certificates(&t, &dir, &kubeconfigs);
}

fn etcd_authenticates_clients_by_ca(t: &Tools, dir: &TempDir, etcd: &mut Etcd) {
    let out = etcd.ctl(t, dir, "apiserver-etcd-client", &["put", "nestplane", "pki"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = etcd.ctl(
        t,
        dir,
        "apiserver-etcd-client",
        &["get", "nestplane", "--print-value-only"],
    );
    assert_eq!(stdout(&out).trim(), "pki", "{}", describe(&out));
    // A client certificate from the cluster CA is no etcd client.
    let out = etcd.ctl(t, dir, "admin", &["get", "nestplane"]);
    assert!(!out.status.success(), "etcd must refuse a cluster-CA client");
    etcd.members.iter_mut().for_each(Running::assert_running);
}

fn client_certificates_name_their_users(t: &Tools, k: &Kubeconfigs) {
    for (config, user, group) in [
        (&k.admin, "kubernetes-admin", Some("system:masters")),
        (&k.controller_manager, "system:kube-controller-manager", None),
        (&k.scheduler, "system:kube-scheduler", None),
        (
            &k.kubelet_client,
            "kube-apiserver-kubelet-client",
            Some("kubeadm:cluster-admins"),
        ),
    ] {
        let (got_user, groups) = whoami(t, config, &[]);
        assert_eq!(got_user, user);
        if let Some(group) = group {
            assert!(groups.contains(&format!("\"{group}\"")), "{user} groups {groups}");
        }
    }
    // system:masters may do anything, without any RBAC binding.
    let out = kubectl(t, &k.admin, &["auth", "can-i", "*", "*"]);
    assert_eq!(stdout(&out).trim(), "yes", "{}", describe(&out));
}

fn service_account_tokens_verify(
    t: &Tools,
    dir: &TempDir,
    server: &str,
    k: &Kubeconfigs,
    apiserver: &mut Running,
) {
    // The namespace controller inside kube-apiserver creates kube-system shortly after readyz.
    wait_for(apiserver, STARTUP, || {
        let out = kubectl(
            t,
            &k.admin,
            &["-n", "kube-system", "create", "serviceaccount", "pki-probe"],
        );
        out.status.success().then_some(())
    });
    let out = kubectl(
        t,
        &k.admin,
        &["-n", "kube-system", "create", "token", "pki-probe"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let token = stdout(&out).trim().to_string();
    let header = token.split('.').next().unwrap_or_default();
    assert!(
        header.starts_with("eyJhbGciOiJFUzI1NiI"),
        "ES256 token header {header}"
    );
    // Authenticated by kube-apiserver with sa.pub, not by a client certificate.
    let token_only = dir.write("token-only.conf", "apiVersion: v1\nkind: Config\n");
    let ca = dir.0.join("ca.crt").display().to_string();
    let (user, _) = whoami(
        t,
        &token_only,
        &[
            "--server",
            server,
            "--certificate-authority",
            &ca,
            "--token",
            &token,
        ],
    );
    assert_eq!(user, "system:serviceaccount:kube-system:pki-probe");
}

/// An aggregated API server would see this: the front-proxy client certificate vouches for
/// the user in X-Remote-User.
fn front_proxy_identity_is_trusted(t: &Tools, dir: &TempDir, server: &str) {
    let out = run(Command::new(&t.curl)
        .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
        .arg("--cacert")
        .arg(dir.0.join("ca.crt"))
        .arg("--cert")
        .arg(dir.0.join("front-proxy-client.crt"))
        .arg("--key")
        .arg(dir.0.join("front-proxy-client.key"))
        .args(["-H", "X-Remote-User: alice", "-H", "X-Remote-Group: team-a"])
        .args(["-H", "Content-Type: application/json", "-X", "POST"])
        .args([
            "--data",
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        ])
        .arg(format!(
            "{server}/apis/authentication.k8s.io/v1/selfsubjectreviews"
        )));
    assert!(out.status.success(), "{}", describe(&out));
    let body: String = stdout(&out).split_whitespace().collect();
    assert!(body.contains(r#""username":"alice""#), "{body}");
    assert!(body.contains(r#""team-a""#), "{body}");
}

fn kubeadm_computes_the_same_discovery_hash(t: &Tools, k: &Kubeconfigs, bundle: &ControlPlaneBundle) {
    let out = run(Command::new(&t.kubeadm)
        .args(["token", "create", "--print-join-command", "--kubeconfig"])
        .arg(&k.admin));
    assert!(out.status.success(), "{}", describe(&out));
    let ours = ca_cert_hash(&bundle.ca.cert_pem).expect("hash");
    let command = stdout(&out);
    assert!(
        command.contains(&format!("--discovery-token-ca-cert-hash {ours}")),
        "kubeadm printed {command}, we computed {ours}"
    );
}

/// kube-controller-manager signs kubelet client certificates with the cluster CA.
fn controller_manager_signs_kubelet_certificates(t: &Tools, dir: &TempDir, k: &Kubeconfigs) {
    let mut kcm = start_controller_manager(t, dir, k);

    let key = dir.0.join("kubelet.key");
    let out = run(Command::new(&t.openssl)
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/O=system:nodes/CN=system:node:worker-0", "-keyout"])
        .arg(&key));
    assert!(out.status.success(), "{}", describe(&out));
    let csr = dir.write("kubelet.csr", &stdout(&out));
    let out = run(Command::new(&t.openssl).args(["base64", "-A", "-in"]).arg(&csr));
    assert!(out.status.success(), "{}", describe(&out));
    let csr_b64 = stdout(&out);
    let manifest = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: worker-0\n\
         spec:\n  request: {csr_b64}\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  \
         usages: [digital signature, client auth]\n"
    );
    let path = dir.write("csr.yaml", &manifest);
    let out = kubectl(t, &k.admin, &["create", "-f", &path.display().to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = kubectl(t, &k.admin, &["certificate", "approve", "worker-0"]);
    assert!(out.status.success(), "{}", describe(&out));
    let issued = wait_for(&mut kcm, STARTUP, || {
        let out = kubectl(
            t,
            &k.admin,
            &["get", "csr", "worker-0", "-o", "jsonpath={.status.certificate}"],
        );
        let text = stdout(&out);
        (!text.is_empty()).then_some(text)
    });
    let cert = dir.0.join("kubelet.crt.b64");
    std::fs::write(&cert, issued).expect("write");
    let out = run(Command::new(&t.openssl)
        .args(["base64", "-d", "-A", "-in"])
        .arg(&cert)
        .args(["-out"])
        .arg(dir.0.join("kubelet.crt")));
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(Command::new(&t.openssl)
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.0.join("ca.crt"))
        .arg(dir.0.join("kubelet.crt")));
    assert!(
        out.status.success(),
        "kubelet certificate chains to our CA: {}",
        describe(&out)
    );
    kcm.assert_running();
}
