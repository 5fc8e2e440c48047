//! Finding the pinned binaries, running them, and cleaning up after them.
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nestplane_pki::CertKeyPair;

/// Set by `make test`, which builds the binaries first: a missing one fails the test there
/// instead of skipping it.
pub const REQUIRE_ENV: &str = "NESTPLANE_TESTENV_REQUIRED";
/// Skips every test that needs the binaries, even where they are installed.
pub const SKIP_ENV: &str = "NESTPLANE_TESTENV_SKIP";

/// `name` from PATH, or from `$NESTPLANE_CACHE/*/bin` where `make` installs the pinned binaries.
pub fn tool(name: &str) -> Option<PathBuf> {
    if std::env::var_os(SKIP_ENV).is_some() {
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

/// `name`, or `None` after saying how to get it. Plain `cargo test` needs none of the binaries,
/// so a test without them passes with that note; under `make test` (which builds them) it fails.
pub fn required_tool(name: &str) -> Option<PathBuf> {
    let found = tool(name);
    if found.is_none() {
        let why = if std::env::var_os(SKIP_ENV).is_some() {
            format!("{SKIP_ENV} is set")
        } else {
            format!(
                "{name} is neither on PATH nor in $NESTPLANE_CACHE/*/bin (default ~/.cache/nestplane); \
                 `make binaries` (or `make up`) builds the pinned binaries there"
            )
        };
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "{why} ({REQUIRE_ENV} is set, so this test may not be skipped)"
        );
        eprintln!("{why}; skipped");
    }
    found
}

/// Every tool, or `None` after saying which is missing and how to get it.
pub fn tools<const N: usize>(names: [&str; N]) -> Option<[PathBuf; N]> {
    let mut found = Vec::with_capacity(N);
    for name in names {
        found.push(required_tool(name)?);
    }
    found.try_into().ok()
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("nestplane-testenv-{test}-{}", std::process::id()));
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
