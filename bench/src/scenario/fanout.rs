//! `fanout`: S subscribers on one topic, P publishers sending
//! `PUB <topic> <publisher-id> <seq> <timestamp>`. Measures deliveries/s,
//! delivery latency (timestamp to receipt), and counts messages missing or
//! out of order per (subscriber, publisher) pair; both must be 0.
//!
//! The subscribers may be spread over several nodes of a cluster
//! ([`run_spread`], used by the `cluster` scenario); the publishers always
//! connect to `--target`.
//!
//! Flow control: publishers together keep at most `--window` publishes ahead
//! of the average subscriber, so the load generator measures the server's
//! throughput rather than filling its queues until it drops slow consumers.
//!
//! How the load is generated is a set of flags, since the server's cost per
//! delivery depends on it: how many publishes go in one write (`--batch`),
//! whether they go as one write or one each (`--write-split`), whether a
//! publisher yields after each write (`--spread`), and who connects first
//! (`--connect-order`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{
    Client, CpuProbe, Ctx, Outcome, Window, WriteSplit, collect_ok, per_server_cpu_sec,
    run_indexed, server_cpu_us_per, server_user_cpu_us_per,
};
use crate::progress::Progress;
use crate::stats::{LatencySink, Recorder, round2};

/// Parameters of `fanout`.
#[derive(Clone, Debug, clap::Args)]
pub struct FanoutArgs {
    /// Subscribers on the topic.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publishers.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Publishes in flight, all publishers together.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// The topic.
    #[arg(long, default_value = "bench.fanout")]
    pub topic: String,
    /// Most publishes a publisher sends at once (fewer when the window
    /// has less room).
    #[arg(long, default_value_t = 16)]
    pub batch: u64,
    /// The publishes sent at once in one write, or one write each.
    #[arg(long, value_enum, default_value_t = WriteSplit::Batch)]
    pub write_split: WriteSplit,
    /// A publisher yields to the other tasks after each write.
    #[arg(long)]
    pub spread: bool,
    /// Who connects first; it decides which clients share the server's
    /// first accepts (and, with several workers, which worker).
    #[arg(long, value_enum, default_value_t = ConnectOrder::SubscribersFirst)]
    pub connect_order: ConnectOrder,
}

/// `--connect-order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectOrder {
    /// Every subscriber set up, then the publishers.
    SubscribersFirst,
    /// The publishers, then the subscribers.
    PublishersFirst,
}

/// How a publisher sends.
#[derive(Clone, Copy, Debug)]
struct How {
    window: u64,
    batch: u64,
    split: WriteSplit,
    spread: bool,
}

/// How long subscribers wait for the last messages after the run.
const DRAIN: Duration = Duration::from_secs(10);

