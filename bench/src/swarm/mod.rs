//! `gateway-bench swarm`: one load-generator process of a cluster run that
//! spans several processes (`bench/cluster_scale.py`, run by
//! `bench/cluster.sh --users N --nodes K`). One process can hold fewer
//! connections than `ulimit -n`; the driver starts one per node and a
//! producer, and steers them.
//!
//! A swarm process holds a share of the run's users, one connection each
//! ([`held::Held`]), and acts on JSON commands read line by line from
//! stdin, one at a time. Each command gets one JSON line on stdout with
//! `"ok"`; a long one also writes `{"progress": N}` lines (units done so
//! far) about once a second, for the driver's progress line. The clock in
//! every answer (`*_ns`) is Unix time, which the driver shares.
//!
//! | `cmd` | does | answers |
//! | --- | --- | --- |
//! | `login` | `count` users `u<first>`.. log in, user i on `targets[i % len]` | rate, latency, errors |
//! | `sub` | each held user subscribes to its own topic `t.<user>` | rate, errors |
//! | `broadcast` | `count` admin broadcasts, one after another | posts, `delivered_to` |
//! | `expect` | waits until every held user read `count` broadcasts from each of `producers` | deliveries, missing, reordered, latency |
//! | `storm` | waits for every held connection to end (its node killed), logs each user in again on a survivor, sends it a message through the admin API, and waits for it | see `storm.rs` |
//! | `check` | counts held connections that ended or read anything unexpected | |
//! | `close` | drops every held connection | |
//!
//! Not here: NATS, the nodes, their memory and CPU, and the kill: the
//! driver's.

pub mod broadcast;
pub mod held;
pub mod storm;

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::frame::Framing;
use crate::scenario::{Client, Ctx, run_indexed};
use crate::stats::{LatencySink, round2};
use held::{Event, Held, Tally, unix_ns};

/// Longest wait for an admin request's answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A command, as read from stdin.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Log users in and hold them.
    Login(LoginCmd),
    /// Subscribe each held user to its own topic.
    Sub(SubCmd),
    /// Post broadcasts through one node's admin API.
    Broadcast(broadcast::BroadcastCmd),
    /// Wait for broadcasts to arrive.
    Expect(broadcast::ExpectCmd),
    /// Survive the death of the node that holds these users.
    Storm(storm::StormCmd),
    /// Whether every held connection is still open and quiet.
    Check,
    /// Drop every held connection.
    Close,
}

/// `login`.
#[derive(Debug, Deserialize)]
pub struct LoginCmd {
    /// Client ports; user i goes to `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    /// Number of the first user.
    pub first: u64,
    /// How many users.
    pub count: u64,
    /// Logins in flight at once.
    pub parallel: usize,
}

/// `sub`.
#[derive(Debug, Deserialize)]
pub struct SubCmd {
    /// Subscriptions in flight at once.
    pub parallel: usize,
    /// How many held users subscribe, the first that have not yet.
    pub count: usize,
}

/// The user of number `n`.
pub fn user_name(n: u64) -> String {
    format!("u{n}")
}

/// `HELLO user` on a fresh connection, until `OK HELLO`: broadcasts
/// (`PUSH b`) may come first, as they reach every open connection; they
/// are not this connection's to check (it was not there when they began).
pub async fn hello(client: &mut Client, user: &str) -> Result<()> {
    client.send(&[format!("HELLO {user}").as_bytes()]).await?;
    loop {
        let f = client.recv().await?;
        if f.starts_with(b"OK HELLO ") {
            return Ok(());
        }
        if !f.starts_with(b"PUSH b ") {
            bail!(
                "HELLO {user}: expected \"OK HELLO\", got {:?}",
                String::from_utf8_lossy(&f[..f.len().min(200)])
            );
        }
    }
}

/// What one swarm process holds.
#[derive(Default)]
pub struct Swarm {
    held: Vec<Held>,
    tally: Arc<Tally>,
}

/// Reads commands from stdin until it ends.
pub async fn run() -> Result<()> {
    // A thread reads stdin (tokio's own stdin is a feature the gateway's
    // build does not need).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut swarm = Swarm::default();
    while let Some(line) = lines.recv().await {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Command>(&line) {
            Err(e) => json!({"ok": false, "error": format!("bad command {line:?}: {e}")}),
            Ok(cmd) => match swarm.act(cmd).await {
                Ok(mut v) => {
                    v["ok"] = json!(true);
                    v
                }
                Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
            },
        };
        emit(&answer);
    }
    Ok(())
}

/// One line on stdout.
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Writes `{"progress": N}` once a second until dropped.
pub struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    /// Reports `done` from now on.
    pub fn start(done: Arc<AtomicU64>) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                emit(&json!({"progress": done.load(Ordering::Relaxed)}));
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The settings a [`Client`] connects with, for `target`.
pub fn ctx_for(target: SocketAddr) -> Ctx {
    Ctx {
        target,
        admin: None,
        framing: Framing::Lines,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        pid: None,
        progress: false,
        tls: None,
        read_buffer: None,
    }
}

