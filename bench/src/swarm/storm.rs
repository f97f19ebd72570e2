//! `storm`: the users of a node that is about to be killed. The driver
//! sends this command, then kills the node (SIGKILL); every held
//! connection ends, and its user at once
//!
//! 1. logs in again on a survivor (`targets[n % len]`, at most `parallel`
//!    logins in flight), timing `HELLO` to `OK HELLO`;
//! 2. once `OK HELLO` is read, is sent `s <user> <ok-unix-ns>` through the
//!    admin API of another survivor (`admins[(n + 1) % len]`,
//!    `POST /api/v1/users/{user}/send`: a cross-node user route), which
//!    must answer 202;
//! 3. reads `PUSH s <user> <ok-unix-ns>` on its new connection, and
//!    nothing else before it: the send made after `OK HELLO` reaches the
//!    new connection (contract section 10, "One login per user").
//!
//! Anything else is counted: a login that failed, a send refused, a
//! message that did not come within 10 s (lost), a wrong frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::held::{Event, Held, Tally, unix_ns};
use super::{Errors, HTTP_TIMEOUT, Ticker, ctx_for};
use crate::http::{HttpClient, Response};
use crate::scenario::Client;
use crate::stats::{LatencySink, round2};

/// How long a sent message may take to arrive before it counts as lost.
const ARRIVAL: Duration = Duration::from_secs(10);

/// `storm`.
#[derive(Debug, Deserialize)]
pub struct StormCmd {
    /// Client ports of the surviving nodes.
    pub targets: Vec<SocketAddr>,
    /// Admin ports of the surviving nodes, in the same order.
    pub admins: Vec<SocketAddr>,
    /// Logins in flight at once.
    pub parallel: usize,
    /// Keep-alive admin connections per node for the sends.
    pub http_per_admin: usize,
    /// Longest wait for the whole storm, in seconds.
    pub timeout_s: f64,
}

/// Keep-alive HTTP clients to one admin port, lent out one per request.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<HttpClient>>,
    room: Semaphore,
}

impl Pool {
    fn new(addr: SocketAddr, size: usize) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            room: Semaphore::new(size.max(1)),
        }
    }

    /// Posts once a connection is free; returns the answer and when the
    /// request was sent (the wait for a connection left out).
    async fn post(&self, path: &str, body: &[u8]) -> Result<(Response, Instant)> {
        let _room = self.room.acquire().await?;
        let sent = Instant::now();
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut client = taken.unwrap_or_else(|| HttpClient::new(self.addr));
        let r = match tokio::time::timeout(HTTP_TIMEOUT, client.post_json(path, body)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "POST {path} to {}: no answer within {HTTP_TIMEOUT:?}",
                self.addr
            )),
        };
        if r.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
        }
        r.map(|r| (r, sent))
    }
}

/// How one user's storm went.
#[derive(Default)]
struct One {
    ended_ns: u64,
    ok_ns: Option<u64>,
    hello_us: Option<u64>,
    send_us: Option<u64>,
    /// Login failed: why.
    login_error: Option<String>,
    /// Something before the end of the old connection.
    early: Option<String>,
    /// The send not answered 202: why.
    send_error: Option<String>,
    /// The message did not arrive: why.
    lost: Option<String>,
    held: Option<Held>,
}

