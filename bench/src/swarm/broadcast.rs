//! Broadcasts through the admin API: a producer posts them one after
//! another (`POST /api/v1/broadcast`, `{"data": "b <producer> <seq>
//! <posted-unix-ns>"}`), and every swarm process waits until each of its
//! connections has read them all. Each connection checks the sequence of
//! every producer (held.rs); one admin client's broadcasts made one after
//! another keep their order on every node (contract section 10).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::held::{Held, Tally, unix_ns};
use super::{Errors, Ticker, leftovers};
use crate::http::HttpClient;
use crate::stats::LatencySink;

/// `broadcast`.
#[derive(Debug, Deserialize)]
pub struct BroadcastCmd {
    /// The admin address of the node to post to.
    pub admin: SocketAddr,
    /// This producer's id in the payloads.
    pub producer: u32,
    /// Broadcasts to post.
    pub count: u64,
    /// Pause between one broadcast's answer and the next post, in
    /// milliseconds (0: back to back).
    #[serde(default)]
    pub interval_ms: u64,
}

/// `expect`.
#[derive(Debug, Deserialize)]
pub struct ExpectCmd {
    /// Producers posting this round.
    pub producers: u64,
    /// Broadcasts each posts.
    pub count: u64,
    /// Longest wait for them, in seconds.
    pub timeout_s: f64,
}

/// Posts `c.count` broadcasts, each once the previous one was answered.
pub async fn produce(c: &BroadcastCmd) -> Result<Value> {
    let mut http = HttpClient::new(c.admin);
    let done = Arc::new(AtomicU64::new(0));
    let _ticker = Ticker::start(done.clone());
    let posts = LatencySink::new();
    let mut errors = Errors::default();
    let (mut delivered_to, mut answered_min, mut expected_max) = (0u64, u64::MAX, 0u64);
    let start_ns = unix_ns();
    for seq in 0..c.count {
        if seq > 0 && c.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(c.interval_ms)).await;
        }
        let t0 = Instant::now();
        let body = json!({"data": format!("b {} {seq} {}", c.producer, unix_ns())}).to_string();
        let post = tokio::time::timeout(
            super::HTTP_TIMEOUT,
            http.post_json("/api/v1/broadcast", body.as_bytes()),
        );
        match post.await {
            Err(_) => {
                errors.add(format!(
                    "broadcast {seq}: no answer within {:?}",
                    super::HTTP_TIMEOUT
                ));
                http = HttpClient::new(c.admin);
            }
            Ok(Ok(r)) if r.status == 200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                delivered_to += v["delivered_to"].as_u64().unwrap_or(0);
                answered_min = answered_min.min(v["nodes"]["answered"].as_u64().unwrap_or(0));
                expected_max = expected_max.max(v["nodes"]["expected"].as_u64().unwrap_or(0));
            }
            Ok(Ok(r)) => errors.add(format!("broadcast {seq}: {} {}", r.status, r.text())),
            Ok(Err(e)) => errors.add(format!("broadcast {seq}: {e:#}")),
        }
        posts.add(&[u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)]);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(json!({
        "posted": c.count,
        "errors": errors.json(),
        "start_ns": start_ns,
        "end_ns": unix_ns(),
        "delivered_to": delivered_to,
        "nodes_answered_min": (answered_min != u64::MAX).then_some(answered_min),
        "nodes_expected_max": expected_max,
        "post_latency": posts.summary(),
    }))
}

/// Waits until every held connection read `count` broadcasts from each of
/// `producers` (or the timeout), then reports and clears the tally.
pub async fn expect(held: &mut [Held], tally: &Tally, c: &ExpectCmd) -> Result<Value> {
    if c.producers == 0 || c.timeout_s.is_nan() || c.timeout_s <= 0.0 {
        bail!("expect needs producers > 0 and a positive timeout_s");
    }
    let goal = held.len() as u64 * c.producers * c.count;
    let done = Arc::new(AtomicU64::new(0));
    let _ticker = Ticker::start(done.clone());
    let deadline = Instant::now() + Duration::from_secs_f64(c.timeout_s);
    while tally.in_order.load(Ordering::Acquire) < goal && Instant::now() < deadline {
        done.store(tally.received.load(Ordering::Acquire), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What else the connections read meanwhile (a KICK, an end).
    let (ended, unexpected) = leftovers(held);
    let in_order = tally.in_order.load(Ordering::Acquire);
    let first = tally.first_ns.load(Ordering::Acquire);
    let answer = json!({
        "connections": held.len(),
        "expected": goal,
        "received": tally.received.load(Ordering::Acquire),
        "missing": goal.saturating_sub(in_order),
        "reordered": tally.reordered.load(Ordering::Acquire),
        "malformed": tally.malformed.load(Ordering::Acquire),
        "first_ns": (first != u64::MAX).then_some(first),
        "last_ns": tally.last_ns.load(Ordering::Acquire),
        "latency": tally.latency.summary(),
        "latency_buckets": tally.latency.buckets(),
        "ended": ended.json(),
        "unexpected": unexpected.json(),
    });
    tally.reset();
    Ok(answer)
}
