//! `cluster`: the `fanout` scenario with its subscribers spread over the
//! nodes of a cluster (`--subscriber-targets`, round-robin) and its
//! publishers on `--target`; beside its figures, how many messages went
//! into and out of the NATS server per client publish, read from the
//! server's monitoring endpoint (`/varz` `in_msgs` and `out_msgs`, before
//! and after the run). Those counts include everything the nodes exchange
//! meanwhile (heartbeats, membership), so they are an upper bound on what
//! the publishes cost.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::fanout::{self, FanoutArgs};
use super::{Ctx, Outcome};
use crate::http::HttpClient;
use crate::stats::round2;

/// Parameters of `cluster`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// The fanout load.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Client ports the subscribers connect to, in turn, comma separated
    /// (default: `--target` alone, the one-node case).
    #[arg(long, value_delimiter = ',')]
    pub subscriber_targets: Vec<SocketAddr>,
    /// The NATS server's monitoring address (`nats-server -m PORT`).
    #[arg(long)]
    pub nats_monitor: Option<SocketAddr>,
}

/// `in_msgs` and `out_msgs` of the NATS server.
#[derive(Clone, Copy, Debug)]
struct NatsCounts {
    in_msgs: u64,
    out_msgs: u64,
}

async fn varz(monitor: SocketAddr) -> Result<NatsCounts> {
    let r = HttpClient::new(monitor)
        .get("/varz")
        .await
        .with_context(|| format!("GET http://{monitor}/varz"))?;
    if r.status != 200 {
        bail!("GET http://{monitor}/varz answered {}", r.status);
    }
    let v: Value = serde_json::from_slice(&r.body).context("/varz is not JSON")?;
    let field = |name: &str| {
        v[name]
            .as_u64()
            .with_context(|| format!("/varz has no number {name}"))
    };
    Ok(NatsCounts {
        in_msgs: field("in_msgs")?,
        out_msgs: field("out_msgs")?,
    })
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, args: &ClusterArgs) -> Result<Outcome> {
    let before = match args.nats_monitor {
        Some(m) => Some(varz(m).await?),
        None => None,
    };
    let mut outcome = fanout::run_spread(ctx, &args.fanout, &args.subscriber_targets).await?;
    let nodes: BTreeSet<SocketAddr> = if args.subscriber_targets.is_empty() {
        BTreeSet::from([ctx.target])
    } else {
        args.subscriber_targets.iter().copied().collect()
    };
    outcome.params["subscriber_nodes"] = json!(nodes.len());
    if let (Some(m), Some(before)) = (args.nats_monitor, before) {
        let after = varz(m).await?;
        let published = outcome.results["published"].as_u64().unwrap_or(0);
        let din = after.in_msgs.saturating_sub(before.in_msgs);
        let dout = after.out_msgs.saturating_sub(before.out_msgs);
        let per = |d: u64| (published > 0).then(|| round2(d as f64 / published as f64));
        outcome.results["nats"] = json!({
            "in_msgs": din,
            "out_msgs": dout,
            "in_per_publish": per(din),
            "out_per_publish": per(dout),
        });
    }
    Ok(outcome)
}
