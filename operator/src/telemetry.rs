//! Logging: JSON for log shippers (NESTPLANE_LOG_FORMAT=json) or text; filter from RUST_LOG.
use tracing_subscriber::EnvFilter;

pub fn init() {
    // kube's client logs every failed request at error level; the readyz probe of a hosted API
    // server that is still starting fails by design, and real failures come back as our errors.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("NESTPLANE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().with_current_span(true).init();
    } else {
        // Colours only on a terminal: escape codes in a container's log are noise.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
