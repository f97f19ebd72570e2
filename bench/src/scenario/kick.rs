//! `kick`: N connections stop reading; each gets B bytes pushed through the
//! admin API (`POST /api/v1/connections/{id}/send`), then each is kicked
//! (`POST /api/v1/connections/{id}/close`). A client starts reading as soon
//! as its close is accepted (or, with `--read-after-all-closed`, once every
//! close was accepted), and reads to EOF. Measures bytes lost (must be
//! 0) and the time from the close request to EOF.
//!
//! Pushed payloads are `<conn>:<chunk>:xxxx...`, so the reader also checks
//! that chunks arrive whole and in order, and that `KICK admin` comes last.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Client, Ctx, Outcome, collect_ok, run_indexed};
use crate::http::HttpClient;
use crate::stats::{LatencySink, round2};

/// Parameters of `kick`.
#[derive(Clone, Debug, clap::Args)]
pub struct KickArgs {
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Bytes of payload pushed to each connection.
    #[arg(long, default_value_t = 256 * 1024)]
    pub bytes: usize,
    /// Payload bytes per send request.
    #[arg(long, default_value_t = 16 * 1024)]
    pub chunk: usize,
    /// Admin requests in progress at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Clients start reading only once every close was accepted (by default
    /// each starts as soon as its own close is accepted). The close-to-EOF
    /// time then includes waiting for the other closes.
    #[arg(long)]
    pub read_after_all_closed: bool,
}

/// How long a kicked client may take to read everything to EOF.
const READ_LIMIT: Duration = Duration::from_secs(60);

/// What one kicked client read.
#[derive(Debug, Default)]
struct Read {
    bytes: u64,
    latency: Option<Duration>,
    kick_last: bool,
    problem: Option<String>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &KickArgs) -> Result<Outcome> {
    let admin = ctx
        .admin
        .context("kick needs --admin (the admin API pushes and kicks)")?;
    let mut failures = Vec::new();
    let tag = std::process::id();
    let clients = run_indexed(args.connections, 128, |i| {
        let ctx = ctx.clone();
        async move {
            let mut c = Client::connect(&ctx, true).await?;
            let id = c.hello(&format!("kick-{tag}-{i}")).await?;
            Ok((c, id))
        }
    })
    .await;
    let clients = collect_ok("connection setups", clients, &mut failures);
    if clients.is_empty() {
        bail!("no connection could be set up: {failures:?}");
    }
    let n = clients.len();
    let chunk = args.chunk.max(16);
    let sink = LatencySink::new();

    // Readers wait for their close to be accepted, then read to EOF.
    let mut ids = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut readers = tokio::task::JoinSet::new();
    for (i, (c, id)) in clients.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel::<Instant>();
        ids.push(id);
        starts.push(Mutex::new(Some(tx)));
        readers.spawn(async move { (i, read_all(c, i, rx).await) });
    }
    let starts = Arc::new(starts);

    let cpu0 = ctx.pid.and_then(|p| crate::procfs::cpu_ticks(p).ok());
    let t0 = Instant::now();
    let plan = Arc::new(Plan {
        ids,
        starts: starts.clone(),
        chunks: chunk_lengths(args.bytes, chunk),
        deferred: args.read_after_all_closed.then(|| Mutex::new(Vec::new())),
    });
    admin_pass(admin, args.parallel, &plan, Pass::Push).await?;
    let push_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    admin_pass(admin, args.parallel, &plan, Pass::Close).await?;
    let close_secs = t1.elapsed().as_secs_f64();
    if let Some(d) = &plan.deferred {
        let all = std::mem::take(&mut *d.lock().unwrap_or_else(PoisonError::into_inner));
        for (tx, sent) in all {
            let _ = tx.send(sent);
        }
    }
    // Readers whose close never went out stop now.
    for s in starts.iter() {
        s.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    let expected = args.bytes as u64;
    let (mut lost, mut read_total, mut no_kick, mut problems, mut first) = (0u64, 0, 0, 0, None);
    let mut rec = sink.recorder();
    while let Some(j) = readers.join_next().await {
        let (i, r) = j.map_err(|e| anyhow!("reader task: {e}"))?;
        read_total += r.bytes;
        lost += expected.saturating_sub(r.bytes);
        if let Some(l) = r.latency {
            rec.record(l);
        }
        if !r.kick_last {
            no_kick += 1;
        }
        if let Some(p) = r.problem {
            problems += 1;
            first.get_or_insert_with(|| format!("connection {i}: {p}"));
        }
    }
    drop(rec);
    let cpu1 = ctx.pid.and_then(|p| crate::procfs::cpu_ticks(p).ok());
    let mib_read = read_total as f64 / 1048576.0;
    if lost > 0 {
        failures.push(format!("{lost} bytes lost"));
    }
    if no_kick > 0 {
        failures.push(format!("{no_kick} connections did not end with KICK admin"));
    }
    if problems > 0 {
        failures.push(format!(
            "{problems} connections read wrongly; first: {}",
            first.unwrap_or_default()
        ));
    }
    Ok(Outcome {
        params: json!({
            "connections": args.connections,
            "bytes": args.bytes,
            "chunk": chunk,
            "read_after_all_closed": args.read_after_all_closed,
        }),
        results: json!({
            "bytes_lost": lost,
            "bytes_read": read_total,
            "bytes_expected": expected * n as u64,
            "push_seconds": round2(push_secs),
            "push_mib_per_sec": round2(expected as f64 * n as f64 / push_secs.max(1e-9) / 1048576.0),
            "close_seconds": round2(close_secs),
            "close_to_eof": sink.summary(),
            // Server CPU per MiB pushed through the admin API and read by
            // the clients, closes included.
            "server_cpu_us_per": cpu0.zip(cpu1).filter(|_| mib_read > 0.0).map(|(a, b)| {
                (b.saturating_sub(a) as f64 * 1e4 / mib_read).round()
            }),
        }),
        failures,
    })
}

