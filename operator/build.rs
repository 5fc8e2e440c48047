//! Sets `NESTPLANE_VERSION` for the binary (`nestplane --version`): the package version unless
//! the build environment sets another, e.g. a release tag or a test's rebuilt image.
fn main() {
    println!("cargo:rerun-if-env-changed=NESTPLANE_VERSION");
    let version = std::env::var("NESTPLANE_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    println!("cargo:rustc-env=NESTPLANE_VERSION={version}");
}
