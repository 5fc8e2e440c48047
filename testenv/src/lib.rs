//! Real etcd and kube-apiserver on loopback, with a throwaway PKI, for tests that need an API
//! server but no cluster: [`TestEnv`] for the operator's controller tests, the parts below it
//! for the PKI's interoperability tests.
//!
//! The binaries are the pinned ones `make binaries` (and `make up`) build into
//! `$NESTPLANE_CACHE`. Without them a test passes with a note that says so, so plain `cargo
//! test` needs none; `make test` sets [`process::REQUIRE_ENV`] and a missing binary fails there.
// Test support: a failed setup step should fail the test loudly.
#![allow(clippy::expect_used)]

pub mod components;
pub mod pki;
pub mod process;

use std::path::Path;

use nestplane_pki::ControlPlaneBundle;

pub use components::{Binaries, Etcd, Kubeconfigs, STARTUP, Tools, kubectl};
pub use pki::{SERVICE_CIDR, bundle, bundle_for, write_pki};
pub use process::{Running, TempDir, describe, stdout, tool, tools, wait_for};

/// A one-member etcd and a kube-apiserver on it, serving on loopback, stopped when dropped.
/// No controller manager, scheduler or kubelet runs: objects are stored and validated, and
/// nothing acts on them (no pods, no garbage collection).
pub struct TestEnv {
    // Fields drop in order: the processes stop before their directory is removed.
    apiserver: Running,
    etcd: Etcd,
    kubeconfigs: Kubeconfigs,
    server: String,
    bundle: ControlPlaneBundle,
    binaries: Binaries,
    dir: TempDir,
}

impl TestEnv {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers ok; `None` (after saying
    /// how to get them) when the binaries are missing. Blocks for the few seconds that takes.
    pub fn start(test: &str) -> Option<TestEnv> {
        let binaries = Binaries::find()?;
        let dir = TempDir::new(test);
        // The port first: the plan's kubeconfigs name the server.
        let port = process::free_port();
        let server = format!("https://127.0.0.1:{port}");
        let (_, bundle) = bundle_for(&server);
        write_pki(&dir, &bundle);
        let etcd = components::start_etcd(&binaries, &dir, 1);
        let mut apiserver = components::start_apiserver(&binaries, &dir, &etcd.urls, port);
        let kubeconfigs = Kubeconfigs::write(&dir, &bundle, &server);
        wait_for(&mut apiserver, STARTUP, || {
            let out = kubectl(&binaries, &kubeconfigs.admin, &["get", "--raw", "/readyz"]);
            (out.status.success() && stdout(&out) == "ok").then_some(())
        });
        Some(TestEnv {
            apiserver,
            etcd,
            kubeconfigs,
            server,
            bundle,
            binaries,
            dir,
        })
    }

    /// A kubeconfig for `kubernetes-admin` (group `system:masters`): may do anything.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfigs.admin
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The throwaway PKI the components run on.
    pub fn bundle(&self) -> &ControlPlaneBundle {
        &self.bundle
    }

    /// kubectl as the admin, for what a test would otherwise type.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        kubectl(&self.binaries, &self.kubeconfigs.admin, args)
    }

    /// Fails the test with the process's log if etcd or the API server has exited.
    pub fn assert_running(&mut self) {
        self.etcd.members.iter_mut().for_each(Running::assert_running);
        self.apiserver.assert_running();
    }

    /// The directory holding the PKI, the kubeconfigs and each process's log.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// A client for the API server as the admin.
    #[cfg(feature = "client")]
    pub async fn client(&self) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfigs.admin).expect("admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("admin kubeconfig");
        kube::Client::try_from(config).expect("client")
    }
}
