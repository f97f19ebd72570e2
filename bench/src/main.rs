//! `gateway-bench`: drives one scenario against a running server and prints
//! one JSON line of results on stdout (progress, if any, goes to stderr).
//! `gateway-bench report FILE...` turns result lines into the comparison
//! table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use gateway_bench::frame::Framing;
use gateway_bench::report;
use gateway_bench::scenario::{self, Ctx, Outcome};

/// Load generator for the gateway (and its baseline).
#[derive(Debug, Parser)]
#[command(name = "gateway-bench", version)]
struct Cli {
    /// Client port of the server.
    #[arg(long, global = true)]
    target: Option<SocketAddr>,
    /// Admin HTTP port (for /metrics and the admin API).
    #[arg(long, global = true)]
    admin: Option<SocketAddr>,
    /// Frame format the server uses.
    #[arg(long, global = true, value_enum, default_value_t = Framing::Lines)]
    framing: Framing,
    /// What carries the clients: TCP with `--framing`, or WebSocket (then
    /// `--target` is the gateway's `--ws-listen` address, path `/ws`).
    #[arg(long, global = true, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    /// Measured seconds of a timed scenario.
    #[arg(long, global = true, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measured part.
    #[arg(long, global = true, default_value_t = 2.0)]
    warmup: f64,
    /// Server process id, for its VmRSS.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Name of the server in the result line (e.g. gateway, baseline).
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Name of a variant of the scenario in the result line (e.g. pool-off).
    #[arg(long, global = true)]
    variant: Option<String>,
    /// Name of the server configuration in the result line (e.g. pinned,
    /// default, workers-2); the report prints one table per configuration.
    #[arg(long, global = true)]
    config: Option<String>,
    /// Load generator threads (default: the CPUs this process may use).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Most bytes a client takes from its socket in one read (default: the
    /// room in its 16 KiB buffer, at least 4 KiB).
    #[arg(long, global = true, value_name = "BYTES")]
    read_buffer: Option<usize>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// Speak TLS to the target, trusting the CA certificate in this PEM
    /// file (the server's certificate must be for `localhost`).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    /// TCP, framed by `--framing`.
    Tcp,
    /// WebSocket, one message per frame.
    Ws,
}

