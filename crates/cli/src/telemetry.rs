//! Logging set-up shared by every subcommand.

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber writing to stderr, filtered by `RUST_LOG` (default
/// `default_level`); `IRONEDGE_LOG_FORMAT=json` switches to one JSON object per line for log
/// collectors.
pub(crate) fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("IRONEDGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    // A second init (tests calling main twice) is harmless, so the error is ignored.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
