//! `churn`: C concurrent loops of connect, `HELLO <unique user>`, `QUIT`,
//! read to EOF. Measures cycles/s, the cycle time, and the gateway's pool
//! reuse ratio over the measured window, from `/metrics`. Each phase of a
//! cycle (connected, `OK HELLO` read, `BYE` read, EOF read) is timed from the
//! start of the cycle, to show where slow cycles spend their time.
//!
//! Each client socket is bound to its own 127.0.0.X source address (see
//! [`crate::net`]) so ephemeral ports do not run out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};
use serde_json::json;
use tokio::time::Instant;

use super::{
    Client, CpuProbe, Ctx, Outcome, STEP_TIMEOUT, Window, collect_ok, per_server_cpu_sec,
    server_cpu_us_per,
};
use crate::metrics::{self, PoolCounters};
use crate::progress::Progress;
use crate::stats::{LatencySink, Recorder, round2};

/// Parameters of `churn`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChurnArgs {
    /// Concurrent connect/HELLO/QUIT loops.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// Per-loop tallies.
#[derive(Debug, Default)]
struct Tally {
    measured: u64,
    total: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &ChurnArgs) -> Result<Outcome> {
    let mut failures = Vec::new();
    let sink = LatencySink::new();
    let phase_sinks: Vec<LatencySink> = PHASES.iter().map(|_| LatencySink::new()).collect();
    let done = Arc::new(AtomicU64::new(0));
    let window = Window::from_now(ctx);
    let cpu = CpuProbe::start(ctx.pid, window);
    let bar = Progress::timed(
        ctx.progress,
        "churn",
        &[("warm-up", ctx.warmup), ("measured", ctx.duration)],
        done.clone(),
        "cycles",
    );
    let run_tag = std::process::id();
    let mut tasks = tokio::task::JoinSet::new();
    for l in 0..args.concurrency.max(1) {
        let (ctx, rec, done) = (ctx.clone(), sink.recorder(), done.clone());
        let phases = phase_sinks.iter().map(LatencySink::recorder).collect();
        tasks.spawn(async move { one_loop(ctx, l, run_tag, window, rec, phases, done).await });
    }

    // Pool counters at the end of the warm-up and after the last cycle.
    let mut before: Option<PoolCounters> = None;
    let mut scrape_error = None;
    if let Some(admin) = ctx.admin {
        tokio::time::sleep_until(window.start).await;
        match metrics::pool_counters(admin).await {
            Ok(c) => before = Some(c),
            Err(e) => scrape_error = Some(format!("{e:#}")),
        }
    }
    let mut results = Vec::new();
    while let Some(j) = tasks.join_next().await {
        results.push(j.map_err(anyhow::Error::from));
    }
    bar.finish();
    let mut after = None;
    if let (Some(admin), Some(_)) = (ctx.admin, before) {
        match metrics::pool_counters(admin).await {
            Ok(c) => after = Some(c),
            Err(e) => scrape_error = Some(format!("{e:#}")),
        }
    }
    let reuse = match (before, after) {
        (Some(b), Some(a)) => a.reuse_since(&b),
        _ => None,
    };
    let pool_delta = match (before, after) {
        (Some(b), Some(a)) => json!({
            "reused": a.reused.zip(b.reused).map(|(x, y)| x - y),
            "allocated": a.allocated.zip(b.allocated).map(|(x, y)| x - y),
        }),
        _ => json!(null),
    };

    let (mut measured, mut total, mut errors, mut first) = (0, 0, 0, None);
    for t in collect_ok("loops", results, &mut failures) {
        measured += t.measured;
        total += t.total;
        errors += t.errors;
        if first.is_none() {
            first = t.first_error;
        }
    }
    if errors > 0 {
        failures.push(format!(
            "{errors} cycles failed; first: {}",
            first.unwrap_or_default()
        ));
    }
    let secs = window.secs();
    let cpu = cpu.finish().await;
    Ok(Outcome {
        params: json!({ "concurrency": args.concurrency }),
        results: json!({
            "cycles_per_sec": round2(measured as f64 / secs),
            "cycles": measured,
            "cycles_total": total,
            "errors": errors,
            "seconds": round2(secs),
            "per_server_cpu_sec": per_server_cpu_sec(measured, &cpu, &window),
            "server_cpu_us_per": server_cpu_us_per(measured, &cpu, &window),
            "cpu": cpu,
            "latency": sink.summary(),
            "phases": PHASES
                .iter()
                .zip(&phase_sinks)
                .map(|(name, s)| (name.to_string(), s.summary()))
                .collect::<serde_json::Map<_, _>>(),
            "pool_reuse": reuse.map(|r| (r * 10000.0).round() / 10000.0),
            "pool_delta": pool_delta,
            "metrics_error": scrape_error,
        }),
        failures,
    })
}

async fn one_loop(
    ctx: Ctx,
    l: usize,
    run_tag: u32,
    window: Window,
    mut rec: Recorder,
    mut phases: Vec<Recorder>,
    done: Arc<AtomicU64>,
) -> Tally {
    let mut t = Tally::default();
    let mut i = 0u64;
    while Instant::now() < window.end {
        let start = Instant::now();
        let user = format!("churn-{run_tag}-{l}-{i}");
        i += 1;
        match tokio::time::timeout(STEP_TIMEOUT, one_cycle(&ctx, &user)).await {
            Ok(Ok(at)) => {
                let now = Instant::now();
                t.total += 1;
                done.fetch_add(1, Ordering::Relaxed);
                if window.contains(now) {
                    t.measured += 1;
                    if start >= window.start {
                        rec.record(now - start);
                        for (r, a) in phases.iter_mut().zip(at) {
                            r.record(a - start);
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                t.errors += 1;
                t.first_error
                    .get_or_insert_with(|| format!("cycle took over {STEP_TIMEOUT:?}"));
            }
        }
    }
    t
}

/// Phases of a cycle, each timed from the start of the cycle.
const PHASES: [&str; 4] = ["connected", "ok_hello", "bye", "eof"];

/// connect, HELLO, QUIT, `OK HELLO`, `BYE`, EOF; returns when each of
/// [`PHASES`] was reached.
async fn one_cycle(ctx: &Ctx, user: &str) -> Result<[Instant; 4]> {
    let mut c = Client::connect(ctx, true).await?;
    let connected = Instant::now();
    let hello = format!("HELLO {user}");
    c.send(&[hello.as_bytes(), b"QUIT"]).await?;
    c.expect("OK HELLO ").await?;
    let ok_hello = Instant::now();
    let bye = c.recv().await?;
    if &bye[..] != b"BYE" {
        bail!("expected BYE, got {:?}", String::from_utf8_lossy(&bye));
    }
    let bye_at = Instant::now();
    match c.rd.next_frame().await? {
        None => Ok([connected, ok_hello, bye_at, Instant::now()]),
        Some(f) => bail!("frame after BYE: {:?}", String::from_utf8_lossy(&f)),
    }
}