impl Cli {
    /// The framing the clients speak: `--framing`, or WebSocket messages.
    fn wire(&self) -> Framing {
        match self.transport {
            TransportArg::Tcp => self.framing,
            TransportArg::Ws => Framing::WebSocket,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Connections keeping PINGs in flight: messages/s and round-trip latency.
    Echo(scenario::echo::EchoArgs),
    /// connect, HELLO, QUIT, EOF in loops: cycles/s and pool reuse.
    Churn(scenario::churn::ChurnArgs),
    /// Publishers to one topic with many subscribers: deliveries/s, order.
    Fanout(scenario::fanout::FanoutArgs),
    /// Fanout with subscribers spread over cluster nodes: deliveries/s and
    /// NATS messages per publish.
    Cluster(scenario::cluster::ClusterArgs),
    /// Idle subscribed connections: server memory per connection.
    Idle(scenario::idle::IdleArgs),
    /// Data pushed to non-reading clients, then kicked: bytes lost.
    Kick(scenario::kick::KickArgs),
    /// Backends publishing through the admin API, connections kept alive or
    /// one per request: publishes/s and CPU per publish.
    Admin(scenario::admin::AdminArgs),
    /// Clients that leave, miss messages and all come back at once with
    /// their positions (needs --history-size): recovery time, all live.
    Recover(scenario::recover::RecoverArgs),
    /// One load-generator process of a cluster run over several processes,
    /// steered by JSON commands on stdin (bench/cluster_scale.py).
    Swarm,
    /// Print the gateway/baseline table from result lines.
    Report {
        /// Leave the targets and verdicts out (a quick run's 2-second cases
        /// are too short for them to mean anything).
        #[arg(long)]
        no_verdicts: bool,
        /// Files of JSON result lines.
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Report { files, no_verdicts } = &cli.cmd {
        return match report::print_files(files, !no_verdicts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway-bench report: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Cmd::Swarm = cli.cmd {
        return match rt.block_on(gateway_bench::swarm::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway-bench swarm: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (line, code) = rt.block_on(run(&cli));
    emit(&line);
    code
}

#[allow(clippy::print_stdout)]
fn emit(line: &Value) {
    println!("{line}");
}

async fn run(cli: &Cli) -> (Value, ExitCode) {
    let name = match &cli.cmd {
        Cmd::Echo(_) => "echo",
        Cmd::Churn(_) => "churn",
        Cmd::Fanout(_) => "fanout",
        Cmd::Cluster(_) => "cluster",
        Cmd::Idle(_) => "idle",
        Cmd::Kick(_) => "kick",
        Cmd::Admin(_) => "admin",
        Cmd::Recover(_) => "recover",
        Cmd::Report { .. } => "report",
        Cmd::Swarm => "swarm",
    };
    let mut line = json!({
        "scenario": name,
        "server": cli.label,
        "variant": cli.variant,
        "config": cli.config,
        "framing": cli.wire().as_str(),
        "transport": match (cli.transport, cli.tls_ca.is_some()) {
            (TransportArg::Tcp, false) => "tcp",
            (TransportArg::Tcp, true) => "tls",
            (TransportArg::Ws, false) => "ws",
            (TransportArg::Ws, true) => "wss",
        },
        "threads": cli.threads,
        "read_buffer": cli.read_buffer,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    match scenario_run(cli).await {
        Ok(o) => {
            let ok = o.failures.is_empty();
            for f in &o.failures {
                eprintln!("gateway-bench {name}: {f}");
            }
            line["params"] = o.params;
            line["results"] = o.results;
            line["failures"] = json!(o.failures);
            line["ok"] = json!(ok);
            let code = if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
            (line, code)
        }
        Err(e) => {
            eprintln!("gateway-bench {name}: {e:#}");
            line["ok"] = json!(false);
            line["error"] = json!(format!("{e:#}"));
            (line, ExitCode::FAILURE)
        }
    }
}

async fn scenario_run(cli: &Cli) -> Result<Outcome> {
    let target = cli.target.context("--target ADDR is required")?;
    if !(cli.duration > 0.0 && cli.duration.is_finite() && cli.warmup >= 0.0) {
        bail!("--duration must be positive and --warmup not negative");
    }
    let ctx = Ctx {
        target,
        admin: cli.admin,
        framing: cli.wire(),
        duration: Duration::from_secs_f64(cli.duration),
        warmup: Duration::from_secs_f64(cli.warmup),
        pid: cli.pid,
        progress: !cli.quiet,
        tls: cli
            .tls_ca
            .as_deref()
            .map(gateway_bench::net::tls_connector)
            .transpose()?
            .map(scenario::Tls),
        read_buffer: cli.read_buffer,
    };
    match &cli.cmd {
        Cmd::Echo(a) => scenario::echo::run(&ctx, a).await,
        Cmd::Churn(a) => scenario::churn::run(&ctx, a).await,
        Cmd::Fanout(a) => scenario::fanout::run(&ctx, a).await,
        Cmd::Cluster(a) => scenario::cluster::run(&ctx, a).await,
        Cmd::Idle(a) => scenario::idle::run(&ctx, a).await,
        Cmd::Kick(a) => scenario::kick::run(&ctx, a).await,
        Cmd::Admin(a) => scenario::admin::run(&ctx, a).await,
        Cmd::Recover(a) => scenario::recover::run(&ctx, a).await,
        Cmd::Report { .. } => bail!("report takes no server"),
        Cmd::Swarm => bail!("swarm is steered through stdin"),
    }
}
