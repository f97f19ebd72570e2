//! The `gateway` binary: read the configuration, start logging, run until
//! drained. Everything else lives in the library.

use std::process::ExitCode;

use gateway::config::{self, ParseError};
use gateway::logging;

/// Replies and frames are short-lived allocations, and a published frame
/// is often freed on another worker than the one that made it; mimalloc's
/// thread-local free lists make both markedly cheaper than the system
/// allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let json = config::wants_json_logs(&argv);
    let args = match config::parse(&argv) {
        Ok(args) => args,
        Err(ParseError::Info(help)) => {
            // --help and --version.
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Invalid(line)) => {
            logging::report_fatal(json, &line);
            return ExitCode::from(2);
        }
    };
    let config = match args.validate() {
        Ok(config) => config,
        Err(problems) => {
            logging::report_fatal(json, &problems);
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    match gateway::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A listener that cannot be bound, like every other start-up
            // error: one `gateway: ...` line (or one JSON object).
            logging::report_fatal(json, &format!("{err:#}"));
            ExitCode::from(1)
        }
    }
}
