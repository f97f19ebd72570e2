//! Log lines on stderr, as text or one JSON object per line, filtered by
//! `RUST_LOG` (default `info`). Stdout carries only the `READY` line.
//! Some of the web server's lines are shown at debug whatever the filter
//! (`demote.rs`: a client's bad request is not an error of ours).

use std::io::IsTerminal as _;

use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

mod demote;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    // The NATS client logs every event at info; the cluster logs what an
    // operator needs itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let lines = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(demote::Demote::new(lines))
        .init();
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
