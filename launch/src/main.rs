//! `nestplane-launch`: starts a control-plane component the moment what it needs accepts
//! connections, in the component's own container.
//!
//! ```text
//! nestplane-launch install <dir>                        copy this binary into <dir>
//! nestplane-launch wait-for [--any] <host:port>... [-- <program> [<arg>...]]
//! ```
//!
//! An init container from the nestplane image runs `install` into an emptyDir while the
//! component's image is prepared; the component's container then runs
//! `/<dir>/nestplane-launch wait-for <api-server pods>:<port> -- kube-controller-manager …`, which
//! tries a TCP connect every 100 ms and then `exec`s the component in place. kube-apiserver runs
//! `wait-for --any <member>:2379 ...` on etcd's members: started before one listens, its etcd
//! client's reconnects back off (gRPC's growing delays) and it could notice etcd seconds late.
//! A wait in an init container instead would put the kubelet's noticing of its exit (a PLEG
//! relist, up to a second) and the main container's creation on the critical path; the
//! component's own retries grow to seconds (client-go's reflector backoff).
//!
//! The binary is linked statically (`+crt-static`: see `hack/operator-image.sh` and the
//! Dockerfile), so it runs in images that hold nothing but their one program. Arguments are
//! parsed by hand: the grammar is two verbs and a `--`, and every dependency here would be
//! linked into other projects' images.
use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// How often each address is tried, and how long one connect may take.
const INTERVAL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a wait that goes on is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The name `install` gives the copy.
const BINARY_NAME: &str = "nestplane-launch";

#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error(
        "usage: {BINARY_NAME} install <dir> | wait-for [--any] <host:port>... [-- <program> [<arg>...]]: {0}"
    )]
    Usage(&'static str),
    #[error("finding this executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("copying {from} to {to}: {source}")]
    Install {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {program:?}: {source}")]
    Exec {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, PartialEq)]
enum Invocation {
    Install {
        dir: PathBuf,
    },
    WaitFor {
        addresses: Vec<String>,
        /// One address accepting is enough (etcd's members: its client finds the rest).
        any: bool,
        then: Vec<OsString>,
    },
}

fn parse(args: Vec<OsString>) -> Result<Invocation, LaunchError> {
    let mut args = args.into_iter();
    match args.next().as_ref().and_then(|verb| verb.to_str()) {
        Some("install") => match (args.next(), args.next()) {
            (Some(dir), None) => Ok(Invocation::Install { dir: dir.into() }),
            _ => Err(LaunchError::Usage("install takes one directory")),
        },
        Some("wait-for") => {
            let mut addresses = Vec::new();
            let mut then = Vec::new();
            let mut any = false;
            let mut after_separator = false;
            for arg in args {
                if after_separator {
                    then.push(arg);
                } else if arg == "--" {
                    after_separator = true;
                } else if arg == "--any" && addresses.is_empty() {
                    any = true;
                } else {
                    let address = arg
                        .into_string()
                        .map_err(|_| LaunchError::Usage("an address is not UTF-8"))?;
                    if !address.contains(':') {
                        return Err(LaunchError::Usage("an address is host:port"));
                    }
                    addresses.push(address);
                }
            }
            if addresses.is_empty() {
                return Err(LaunchError::Usage("wait-for needs at least one address"));
            }
            if after_separator && then.is_empty() {
                return Err(LaunchError::Usage("nothing to run after --"));
            }
            Ok(Invocation::WaitFor { addresses, any, then })
        }
        _ => Err(LaunchError::Usage("unknown command")),
    }
}

/// Copies this executable to `<dir>/nestplane-launch`, executable by anyone (the component may
/// run as another user than the init container).
fn install(dir: &Path) -> Result<PathBuf, LaunchError> {
    let from = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
    let to = dir.join(BINARY_NAME);
    let copy = || -> std::io::Result<()> {
        std::fs::copy(&from, &to)?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
    };
    copy().map_err(|source| LaunchError::Install {
        from: from.clone(),
        to: to.clone(),
        source,
    })?;
    Ok(to)
}

/// Whether one of the addresses `address` resolves to accepts a TCP connection now. Resolved on
/// every try: a headless Service's name appears only once its pod has an address.
fn accepts(address: &str) -> Result<SocketAddr, String> {
    let resolved = address.to_socket_addrs().map_err(|e| format!("resolving: {e}"))?;
    let mut last = String::from("resolves to no address");
    for candidate in resolved {
        match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(candidate),
            Err(e) => last = format!("{candidate}: {e}"),
        }
    }
    Err(last)
}

