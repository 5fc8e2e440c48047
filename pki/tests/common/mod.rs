//! Helpers for the interoperability tests: find tools, run them, clean up after them.
//! A test whose tools are missing passes with a note, so `cargo test` needs none of them.
#![allow(dead_code)]
// Each test file uses a different part.
// Test-only helpers: a failed setup step should fail the test loudly.
#![allow(clippy::expect_used)]

pub mod components;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nestplane_pki::{CaRole, CertKeyPair, ControlPlaneBundle, Plan, PlanInput, Validity, plan};
use time::OffsetDateTime;

/// `name` from PATH, or from `$NESTPLANE_CACHE/*/bin` where `make` installs the pinned binaries.
pub fn tool(name: &str) -> Option<PathBuf> {
    if std::env::var_os("NESTPLANE_PKI_SKIP_INTEROP").is_some() {
        return None;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cache = std::env::var_os("NESTPLANE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/nestplane")));
    let mut cached: Vec<PathBuf> = cache
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
        .collect();
    cached.sort();
    on_path.into_iter().chain(cached).find(|p| p.is_file())
}

/// Every tool, or `None` after saying which is missing.
pub fn tools<const N: usize>(names: [&str; N]) -> Option<[PathBuf; N]> {
    let found = names.map(tool);
    if let Some(i) = found.iter().position(Option::is_none) {
        eprintln!(
            "{} not found (or NESTPLANE_PKI_SKIP_INTEROP set); skipped",
            names[i]
        );
        return None;
    }
    Some(found.map(|p| p.expect("checked")))
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("nestplane-pki-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    /// Writes `contents` to `name` and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// Writes `<name>.crt` and `<name>.key`.
    pub fn write_pair(&self, name: &str, pair: &CertKeyPair) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.crt"), &pair.cert_pem),
            self.write(&format!("{name}.key"), &pair.key_pem),
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process this test started, killed when the test ends.
pub struct Running {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    pub fn spawn(name: &str, command: &mut Command, dir: &TempDir) -> Self {
        let log = dir.0.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Running {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The last lines of its output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.log_tail());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Polls until `ready` returns `Some`, while `process` keeps running.
pub fn wait_for<T>(process: &mut Running, timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        process.assert_running();
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "{} not ready after {timeout:?}:\n{}",
            process.name,
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The operator's plan for a cluster `demo` whose API server is reached at `server` (both from
/// outside and by its components) and whose one etcd member is `demo-etcd-0.demo-etcd`, issued
/// whole. External tools judge validity by the real clock, so these certificates start now.
pub fn bundle_for(server: &str) -> (Plan, ControlPlaneBundle) {
    let input = PlanInput {
        cluster: "demo".into(),
        service_cidr: SERVICE_CIDR.into(),
        dns_domain: "cluster.local".into(),
        apiserver_service_names: vec!["demo-apiserver".into()],
        endpoint_host: "127.0.0.1".into(),
        extra_sans: Vec::new(),
        etcd_dns_names: vec!["demo-etcd-0.demo-etcd".into()],
        external_server: server.into(),
        internal_server: server.into(),
    };
    let plan = plan(&input).expect("plan");
    let validity = Validity {
        now: OffsetDateTime::now_utc(),
        ca: time::Duration::days(3650),
        leaf: time::Duration::days(365),
    };
    let bundle = ControlPlaneBundle::generate(&plan, validity).expect("bundle");
    (plan, bundle)
}

/// For tests that start no API server.
pub fn bundle() -> (Plan, ControlPlaneBundle) {
    bundle_for("https://127.0.0.1:6443")
}

/// The hosted cluster's service CIDR, as kube-apiserver is started with it.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Writes the CAs as `ca.crt`, `etcd/ca.crt`, `front-proxy-ca.crt` and every certificate under
/// its kubeadm name, as kubeadm lays out /etc/kubernetes/pki.
pub fn write_pki(dir: &TempDir, bundle: &ControlPlaneBundle) {
    for role in CaRole::ALL {
        dir.write_pair(role.file_name(), bundle.ca(role));
    }
    for (name, pair) in bundle.certificates() {
        dir.write_pair(name, pair);
    }
    dir.write("sa.key", &bundle.service_account.private_key_pem);
    dir.write("sa.pub", &bundle.service_account.public_key_pem);
}
