//! `admin`: backends publishing through the admin API, `--connections`
//! requests in flight, each on a connection kept alive (the default) or on
//! a fresh connection per request (`--per-request`, which over HTTPS pays a
//! TLS handshake per publish). Measures publishes/s, the server's CPU per
//! publish and the request latency. With `--tls-ca` the admin listener is
//! spoken to over HTTPS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::time::Instant;

use super::{Ctx, Outcome, Timed, Window, collect_ok, timed_results};
use crate::http::HttpClient;
use crate::stats::{LatencySink, Recorder};

/// Parameters of `admin`.
#[derive(Clone, Debug, clap::Args)]
pub struct AdminArgs {
    /// Requests in flight at once, each on a connection of its own.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// A new connection (and TLS handshake) for every request.
    #[arg(long)]
    pub per_request: bool,
    /// Payload bytes of each publish.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &AdminArgs) -> Result<Outcome> {
    let admin = ctx.admin.context("admin needs --admin (the admin API)")?;
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let data: String = (0..args.payload)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let body = Arc::new(json!({ "data": data }).to_string().into_bytes());
    let sink = LatencySink::new();
    let timed = Timed::start(ctx, "admin", "publishes");
    let (window, done) = (timed.window, timed.done.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let mut client = HttpClient::new(admin);
        if let Some(tls) = &ctx.tls {
            client = client.with_tls(tls.0.clone());
        }
        if args.per_request {
            client = client.per_request();
        }
        let (body, rec, done) = (body.clone(), sink.recorder(), done.clone());
        tasks.spawn(async move { publisher(client, window, &body, rec, &done).await });
    }
    let mut results = Vec::new();
    while let Some(j) = tasks.join_next().await {
        results.push(j.map_err(anyhow::Error::from).and_then(|r| r));
    }
    timed.bar.finish();
    let mut failures = Vec::new();
    let measured: u64 = collect_ok("publishers", results, &mut failures)
        .into_iter()
        .sum();
    let cpu = timed.cpu.finish().await;
    Ok(Outcome {
        params: json!({
            "connections": args.connections,
            "per_request": args.per_request,
            "payload": args.payload,
            "https": ctx.tls.is_some(),
        }),
        results: timed_results(
            ("publishes_per_sec", "publishes"),
            measured,
            &window,
            cpu,
            sink.summary(),
        ),
        failures,
    })
}

/// One backend's loop: a publish, its answer, the next; returns the
/// publishes answered 200 inside the window.
async fn publisher(
    mut client: HttpClient,
    window: Window,
    body: &[u8],
    mut rec: Recorder,
    done: &AtomicU64,
) -> Result<u64> {
    let mut measured = 0;
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let r = client
            .post_json("/api/v1/topics/bench-admin/publish", body)
            .await?;
        if r.status != 200 {
            bail!("publish answered {}: {}", r.status, r.text());
        }
        let now = Instant::now();
        done.fetch_add(1, Ordering::Relaxed);
        if window.contains(sent) && window.contains(now) {
            rec.record(now - sent);
            measured += 1;
        }
    }
    rec.flush();
    Ok(measured)
}
