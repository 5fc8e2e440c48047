//! The built binary, as a container runs it: it waits, then becomes the program it was given.
use std::net::TcpListener;
use std::process::Command;

const LAUNCH: &str = env!("CARGO_BIN_EXE_nestplane-launch");

#[test]
fn becomes_the_program_once_the_address_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    // The program reports its own PID and exit code: both must be the launcher's, as `exec` gives.
    let child = Command::new(LAUNCH)
        .args(["wait-for", &address, "--", "/bin/sh", "-c", "echo $$; exit 7"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        output.status.code(),
        Some(7),
        "the program's exit code passes through"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), pid.to_string());
}

#[test]
fn a_program_that_cannot_start_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let output = Command::new(LAUNCH)
        .args(["wait-for", &address, "--", "/nonexistent/component"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("starting \"/nonexistent/component\""),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bad_usage_is_refused() {
    let output = Command::new(LAUNCH).args(["wait-for"]).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
}
