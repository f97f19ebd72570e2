//! `echo`: N connections, each keeping D `PING <payload>` in flight.
//! Measures messages/s and round-trip latency.
//!
//! Each connection writes D pings, then for every `PONG` read sends one more
//! ping (all replies taken from one read answered with one write, or with one
//! write per ping under `--write-split frame`), so exactly D stay in flight.
//! A reply must carry the payload sent. `--spread` yields to the other
//! connections after each write, so that writes are spread over time rather
//! than sent in bursts per connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{
    Client, Ctx, Outcome, Timed, Window, WriteSplit, collect_ok, run_indexed, timed_results,
};
use crate::stats::{LatencySink, Recorder};

/// Parameters of `echo`.
#[derive(Clone, Debug, clap::Args)]
pub struct EchoArgs {
    /// Connections.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Pings in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Payload bytes per ping.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// The pings answering one read in one write, or one write each.
    #[arg(long, value_enum, default_value_t = WriteSplit::Batch)]
    pub write_split: WriteSplit,
    /// Yield to the other connections after each write.
    #[arg(long)]
    pub spread: bool,
}

/// How long in-flight pings may take to come back after the run.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &EchoArgs) -> Result<Outcome> {
    let mut failures = Vec::new();
    let conns = run_indexed(args.connections, 64, |_| {
        let ctx = ctx.clone();
        async move { Client::connect(&ctx, true).await }
    })
    .await;
    let conns = collect_ok("connects", conns, &mut failures);
    if conns.is_empty() {
        bail!("no connection could be opened: {failures:?}");
    }

    let payload: Vec<u8> = (0..args.payload).map(|i| b'a' + (i % 26) as u8).collect();
    let mut ping = b"PING".to_vec();
    let mut pong = b"PONG".to_vec();
    if !payload.is_empty() {
        ping.push(b' ');
        ping.extend_from_slice(&payload);
        pong.push(b' ');
        pong.extend_from_slice(&payload);
    }
    let (ping, pong) = (Arc::new(ping), Arc::new(pong));
    let sink = LatencySink::new();
    let timed = Timed::start(ctx, "echo", "msgs");
    let (window, done) = (timed.window, timed.done.clone());

    let mut tasks = tokio::task::JoinSet::new();
    for c in conns {
        let (ping, pong, rec, done) = (ping.clone(), pong.clone(), sink.recorder(), done.clone());
        let how = How {
            depth: args.depth.max(1),
            split: args.write_split,
            spread: args.spread,
        };
        tasks.spawn(async move { one_conn(c, window, how, &ping, &pong, rec, &done).await });
    }
    let mut measured = 0u64;
    let mut results = Vec::new();
    while let Some(j) = tasks.join_next().await {
        results.push(j.map_err(anyhow::Error::from).and_then(|r| r));
    }
    timed.bar.finish();
    for (n, mismatched) in collect_ok("connections", results, &mut failures) {
        measured += n;
        if mismatched > 0 {
            failures.push(format!("{mismatched} replies did not match their ping"));
        }
    }
    let cpu = timed.cpu.finish().await;
    Ok(Outcome {
        params: json!({
            "connections": args.connections,
            "depth": args.depth,
            "payload": args.payload,
            "write_split": args.write_split,
            "spread": args.spread,
        }),
        results: timed_results(
            ("msgs_per_sec", "messages"),
            measured,
            &window,
            cpu,
            sink.summary(),
        ),
        failures,
    })
}

/// How one connection sends.
#[derive(Clone, Copy, Debug)]
struct How {
    depth: usize,
    split: WriteSplit,
    spread: bool,
}

/// Writes `n` pings: in one write, or one write each; then yields when
/// `how.spread`.
async fn send_pings(
    c: &mut Client,
    n: usize,
    ping: &[u8],
    how: How,
    out: &mut BytesMut,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let writes = match how.split {
        WriteSplit::Batch => 1,
        WriteSplit::Frame => n,
    };
    for _ in 0..writes {
        for _ in 0..n / writes {
            c.framing.encode(ping, out);
        }
        c.wr.write_all(out).await?;
        out.clear();
        if how.spread {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// One connection's loop; returns (replies in the window, mismatched replies).
async fn one_conn(
    mut c: Client,
    window: Window,
    how: How,
    ping: &[u8],
    pong: &[u8],
    mut rec: Recorder,
    done: &AtomicU64,
) -> Result<(u64, u64)> {
    let depth = how.depth;
    let mut inflight: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut out = BytesMut::with_capacity(depth * (ping.len() + 8));
    let (mut measured, mut mismatched) = (0u64, 0u64);
    let now = Instant::now();
    inflight.extend(std::iter::repeat_n(now, depth));
    send_pings(&mut c, depth, ping, how, &mut out).await?;
    let drain_deadline = window.end + DRAIN;
    loop {
        let n = match tokio::time::timeout_at(drain_deadline, c.rd.fill()).await {
            Ok(r) => r?,
            Err(_) => bail!("{} pings unanswered after the run", inflight.len()),
        };
        if n == 0 {
            bail!("the server closed the connection");
        }
        let now = Instant::now();
        let mut replies = 0usize;
        while let Some(f) = c.rd.try_frame()? {
            let Some(sent) = inflight.pop_front() else {
                bail!("a reply nobody asked for");
            };
            if f[..] != *pong {
                mismatched += 1;
            }
            replies += 1;
            if window.contains(now) {
                rec.record(now - sent);
                measured += 1;
            }
        }
        done.fetch_add(replies as u64, Ordering::Relaxed);
        if now < window.end {
            inflight.extend(std::iter::repeat_n(now, replies));
            send_pings(&mut c, replies, ping, how, &mut out).await?;
        } else if inflight.is_empty() {
            break;
        }
    }
    let _ = c.wr.shutdown().await;
    Ok((measured, mismatched))
}