/// State publishers and subscribers share.
#[derive(Debug)]
struct Shared {
    published: AtomicU64,
    delivered: AtomicU64,
    progress: Notify,
    base: Instant,
    subscribers: u64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct SubTally {
    measured: u64,
    received: u64,
    missing: u64,
    reordered: u64,
    malformed: u64,
    closed_early: Option<String>,
}

/// Runs the scenario, everyone on `ctx.target`.
pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<Outcome> {
    run_spread(ctx, args, &[]).await
}

/// Runs the scenario with subscriber `i` on `sub_targets[i % len]` (all on
/// `ctx.target` when empty) and the publishers on `ctx.target`.
pub async fn run_spread(
    ctx: &Ctx,
    args: &FanoutArgs,
    sub_targets: &[SocketAddr],
) -> Result<Outcome> {
    let mut failures = Vec::new();
    let topic = args.topic.clone();
    let connect_pubs = || {
        run_indexed(args.publishers, 16, |_| {
            let ctx = ctx.clone();
            async move { Client::connect(&ctx, true).await }
        })
    };
    let early_pubs = match args.connect_order {
        ConnectOrder::PublishersFirst => Some(connect_pubs().await),
        ConnectOrder::SubscribersFirst => None,
    };
    let subs = run_indexed(args.subscribers, 128, |i| {
        let mut ctx = ctx.clone();
        if let Some(t) = sub_targets.get(i % sub_targets.len().max(1)) {
            ctx.target = *t;
        }
        let topic = topic.clone();
        async move {
            let mut c = Client::connect(&ctx, true).await?;
            c.send(&[format!("SUB {topic}").as_bytes()]).await?;
            c.expect(&format!("OK SUB {topic}")).await?;
            Ok(c)
        }
    })
    .await;
    let subs = collect_ok("subscriber setups", subs, &mut failures);
    let pubs = match early_pubs {
        Some(p) => p,
        None => connect_pubs().await,
    };
    let pubs = collect_ok("publisher connects", pubs, &mut failures);
    if subs.is_empty() || pubs.is_empty() {
        bail!("setup failed: {failures:?}");
    }

    let shared = Arc::new(Shared {
        published: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        progress: Notify::new(),
        base: Instant::now(),
        subscribers: subs.len() as u64,
    });
    let window = Window::from_now(ctx);
    let cpu = CpuProbe::start(ctx.pid, window);
    let sink = LatencySink::new();
    let (final_tx, final_rx) = watch::channel::<Option<Arc<Vec<u64>>>>(None);
    let npub = pubs.len();
    let mut sub_tasks = tokio::task::JoinSet::new();
    for c in subs {
        let (shared, rec, rx, topic) = (
            shared.clone(),
            sink.recorder(),
            final_rx.clone(),
            args.topic.clone(),
        );
        sub_tasks.spawn(subscriber(c, topic, npub, shared, window, rec, rx));
    }
    let done = Arc::new(AtomicU64::new(0));
    let bar = Progress::timed(
        ctx.progress,
        "fanout",
        &[("warm-up", ctx.warmup), ("measured", ctx.duration)],
        done.clone(),
        "publishes",
    );
    let mut pub_tasks = tokio::task::JoinSet::new();
    for (id, c) in pubs.into_iter().enumerate() {
        let (shared, topic, done) = (shared.clone(), args.topic.clone(), done.clone());
        let how = How {
            window: args.window.max(1),
            batch: args.batch.max(1),
            split: args.write_split,
            spread: args.spread,
        };
        pub_tasks
            .spawn(async move { (id, publisher(c, id, topic, shared, window, how, done).await) });
    }
    let mut finals = vec![0u64; npub];
    while let Some(j) = pub_tasks.join_next().await {
        match j {
            Ok((id, Ok(n))) => finals[id] = n,
            Ok((id, Err(e))) => failures.push(format!("publisher {id}: {e:#}")),
            Err(e) => failures.push(format!("publisher task: {e}")),
        }
    }
    bar.finish();
    let published: u64 = finals.iter().sum();
    let _ = final_tx.send(Some(Arc::new(finals)));

    let mut results = Vec::new();
    while let Some(j) = sub_tasks.join_next().await {
        results.push(j.map_err(anyhow::Error::from));
    }
    let mut t = SubTally::default();
    let mut closed = 0u64;
    for s in collect_ok("subscribers", results, &mut failures) {
        t.measured += s.measured;
        t.received += s.received;
        t.missing += s.missing;
        t.reordered += s.reordered;
        t.malformed += s.malformed;
        if let Some(e) = s.closed_early {
            closed += 1;
            t.closed_early.get_or_insert(e);
        }
    }
    if t.missing > 0 {
        failures.push(format!("{} messages missing", t.missing));
    }
    if t.reordered > 0 {
        failures.push(format!("{} messages out of order", t.reordered));
    }
    if t.malformed > 0 {
        failures.push(format!("{} unexpected frames", t.malformed));
    }
    if closed > 0 {
        failures.push(format!(
            "{closed} subscribers cut off early; first: {}",
            t.closed_early.unwrap_or_default()
        ));
    }
    let secs = window.secs();
    let cpu = cpu.finish().await;
    Ok(Outcome {
        params: json!({
            "subscribers": args.subscribers,
            "publishers": args.publishers,
            "window": args.window,
            "batch": args.batch,
            "write_split": args.write_split,
            "spread": args.spread,
            "connect_order": args.connect_order,
        }),
        results: json!({
            "deliveries_per_sec": round2(t.measured as f64 / secs),
            "deliveries": t.measured,
            "published": published,
            "received_total": t.received,
            "missing": t.missing,
            "reordered": t.reordered,
            "seconds": round2(secs),
            "per_server_cpu_sec": per_server_cpu_sec(t.measured, &cpu, &window),
            "server_cpu_us_per": server_cpu_us_per(t.measured, &cpu, &window),
            "server_user_cpu_us_per": server_user_cpu_us_per(t.measured, &cpu),
            "cpu": cpu,
            "latency": sink.summary(),
        }),
        failures,
    })
}

async fn publisher(
    mut c: Client,
    id: usize,
    topic: String,
    shared: Arc<Shared>,
    window: Window,
    how: How,
    done: Arc<AtomicU64>,
) -> Result<u64> {
    let max_inflight = how.window;
    // Anything the server answers to a publisher is an error frame.
    let mut rd = c.rd;
    let errors = tokio::spawn(async move {
        match rd.next_frame().await {
            Ok(Some(f)) => Some(String::from_utf8_lossy(&f).into_owned()),
            _ => None,
        }
    });
    let mut seq = 0u64;
    let mut out = BytesMut::with_capacity(4096);
    let prefix = format!("PUB {topic} {id} ");
    while Instant::now() < window.end {
        let notified = shared.progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ahead = shared
            .published
            .load(Ordering::Acquire)
            .saturating_sub(shared.delivered.load(Ordering::Acquire) / shared.subscribers);
        if ahead >= max_inflight {
            let wake = (Instant::now() + Duration::from_millis(50)).min(window.end);
            let _ = tokio::time::timeout_at(wake, notified).await;
            continue;
        }
        let n = (max_inflight - ahead).min(how.batch);
        let ts = shared.base.elapsed().as_nanos() as u64;
        // Counted as published before the write, so that no other publisher
        // fills the same room meanwhile.
        shared.published.fetch_add(n, Ordering::AcqRel);
        done.fetch_add(n, Ordering::Relaxed);
        for _ in 0..n {
            let fields = format!("{seq} {ts}");
            c.framing
                .encode_parts(&[prefix.as_bytes(), fields.as_bytes()], &mut out);
            seq += 1;
            if how.split == WriteSplit::Frame {
                c.wr.write_all(&out).await?;
                out.clear();
                if how.spread {
                    tokio::task::yield_now().await;
                }
            }
        }
        if !out.is_empty() {
            c.wr.write_all(&out).await?;
            out.clear();
            if how.spread {
                tokio::task::yield_now().await;
            }
        }
        if errors.is_finished() {
            break;
        }
    }
    if errors.is_finished() {
        if let Ok(Some(frame)) = errors.await {
            bail!("the server answered a PUB with {frame:?}");
        }
    } else {
        errors.abort();
    }
    Ok(seq)
}

async fn subscriber(
    mut c: Client,
    topic: String,
    npub: usize,
    shared: Arc<Shared>,
    window: Window,
    mut rec: Recorder,
    mut finals: watch::Receiver<Option<Arc<Vec<u64>>>>,
) -> SubTally {
    let mut t = SubTally::default();
    let mut next = vec![0u64; npub];
    let prefix = format!("MSG {topic} ");
    let mut goal: Option<Arc<Vec<u64>>> = None;
    loop {
        if let Some(g) = &goal
            && next.iter().zip(g.iter()).all(|(n, f)| n >= f)
        {
            break;
        }
        let deadline = window.end + DRAIN;
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline, c.rd.fill()) => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => { t.closed_early = Some(format!("read: {e}")); break; }
                Err(_) => break,
            },
            changed = finals.changed(), if goal.is_none() => {
                if changed.is_err() { break; }
                goal = finals.borrow().clone();
                continue;
            }
        };
        if n == 0 {
            t.closed_early = Some("EOF".to_owned());
            break;
        }
        let now = Instant::now();
        let now_ns = (now - shared.base).as_nanos() as u64;
        let in_window = window.contains(now);
        let mut batch = 0u64;
        loop {
            let f = match c.rd.try_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    t.closed_early = Some(e.to_string());
                    break;
                }
            };
            let Some(rest) = f.strip_prefix(prefix.as_bytes()) else {
                t.malformed += 1;
                if f.starts_with(b"KICK") {
                    t.closed_early = Some(String::from_utf8_lossy(&f).into_owned());
                }
                continue;
            };
            let Some((p, s, ts)) = parse_msg(rest) else {
                t.malformed += 1;
                continue;
            };
            let Some(expected) = next.get_mut(p) else {
                t.malformed += 1;
                continue;
            };
            batch += 1;
            if s == *expected {
                *expected += 1;
            } else if s > *expected {
                t.missing += s - *expected;
                *expected = s + 1;
            } else {
                t.reordered += 1;
            }
            if in_window {
                t.measured += 1;
                rec.record(Duration::from_nanos(now_ns.saturating_sub(ts)));
            }
        }
        t.received += batch;
        shared.delivered.fetch_add(batch, Ordering::AcqRel);
        shared.progress.notify_waiters();
        if t.closed_early.is_some() {
            break;
        }
    }
    if goal.is_none() {
        goal = finals.borrow().clone();
    }
    if let Some(g) = goal {
        for (n, f) in next.iter().zip(g.iter()) {
            t.missing += f.saturating_sub(*n);
        }
    }
    t
}

/// `<publisher-id> <seq> <timestamp>` as numbers.
fn parse_msg(rest: &[u8]) -> Option<(usize, u64, u64)> {
    let mut it = rest.split(|&b| b == b' ');
    let p = num(it.next()?)?;
    let s = num(it.next()?)?;
    let ts = num(it.next()?)?;
    Some((usize::try_from(p).ok()?, s, ts))
}

fn num(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_messages() {
        assert_eq!(super::parse_msg(b"3 17 123456"), Some((3, 17, 123456)));
        assert_eq!(super::parse_msg(b"3 x 1"), None);
        assert_eq!(super::parse_msg(b"3 1"), None);
    }
}
