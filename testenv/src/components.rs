//! The control-plane components, started on a bundle written out as kubeadm lays out its PKI.
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nestplane_pki::{ControlPlaneBundle, KubeconfigRole, KubeconfigSpec, LeafRole, kubeconfig};

use crate::pki::SERVICE_CIDR;
use crate::process::{Running, TempDir, describe, free_port, required_tool, run, stdout, wait_for};

pub const STARTUP: Duration = Duration::from_secs(180);

/// The binaries an API server on etcd needs (and kubectl to see it is ready).
pub struct Binaries {
    pub etcd: PathBuf,
    pub etcdctl: PathBuf,
    pub apiserver: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    /// Every binary, or `None` after saying which is missing and how to get it.
    pub fn find() -> Option<Self> {
        Some(Binaries {
            etcd: required_tool("etcd")?,
            etcdctl: required_tool("etcdctl")?,
            apiserver: required_tool("kube-apiserver")?,
            kubectl: required_tool("kubectl")?,
        })
    }
}

/// [`Binaries`] and the other tools the PKI's interoperability tests run.
pub struct Tools {
    pub control_plane: Binaries,
    pub controller_manager: PathBuf,
    pub kubeadm: PathBuf,
    pub openssl: PathBuf,
    pub curl: PathBuf,
}

impl Tools {
    /// Every tool, or `None` after saying which is missing and how to get it.
    pub fn find() -> Option<Self> {
        Some(Tools {
            control_plane: Binaries::find()?,
            controller_manager: required_tool("kube-controller-manager")?,
            kubeadm: required_tool("kubeadm")?,
            openssl: required_tool("openssl")?,
            curl: required_tool("curl")?,
        })
    }
}

// So that `start_etcd(&tools, ..)` and `tools.kubectl` read the same whichever set a test holds.
impl Deref for Tools {
    type Target = Binaries;
    fn deref(&self) -> &Binaries {
        &self.control_plane
    }
}

