//! `recover`: history's recovery (docs/protocol.md section 13), single
//! node. `--clients` connections subscribe to one topic with `LATEST`, all
//! leave, `--missed` messages are published, and all come back at once,
//! each with its position (a reconnect storm). Each client times its
//! recovery from its `SUB` until it has read `RECOVERED <n>` and every
//! replayed message, checks it got exactly the missed messages, in order,
//! none twice, and then a live one published after all are back.
//! Reports the recovery time per client (p50, p99) and the time until
//! every client was live. The gateway needs `--history-size` and
//! `--history-recover-max` of at least `--missed`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::time::Instant;

use super::{Client, Ctx, Outcome, collect_ok, run_indexed};
use crate::stats::{LatencySink, round2};

/// Parameters of `recover`.
#[derive(Clone, Debug, clap::Args)]
pub struct RecoverArgs {
    /// Clients that leave and come back.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Messages published while they are away.
    #[arg(long, default_value_t = 100)]
    pub missed: usize,
    /// Clients connecting at once while setting up and coming back.
    #[arg(long, default_value_t = 256)]
    pub parallel: usize,
}

/// `OK SUB <topic> <epoch>:<offset>[ rest]`: the epoch, the offset, the
/// rest.
fn ok_sub(frame: &[u8]) -> Result<(String, u64, String)> {
    let text = String::from_utf8_lossy(frame);
    let rest = text
        .strip_prefix(&format!("OK SUB {TOPIC} "))
        .with_context(|| format!("not an OK SUB: {text}"))?;
    let (position, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let (epoch, offset) = position.split_once(':').context("no position")?;
    Ok((epoch.to_owned(), offset.parse()?, tail.to_owned()))
}

/// `MSG <topic>@<offset> <payload>`: the offset and the payload.
fn positioned(frame: &[u8]) -> Result<(u64, String)> {
    let text = String::from_utf8_lossy(frame);
    let rest = text
        .strip_prefix(&format!("MSG {TOPIC}@"))
        .with_context(|| format!("not a positioned MSG: {text}"))?;
    let (offset, payload) = rest.split_once(' ').context("no payload")?;
    Ok((offset.parse()?, payload.to_owned()))
}

const TOPIC: &str = "bench-recover";

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &RecoverArgs) -> Result<Outcome> {
    let mut failures = Vec::new();
    // Everyone subscribes at the newest position, then leaves.
    let positions = run_indexed(args.clients, args.parallel, |_| {
        let ctx = ctx.clone();
        async move {
            let mut c = Client::connect(&ctx, true).await?;
            c.send(&[format!("SUB {TOPIC} LATEST").as_bytes()]).await?;
            let (epoch, offset, _) = ok_sub(&c.recv().await?)?;
            Ok(format!("{epoch}:{offset}"))
        }
    })
    .await;
    let positions = collect_ok("subscriptions", positions, &mut failures);
    if positions.is_empty() {
        bail!("no client could subscribe: {failures:?}");
    }
    // The messages they miss, numbered.
    let mut publisher = Client::connect(ctx, false).await?;
    for n in 0..args.missed {
        publisher
            .send(&[format!("PUB {TOPIC} missed-{n}").as_bytes()])
            .await?;
    }
    publisher.send(&[b"PING published"]).await?;
    publisher.expect("PONG published").await?;

    // The storm: everyone comes back at once.
    let sink = LatencySink::new();
    let missed = args.missed;
    let storm = Instant::now();
    let positions = Arc::new(positions);
    let back = run_indexed(positions.len(), args.parallel, |i| {
        let (ctx, positions, mut rec) = (ctx.clone(), positions.clone(), sink.recorder());
        async move {
            let mut c = Client::connect(&ctx, true).await?;
            let asked = Instant::now();
            c.send(&[format!("SUB {TOPIC} {}", positions[i]).as_bytes()])
                .await?;
            let (_, _, tail) = ok_sub(&c.recv().await?)?;
            if tail != format!("RECOVERED {missed}") {
                bail!("answered `{tail}`, not RECOVERED {missed}");
            }
            let mut last = 0;
            for n in 0..missed {
                let (offset, payload) = positioned(&c.recv().await?)?;
                if payload != format!("missed-{n}") || offset <= last {
                    bail!("replay {n}: `{payload}` at {offset} after {last}");
                }
                last = offset;
            }
            rec.record(asked.elapsed());
            rec.flush();
            anyhow::Ok((c, last))
        }
    })
    .await;
    let all_back = storm.elapsed();
    let back = collect_ok("recoveries", back, &mut failures);
    // One live message after the replay reaches every client that came back.
    publisher
        .send(&[format!("PUB {TOPIC} live").as_bytes()])
        .await?;
    let mut live = 0;
    for (mut c, last) in back {
        match c.recv().await.and_then(|f| positioned(&f)) {
            Ok((offset, payload)) if payload == "live" && offset > last => live += 1,
            Ok((_, payload)) => failures.push(format!("after the replay came `{payload}`")),
            Err(err) => failures.push(format!("no live message: {err:#}")),
        }
    }
    if live < positions.len() {
        failures.push(format!("{} of {} clients live", live, positions.len()));
    }
    Ok(Outcome {
        params: json!({"clients": args.clients, "missed": args.missed}),
        results: json!({
            "recovered_clients": live,
            "all_live_secs": round2(all_back.as_secs_f64()),
            "recovery": sink.summary(),
            "missing_or_duplicated": positions.len() - live,
        }),
        failures,
    })
}
