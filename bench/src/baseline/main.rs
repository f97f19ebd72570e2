//! `gateway-baseline`: the yardstick for the gateway benchmarks. It serves
//! the gateway's client commands the straightforward way: a task per
//! connection, an unbounded mpsc channel per writer task, the topic and user
//! maps behind mutexes, and a minimal admin port (`/metrics`, `/healthz`,
//! connection send and close).

mod admin;
mod conn;
mod state;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gateway_bench::frame::Framing;
use tokio::net::{TcpListener, TcpSocket};

use state::State;

/// Plain-tokio baseline server for the gateway's client protocol.
#[derive(Debug, Parser)]
#[command(name = "gateway-baseline", version)]
struct Cli {
    /// Client TCP listener.
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// Admin HTTP listener.
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin_listen: SocketAddr,
    /// Frame format, both directions.
    #[arg(long, value_enum, default_value_t = Framing::Lines)]
    framing: Framing,
    /// Largest frame accepted from a client.
    #[arg(long, default_value_t = 65536)]
    max_frame_bytes: usize,
    /// Output queued for one connection past which it is a slow consumer.
    #[arg(long, default_value_t = 1 << 20)]
    max_pending_bytes: usize,
    /// Open client connections at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Topics one connection may hold.
    #[arg(long, default_value_t = 1024)]
    max_subscriptions: usize,
    /// Bound on one graceful close, in seconds.
    #[arg(long, default_value_t = 10)]
    close_timeout: u64,
    /// Runtime worker threads (default: the CPUs this process may use).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = cli.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway-baseline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway-baseline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = listen(cli.listen).with_context(|| format!("binding {}", cli.listen))?;
    let admin =
        listen(cli.admin_listen).with_context(|| format!("binding {}", cli.admin_listen))?;
    let state = Arc::new(State::new(state::Limits {
        framing: cli.framing,
        max_frame: cli.max_frame_bytes,
        max_pending: cli.max_pending_bytes,
        max_connections: cli.max_connections,
        max_subscriptions: cli.max_subscriptions,
        close_timeout: Duration::from_secs(cli.close_timeout),
    }));
    ready(client.local_addr()?, admin.local_addr()?);
    tokio::spawn(admin::serve(admin, state.clone()));
    loop {
        match client.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(conn::run(stream, peer, state.clone()));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("gateway-baseline: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A listener with a 4096-deep accept queue (what the gateway asks for;
/// tokio's `TcpListener::bind` asks for less, and a burst of connects then
/// overflows it into 1 s SYN retransmits).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

#[allow(clippy::print_stdout)]
fn ready(client: SocketAddr, admin: SocketAddr) {
    use std::io::Write;
    println!("READY client={client} admin={admin}");
    let _ = std::io::stdout().flush();
}
