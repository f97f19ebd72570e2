//! `idle`: N connections, each `HELLO`ed and `SUB`scribed, then silent.
//! Measures the server's resident memory per connection (`VmRSS` after minus
//! before, over N, from `/proc/PID/status`) and the connect rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::time::Instant;

use super::{Client, Ctx, Outcome, collect_ok, run_indexed};
use crate::procfs::vm_rss_kib;
use crate::progress::Progress;
use crate::stats::{LatencySink, round2};

/// Parameters of `idle`.
#[derive(Clone, Debug, clap::Args)]
pub struct IdleArgs {
    /// Connections held open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Distinct topics the connections subscribe to (connection i takes
    /// topic i mod this).
    #[arg(long, default_value_t = 100)]
    pub topics: usize,
    /// Connection setups in progress at once.
    #[arg(long, default_value_t = 200)]
    pub parallel: usize,
    /// Wait before reading the memory, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &IdleArgs) -> Result<Outcome> {
    let pid = ctx.pid.context("idle needs --pid of the server")?;
    let mut failures = Vec::new();
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let before = vm_rss_kib(pid)?;
    let done = Arc::new(AtomicU64::new(0));
    let bar = Progress::timed(
        ctx.progress,
        "idle",
        &[("", Duration::from_secs(10))],
        done.clone(),
        "connections",
    );
    let tag = std::process::id();
    let topics = args.topics.max(1);
    let sink = LatencySink::new();
    let cpu0 = crate::procfs::cpu_ticks(pid).ok();
    let start = Instant::now();
    let conns = run_indexed(args.connections, args.parallel, |i| {
        let (ctx, done, mut rec) = (ctx.clone(), done.clone(), sink.recorder());
        async move {
            let t0 = Instant::now();
            let mut c = Client::connect(&ctx, true).await?;
            let topic = format!("idle.{}", i % topics);
            c.send(&[
                format!("HELLO idle-{tag}-{i}").as_bytes(),
                format!("SUB {topic}").as_bytes(),
            ])
            .await?;
            c.expect("OK HELLO ").await?;
            c.expect(&format!("OK SUB {topic}")).await?;
            done.fetch_add(1, Ordering::Relaxed);
            rec.record(t0.elapsed());
            Ok(c)
        }
    })
    .await;
    let setup = start.elapsed();
    let cpu1 = crate::procfs::cpu_ticks(pid).ok();
    bar.finish();
    let conns = collect_ok("connection setups", conns, &mut failures);
    if conns.is_empty() {
        bail!("no connection could be set up: {failures:?}");
    }
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let after = vm_rss_kib(pid)?;
    let n = conns.len();
    drop(conns);
    let per_conn = (after as f64 - before as f64) / n as f64;
    Ok(Outcome {
        params: json!({ "connections": args.connections, "topics": topics }),
        results: json!({
            "rss_per_conn_kib": round2(per_conn),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "connected": n,
            "connects_per_sec": round2(n as f64 / setup.as_secs_f64()),
            "setup_seconds": round2(setup.as_secs_f64()),
            "setup_latency": sink.summary(),
            // Server CPU per connection set up (connect, HELLO, SUB).
            "server_cpu_us_per": cpu0.zip(cpu1).map(|(a, b)| {
                (b.saturating_sub(a) as f64 * 1e4 / n as f64 * 1000.0).round() / 1000.0
            }),
        }),
        failures,
    })
}