/// Runs the storm for `held`; returns the connections that stand after it.
pub async fn run(held: Vec<Held>, tally: &Arc<Tally>, c: &StormCmd) -> Result<(Vec<Held>, Value)> {
    if c.targets.is_empty() || c.targets.len() != c.admins.len() {
        bail!("storm needs as many admins as targets, at least one");
    }
    if c.timeout_s.is_nan() || c.timeout_s <= 0.0 {
        bail!("storm needs a positive timeout_s");
    }
    let users = held.len();
    let deadline = Instant::now() + Duration::from_secs_f64(c.timeout_s);
    let pools: Arc<Vec<Pool>> = Arc::new(
        c.admins
            .iter()
            .map(|a| Pool::new(*a, c.http_per_admin))
            .collect(),
    );
    let targets = Arc::new(c.targets.clone());
    let gate = Arc::new(Semaphore::new(c.parallel.max(1)));
    let done = Arc::new(AtomicU64::new(0));
    let _ticker = Ticker::start(done.clone());
    let armed_ns = unix_ns();
    let mut set = JoinSet::new();
    for h in held {
        let (pools, targets, gate, done, tally) = (
            pools.clone(),
            targets.clone(),
            gate.clone(),
            done.clone(),
            tally.clone(),
        );
        set.spawn(async move {
            let one =
                tokio::time::timeout_at(deadline, one(h, &targets, &pools, &gate, &done, tally))
                    .await;
            one.unwrap_or_else(|_| One {
                login_error: Some("the storm's timeout passed".to_owned()),
                ..One::default()
            })
        });
    }
    let mut out = Vec::with_capacity(users);
    let (hello, send) = (LatencySink::new(), LatencySink::new());
    let (mut login_errors, mut early, mut send_errors, mut lost) = (
        Errors::default(),
        Errors::default(),
        Errors::default(),
        Errors::default(),
    );
    let (mut first_end, mut last_end, mut last_ok, mut relogged, mut delivered) =
        (u64::MAX, 0u64, 0u64, 0u64, 0u64);
    while let Some(j) = set.join_next().await {
        let one = match j {
            Ok(one) => one,
            Err(e) => {
                login_errors.add(format!("task: {e}"));
                continue;
            }
        };
        if one.ended_ns > 0 {
            first_end = first_end.min(one.ended_ns);
            last_end = last_end.max(one.ended_ns);
        }
        if let Some(e) = one.early {
            early.add(e);
        }
        if let Some(e) = one.login_error {
            login_errors.add(e);
        }
        if let (Some(ok), Some(us)) = (one.ok_ns, one.hello_us) {
            relogged += 1;
            last_ok = last_ok.max(ok);
            hello.add(&[us]);
        }
        if let Some(e) = one.send_error {
            send_errors.add(e);
        }
        if let Some(e) = one.lost {
            lost.add(e);
        }
        if let Some(us) = one.send_us {
            delivered += 1;
            send.add(&[us]);
        }
        if let Some(h) = one.held {
            out.push(h);
        }
    }
    let answer = json!({
        "users": users,
        "armed_ns": armed_ns,
        "first_end_ns": (first_end != u64::MAX).then_some(first_end),
        "last_end_ns": last_end,
        "last_ok_ns": last_ok,
        "relogged": relogged,
        "login_errors": login_errors.json(),
        "early": early.json(),
        "hello_latency": hello.summary(),
        "hello_latency_buckets": hello.buckets(),
        "sends_delivered": delivered,
        "send_errors": send_errors.json(),
        "lost": lost.json(),
        "send_latency": send.summary(),
        "seconds_from_first_end": (first_end != u64::MAX && last_ok > first_end)
            .then(|| round2((last_ok - first_end) as f64 / 1e9)),
    });
    Ok((out, answer))
}

async fn one(
    mut h: Held,
    targets: &[SocketAddr],
    pools: &[Pool],
    gate: &Semaphore,
    done: &AtomicU64,
    tally: Arc<Tally>,
) -> One {
    let mut r = One::default();
    // 1. The node dies: the connection ends. Anything read before is not
    // expected (the driver sends this command while the node is quiet).
    loop {
        match h.next_event(Duration::from_secs(3600)).await {
            Some(Event::Closed(_)) | None => break,
            Some(Event::Frame(f)) => {
                r.early.get_or_insert_with(|| {
                    format!(
                        "{}: {:?}",
                        h.user,
                        String::from_utf8_lossy(&f[..f.len().min(200)])
                    )
                });
            }
        }
    }
    r.ended_ns = unix_ns();
    let (user, number) = (h.user.clone(), h.number);
    drop(h);
    let slot = number as usize % targets.len();
    let login = async {
        let _permit = gate.acquire().await?;
        let t0 = Instant::now();
        let mut client = Client::connect(&ctx_for(targets[slot]), true).await?;
        super::hello(&mut client, &user).await?;
        anyhow::Ok((client, t0.elapsed()))
    };
    let (client, took) = match login.await {
        Ok(x) => x,
        Err(e) => {
            r.login_error = Some(format!("{user}: {e:#}"));
            return r;
        }
    };
    let ok_ns = unix_ns();
    r.ok_ns = Some(ok_ns);
    r.hello_us = Some(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    done.fetch_add(1, Ordering::Relaxed);
    let mut h = Held::new(user.clone(), number, client, tally);
    // 2. A send through another node, after OK HELLO.
    let token = format!("s {user} {ok_ns}");
    let body = json!({"data": token}).to_string();
    let pool = &pools[(slot + 1) % pools.len()];
    let t0 = match pool
        .post(&format!("/api/v1/users/{user}/send"), body.as_bytes())
        .await
    {
        Ok((resp, sent)) if resp.status == 202 => sent,
        Ok((resp, _)) => {
            r.send_error = Some(format!("{user}: {} {}", resp.status, resp.text()));
            r.held = Some(h);
            return r;
        }
        Err(e) => {
            r.send_error = Some(format!("{user}: {e:#}"));
            r.held = Some(h);
            return r;
        }
    };
    // 3. It arrives on the new connection, and nothing before it.
    match h.expect(b"PUSH s ", ARRIVAL).await {
        Ok(f) if f[b"PUSH ".len()..] == *token.as_bytes() => {
            r.send_us = Some(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        Ok(f) => {
            r.lost = Some(format!(
                "{user}: got {:?} for {token:?}",
                String::from_utf8_lossy(&f)
            ));
        }
        Err(e) => r.lost = Some(format!("{e:#}")),
    }
    r.held = Some(h);
    r
}