/// `members` etcd members with TLS for clients and peers, as the operator runs them.
pub fn start_etcd(t: &Binaries, dir: &TempDir, members: usize) -> Etcd {
    let members: Vec<(String, u16, u16)> = (0..members)
        .map(|i| (format!("m{i}"), free_port(), free_port()))
        .collect();
    let initial_cluster = members
        .iter()
        .map(|(name, _, peer)| format!("{name}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let pki = |name: &str| dir.0.join(name);
    let mut running: Vec<Running> = members
        .iter()
        .map(|(name, client, peer)| {
            let mut command = Command::new(&t.etcd);
            command
                .args(["--name", name, "--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new", "--unsafe-no-fsync"])
                .arg("--data-dir")
                .arg(dir.0.join(format!("etcd-{name}")))
                .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=https://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
                .arg(format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"))
                .args(["--client-cert-auth", "--peer-client-cert-auth"])
                .arg("--trusted-ca-file")
                .arg(pki("etcd/ca.crt"))
                .arg("--cert-file")
                .arg(pki("etcd/server.crt"))
                .arg("--key-file")
                .arg(pki("etcd/server.key"))
                .arg("--peer-trusted-ca-file")
                .arg(pki("etcd/ca.crt"))
                .arg("--peer-cert-file")
                .arg(pki("etcd/peer.crt"))
                .arg("--peer-key-file")
                .arg(pki("etcd/peer.key"));
            Running::spawn(&format!("etcd {name}"), &mut command, dir)
        })
        .collect();
    let urls = members
        .iter()
        .map(|(_, client, _)| format!("https://127.0.0.1:{client}"))
        .collect::<Vec<_>>()
        .join(",");
    let etcd = Etcd {
        members: Vec::new(),
        urls,
    };
    // Every member healthy means they reached each other with the peer certificate. Asked with
    // the server certificate, as the operator's etcd probes ask.
    wait_for(&mut running[0], STARTUP, || {
        etcd.ctl(t, dir, "etcd/server", &["endpoint", "health", "--cluster"])
            .status
            .success()
            .then_some(())
    });
    Etcd {
        members: running,
        ..etcd
    }
}

pub struct Etcd {
    pub members: Vec<Running>,
    /// Client URLs, comma-separated.
    pub urls: String,
}

impl Etcd {
    /// etcdctl authenticated by the certificate `<client>.crt` under `dir`.
    pub fn ctl(&self, t: &Binaries, dir: &TempDir, client: &str, args: &[&str]) -> Output {
        run(Command::new(&t.etcdctl)
            .args([
                "--endpoints",
                &self.urls,
                "--dial-timeout=3s",
                "--command-timeout=5s",
            ])
            .arg("--cacert")
            .arg(dir.0.join("etcd/ca.crt"))
            .arg("--cert")
            .arg(dir.0.join(format!("{client}.crt")))
            .arg("--key")
            .arg(dir.0.join(format!("{client}.key")))
            .args(args))
    }
}

/// kube-apiserver on `port` with every certificate and key of the bundle, flags as kubeadm
/// sets them.
pub fn start_apiserver(t: &Binaries, dir: &TempDir, etcd_urls: &str, port: u16) -> Running {
    let file = |name: &str| format!("{}", dir.0.join(name).display());
    let args = [
        format!("--etcd-servers={etcd_urls}"),
        format!("--etcd-cafile={}", file("etcd/ca.crt")),
        format!("--etcd-certfile={}", file("apiserver-etcd-client.crt")),
        format!("--etcd-keyfile={}", file("apiserver-etcd-client.key")),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--cert-dir={}", file("apiserver-generated")),
        format!("--tls-cert-file={}", file("apiserver.crt")),
        format!("--tls-private-key-file={}", file("apiserver.key")),
        format!("--client-ca-file={}", file("ca.crt")),
        format!(
            "--kubelet-client-certificate={}",
            file("apiserver-kubelet-client.crt")
        ),
        format!("--kubelet-client-key={}", file("apiserver-kubelet-client.key")),
        format!("--proxy-client-cert-file={}", file("front-proxy-client.crt")),
        format!("--proxy-client-key-file={}", file("front-proxy-client.key")),
        format!("--requestheader-client-ca-file={}", file("front-proxy-ca.crt")),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", file("sa.pub")),
        format!("--service-account-signing-key-file={}", file("sa.key")),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-bootstrap-token-auth=true".into(),
        // kube-proxy (an add-on nestplane writes into hosted clusters) runs privileged.
        "--allow-privileged=true".into(),
    ];
    Running::spawn("kube-apiserver", Command::new(&t.apiserver).args(args), dir)
}

/// kube-controller-manager signing with the cluster CA, as the join flow needs.
pub fn start_controller_manager(t: &Tools, dir: &TempDir, k: &Kubeconfigs) -> Running {
    let config = k.controller_manager.display().to_string();
    let file = |name: &str| dir.0.join(name).display().to_string();
    let args = [
        format!("--kubeconfig={config}"),
        format!("--authentication-kubeconfig={config}"),
        format!("--authorization-kubeconfig={config}"),
        format!("--cluster-signing-cert-file={}", file("ca.crt")),
        format!("--cluster-signing-key-file={}", file("ca.key")),
        format!("--root-ca-file={}", file("ca.crt")),
        format!("--service-account-private-key-file={}", file("sa.key")),
        "--use-service-account-credentials=true".into(),
        "--controllers=csrsigning,csrapproving,bootstrapsigner,tokencleaner".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port()),
        format!("--cert-dir={}", file("kcm-generated")),
    ];
    Running::spawn(
        "kube-controller-manager",
        Command::new(&t.controller_manager).args(args),
        dir,
    )
}

pub struct Kubeconfigs {
    pub admin: PathBuf,
    pub controller_manager: PathBuf,
    pub scheduler: PathBuf,
    pub kubelet_client: PathBuf,
}

impl Kubeconfigs {
    /// The bundle's kubeconfigs as issued, and one for the API server's kubelet client identity
    /// pointing at `server`.
    pub fn write(dir: &TempDir, bundle: &ControlPlaneBundle, server: &str) -> Self {
        let write = |role: KubeconfigRole| {
            let issued = bundle.kubeconfig(role).expect("kubeconfig");
            dir.write(&format!("{}.conf", role.file_name()), &issued.kubeconfig)
        };
        let kubelet_client = kubeconfig(&KubeconfigSpec {
            cluster_name: "demo",
            server,
            ca_cert_pem: &bundle.ca.cert_pem,
            user_name: "apiserver-kubelet-client",
            client: bundle.leaf(LeafRole::ApiServerKubeletClient).expect("leaf"),
        });
        Kubeconfigs {
            admin: write(KubeconfigRole::Admin),
            controller_manager: write(KubeconfigRole::ControllerManager),
            scheduler: write(KubeconfigRole::Scheduler),
            kubelet_client: dir.write("apiserver-kubelet-client.conf", &kubelet_client),
        }
    }
}

pub fn kubectl(t: &Binaries, config: &Path, args: &[&str]) -> Output {
    run(Command::new(&t.kubectl)
        .arg("--kubeconfig")
        .arg(config)
        .arg("--request-timeout=10s")
        .args(args))
}

/// The user and groups (JSON) kube-apiserver sees.
pub fn whoami(t: &Binaries, config: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["auth", "whoami", "-o"];
    args.push("jsonpath={.status.userInfo.username} {.status.userInfo.groups}");
    args.extend(extra);
    let out = kubectl(t, config, &args);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    let (user, groups) = text.split_once(' ').unwrap_or((&text, ""));
    (user.to_string(), groups.to_string())
}
