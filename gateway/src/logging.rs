//! Log lines on stderr, as text or one JSON object per line, filtered by
//! `RUST_LOG` (default `info`). Stdout carries only the `READY` line.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    // The NATS client logs every event at info; the cluster logs what an
    // operator needs itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Reports a start-up error on one stderr line, in the requested format.
pub fn report_fatal(json: bool, message: &str) {
    if json {
        let line = serde_json::json!({"level": "ERROR", "message": message});
        eprintln!("{line}");
    } else {
        eprintln!("gateway: {message}");
    }
}