/// Lengths of the chunks that make up `total` bytes.
fn chunk_lengths(total: usize, chunk: usize) -> Vec<usize> {
    let mut v = vec![chunk; total / chunk];
    let rest = total % chunk;
    if rest > 0 {
        v.push(rest);
    }
    v
}

/// `<conn>:<chunk>:` padded with `x` to `len` bytes.
fn chunk_payload(conn: usize, k: usize, len: usize) -> String {
    let mut s = format!("{conn}:{k}:");
    while s.len() < len {
        s.push('x');
    }
    s.truncate(len);
    s
}

fn check_status(path: &str, got: u16, want: u16, body: &str) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let body = &body[..body.len().min(300)];
    if got == 404 {
        bail!(
            "POST {path} answered 404 for a connection that is open ({body}): \
             the server's admin API does not offer this endpoint yet, so kick cannot run"
        );
    }
    bail!("POST {path} answered {got}, expected {want}: {body}");
}

/// What the admin passes work on.
#[derive(Debug)]
struct Plan {
    ids: Vec<String>,
    starts: Arc<Vec<Mutex<Option<oneshot::Sender<Instant>>>>>,
    chunks: Vec<usize>,
    /// With `--read-after-all-closed`: readers to start after the close pass.
    deferred: Option<Mutex<Vec<DeferredStart>>>,
}

/// A reader to start, and when its close request was sent.
type DeferredStart = (oneshot::Sender<Instant>, Instant);

/// One pass over all connections.
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// Push every chunk, in order.
    Push,
    /// Ask for the close and start the reader.
    Close,
}

/// Runs one pass over all connections with `parallel` workers, each with its
/// own keep-alive admin connection; stops at the first error.
async fn admin_pass(
    admin: SocketAddr,
    parallel: usize,
    plan: &Arc<Plan>,
    pass: Pass,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (plan, next, stop) = (plan.clone(), next.clone(), stop.clone());
        workers.spawn(async move {
            let mut c = HttpClient::new(admin);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = plan.ids.get(i) else {
                    break;
                };
                let r = match pass {
                    Pass::Push => push_one(&mut c, &plan, i, id).await,
                    Pass::Close => close_one(&mut c, &plan, i, id).await,
                };
                if let Err(e) = r {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        });
    }
    let mut first = None;
    while let Some(j) = workers.join_next().await {
        let r = j.map_err(|e| anyhow!("admin worker: {e}")).and_then(|r| r);
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

async fn push_one(c: &mut HttpClient, plan: &Plan, i: usize, id: &str) -> Result<()> {
    let path = format!("/api/v1/connections/{id}/send");
    for (k, len) in plan.chunks.iter().enumerate() {
        let body = json!({ "data": chunk_payload(i, k, *len) }).to_string();
        let r = c.post_json(&path, body.as_bytes()).await?;
        check_status(&path, r.status, 202, &r.text())?;
    }
    Ok(())
}

async fn close_one(c: &mut HttpClient, plan: &Plan, i: usize, id: &str) -> Result<()> {
    let path = format!("/api/v1/connections/{id}/close");
    let sent = Instant::now();
    let r = c.request("POST", &path, None).await?;
    check_status(&path, r.status, 202, &r.text())?;
    let tx = plan
        .starts
        .get(i)
        .and_then(|s| s.lock().unwrap_or_else(PoisonError::into_inner).take());
    if let Some(tx) = tx {
        match &plan.deferred {
            Some(d) => d
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((tx, sent)),
            None => {
                let _ = tx.send(sent);
            }
        }
    }
    Ok(())
}

async fn read_all(mut c: Client, me: usize, start: oneshot::Receiver<Instant>) -> Read {
    let mut r = Read::default();
    let Ok(sent) = start.await else {
        r.problem = Some("never closed".to_owned());
        return r;
    };
    let prefix = format!("{me}:");
    let mut next_chunk = 0usize;
    let mut last_was_kick = false;
    let deadline = sent + READ_LIMIT;
    loop {
        let f = match tokio::time::timeout_at(deadline, c.rd.next_frame()).await {
            Err(_) => {
                r.problem = Some(format!("no EOF within {READ_LIMIT:?}"));
                break;
            }
            Ok(Err(e)) => {
                r.problem = Some(format!("read: {e}"));
                break;
            }
            Ok(Ok(None)) => {
                r.latency = Some(sent.elapsed());
                break;
            }
            Ok(Ok(Some(f))) => f,
        };
        last_was_kick = false;
        if let Some(p) = f.strip_prefix(b"PUSH ") {
            r.bytes += p.len() as u64;
            let want = format!("{prefix}{next_chunk}:");
            if !p.starts_with(want.as_bytes()) && r.problem.is_none() {
                r.problem = Some(format!("chunk {next_chunk} missing or out of order"));
            }
            next_chunk += 1;
        } else if &f[..] == b"KICK admin" {
            last_was_kick = true;
        } else if r.problem.is_none() {
            r.problem = Some(format!(
                "unexpected frame {:?}",
                String::from_utf8_lossy(&f[..f.len().min(100)])
            ));
        }
    }
    r.kick_last = last_was_kick;
    drop(c);
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks() {
        assert_eq!(super::chunk_lengths(10, 4), vec![4, 4, 2]);
        assert_eq!(super::chunk_payload(3, 1, 8), "3:1:xxxx");
    }
}