/// Returns once every address (with `any`, one of them) has accepted a connection, however
/// long that takes: a failing container would be restarted with the kubelet's growing delays.
fn wait_for(addresses: &[String], any: bool) {
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    let mut waiting: Vec<&String> = addresses.iter().collect();
    loop {
        let mut why_not = Vec::new();
        waiting.retain(|address| match accepts(address) {
            Ok(reached) => {
                eprintln!(
                    "{address} ({reached}) accepts connections after {} ms",
                    started.elapsed().as_millis()
                );
                false
            }
            Err(why) => {
                why_not.push(format!("{address}: {why}"));
                true
            }
        });
        if waiting.is_empty() || (any && waiting.len() < addresses.len()) {
            return;
        }
        if Instant::now() >= next_report {
            eprintln!(
                "waiting for {} for {} s ({})",
                if any { "any of" } else { "all of" },
                started.elapsed().as_secs(),
                why_not.join("; ")
            );
            next_report += REPORT_EVERY;
        }
        std::thread::sleep(INTERVAL);
    }
}

fn run(invocation: Invocation) -> Result<(), LaunchError> {
    match invocation {
        Invocation::Install { dir } => {
            let to = install(&dir)?;
            eprintln!("installed {}", to.display());
            Ok(())
        }
        Invocation::WaitFor { addresses, any, then } => {
            wait_for(&addresses, any);
            let Some((program, args)) = then.split_first() else {
                return Ok(());
            };
            // Replaces this process: the component keeps its PID, signals and exit code.
            let source = Command::new(program).args(args).exec();
            Err(LaunchError::Exec {
                program: program.clone(),
                source,
            })
        }
    }
}

fn main() -> ExitCode {
    match parse(std::env::args_os().skip(1).collect()).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{BINARY_NAME}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_addresses_and_the_program_after_the_separator() {
        assert_eq!(
            parse(args(&["wait-for", "a:1", "b:2", "--", "kube-scheduler", "--v=2"])).expect("parse"),
            Invocation::WaitFor {
                addresses: vec!["a:1".into(), "b:2".into()],
                any: false,
                then: args(&["kube-scheduler", "--v=2"]),
            }
        );
        assert_eq!(
            parse(args(&["wait-for", "--any", "a:1", "b:2"])).expect("parse"),
            Invocation::WaitFor {
                addresses: vec!["a:1".into(), "b:2".into()],
                any: true,
                then: vec![],
            }
        );
        assert_eq!(
            parse(args(&["install", "/launch"])).expect("parse"),
            Invocation::Install {
                dir: "/launch".into()
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            &[][..],
            &["wait-for"],
            &["wait-for", "--", "x"],
            &["wait-for", "no-port"],
            &["wait-for", "a:1", "--"],
            &["wait-for", "--any"],
            &["wait-for", "a:1", "--any"],
            &["install"],
            &["install", "a", "b"],
            &["start", "a:1"],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    /// An address nothing listens on (yet).
    fn free_address() -> String {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").to_string()
    }

    fn spawn_wait(addresses: &[&String], any: bool) -> std::thread::JoinHandle<()> {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || wait_for(&addresses, any))
    }

    fn returns_within(waiting: &std::thread::JoinHandle<()>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !waiting.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    #[test]
    fn waits_until_every_address_listens() {
        let (first, second) = (free_address(), free_address());
        let waiting = spawn_wait(&[&first, &second], false);
        let _first = std::net::TcpListener::bind(&first).expect("bind first");
        assert!(
            !returns_within(&waiting, Duration::from_millis(400)),
            "returned before {second} listened"
        );
        let _second = std::net::TcpListener::bind(&second).expect("bind second");
        assert!(
            returns_within(&waiting, Duration::from_secs(2)),
            "still waiting 2 s after both listened"
        );
    }

    #[test]
    fn with_any_one_listener_is_enough() {
        let (first, second) = (free_address(), free_address());
        let waiting = spawn_wait(&[&first, &second], true);
        assert!(
            !returns_within(&waiting, Duration::from_millis(400)),
            "returned before anything listened"
        );
        let _second = std::net::TcpListener::bind(&second).expect("bind second");
        assert!(
            returns_within(&waiting, Duration::from_secs(2)),
            "still waiting 2 s after {second} listened"
        );
    }

    #[test]
    fn installs_a_runnable_copy_of_itself() {
        let dir = std::env::temp_dir().join(format!("nestplane-launch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let copy = install(&dir).expect("install");
        let mode = std::fs::metadata(&copy).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read(&copy).expect("read copy"),
            std::fs::read(std::env::current_exe().expect("exe")).expect("read self")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