/// What the held connections read that nothing waited for: the ends
/// (a `KICK`, an EOF) and any other frame, each counted with its user.
pub fn leftovers(held: &mut [Held]) -> (Errors, Errors) {
    let mut ended = Errors::default();
    let mut unexpected = Errors::default();
    for h in held {
        for e in h.pending() {
            match e {
                Event::Closed(why) => ended.add(format!("{}: {why}", h.user)),
                Event::Frame(f) => unexpected.add(format!(
                    "{}: {:?}",
                    h.user,
                    String::from_utf8_lossy(&f[..f.len().min(200)])
                )),
            }
        }
    }
    (ended, unexpected)
}

/// Errors counted, the first kept.
#[derive(Debug, Default)]
pub struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    /// One more.
    pub fn add(&mut self, e: impl std::fmt::Display) {
        self.count += 1;
        self.first.get_or_insert_with(|| e.to_string());
    }

    /// `{"count", "first"}`.
    pub fn json(&self) -> Value {
        json!({"count": self.count, "first": self.first})
    }

    /// How many.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Swarm {
    async fn act(&mut self, cmd: Command) -> Result<Value> {
        match cmd {
            Command::Login(c) => self.login(c).await,
            Command::Sub(c) => self.sub(c).await,
            Command::Broadcast(c) => broadcast::produce(&c).await,
            Command::Expect(c) => broadcast::expect(&mut self.held, &self.tally, &c).await,
            Command::Storm(c) => {
                let held = std::mem::take(&mut self.held);
                let (held, answer) = storm::run(held, &self.tally, &c).await?;
                self.held = held;
                Ok(answer)
            }
            Command::Check => Ok(self.check()),
            Command::Close => {
                let n = self.held.len();
                self.held.clear();
                Ok(json!({"closed": n}))
            }
        }
    }

    async fn login(&mut self, c: LoginCmd) -> Result<Value> {
        if c.targets.is_empty() {
            bail!("login needs at least one target");
        }
        let done = Arc::new(AtomicU64::new(0));
        let _ticker = Ticker::start(done.clone());
        let sink = LatencySink::new();
        let start_ns = unix_ns();
        let started = Instant::now();
        let targets = c.targets.clone();
        let results = run_indexed(c.count as usize, c.parallel, |i| {
            let number = c.first + i as u64;
            let ctx = ctx_for(targets[i % targets.len()]);
            let (sink, done) = (sink.clone(), done.clone());
            async move {
                let t0 = Instant::now();
                let user = user_name(number);
                let mut client = Client::connect(&ctx, true).await?;
                hello(&mut client, &user).await?;
                sink.add(&[u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)]);
                done.fetch_add(1, Ordering::Relaxed);
                Ok((user, number, client))
            }
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let end_ns = unix_ns();
        let mut errors = Errors::default();
        let mut n = 0u64;
        for r in results {
            match r {
                Ok((user, number, client)) => {
                    self.held
                        .push(Held::new(user, number, client, self.tally.clone()));
                    n += 1;
                }
                Err(e) => errors.add(format!("{e:#}")),
            }
        }
        Ok(json!({
            "logged_in": n,
            "errors": errors.json(),
            "start_ns": start_ns,
            "end_ns": end_ns,
            "seconds": round2(seconds),
            "per_sec": round2(n as f64 / seconds.max(1e-9)),
            "latency": sink.summary(),
            "latency_buckets": sink.buckets(),
        }))
    }

    async fn sub(&mut self, c: SubCmd) -> Result<Value> {
        let done = Arc::new(AtomicU64::new(0));
        let _ticker = Ticker::start(done.clone());
        let sink = LatencySink::new();
        let start_ns = unix_ns();
        let started = Instant::now();
        let sem = Arc::new(Semaphore::new(c.parallel.max(1)));
        let mut set = JoinSet::new();
        let (mut todo, mut rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| !h.subscribed);
        let later = todo.split_off(c.count.min(todo.len()));
        rest.extend(later);
        self.held = rest;
        for mut h in todo {
            h.subscribed = true;
            let permit = sem.clone().acquire_owned().await?;
            let (sink, done) = (sink.clone(), done.clone());
            set.spawn(async move {
                let t0 = Instant::now();
                let topic = format!("t.{}", h.user);
                let r = async {
                    h.send(format!("SUB {topic}").as_bytes()).await?;
                    h.expect(
                        format!("OK SUB {topic}").as_bytes(),
                        crate::scenario::STEP_TIMEOUT,
                    )
                    .await?;
                    anyhow::Ok(())
                }
                .await;
                drop(permit);
                if r.is_ok() {
                    sink.add(&[u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)]);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (h, r)
            });
        }
        let mut errors = Errors::default();
        while let Some(j) = set.join_next().await {
            match j {
                Ok((h, r)) => {
                    if let Err(e) = r {
                        errors.add(format!("{e:#}"));
                    }
                    self.held.push(h);
                }
                Err(e) => errors.add(format!("task: {e}")),
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        Ok(json!({
            "subscribed": n,
            "errors": errors.json(),
            "start_ns": start_ns,
            "end_ns": unix_ns(),
            "seconds": round2(seconds),
            "per_sec": round2(n as f64 / seconds.max(1e-9)),
            "latency": sink.summary(),
        }))
    }

    fn check(&mut self) -> Value {
        let (ended, unexpected) = leftovers(&mut self.held);
        json!({
            "held": self.held.len(),
            "ended": ended.json(),
            "unexpected": unexpected.json(),
        })
    }
}
