//! The `gateway` binary: read the configuration, start logging, run until
//! drained. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser as _;
use gateway::config::{self, Args};
use gateway::logging;

/// Every connection allocates a message per delivered frame; mimalloc's
/// thread-local free lists make that markedly cheaper than the system
/// allocator (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let json = config::wants_json_logs(&argv);
    let args = match Args::try_parse_from(&argv) {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            logging::report_fatal(json, first.trim_start_matches("error: "));
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
            tracing::error!("{err:#}");
            ExitCode::from(1)
        }
    }
}
