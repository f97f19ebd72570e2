//! Membership as the engine runs it (docs/cluster.md, "Membership"): the
//! tick, heartbeats sent and heard, goodbyes said and heard, nodes expired,
//! and when a node just started knows the cluster.
//!
//! [`Beats`] is the plain-data part, with the clock passed in: when a tick
//! heartbeats, when the node knows the cluster, whether a twin was already
//! reported. The functions around it act through [`Shared`]: a node that
//! joins or is heard again after a missed heartbeat starts a settling round
//! (`settle.rs`) towards it.
//!
//! Not here: the membership table itself (`members.rs`), and forgetting a
//! gone node's sequence numbers (the engine owns them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use gateway_metrics::cluster::Route;

use crate::members::{Change, HEARTBEAT};
use crate::settle::settle;
use crate::shared::{KNOWN_WITHIN, Shared, lock};
use crate::wire::{Kind, Meta};

/// How often membership is checked; heartbeats go every fourth tick.
pub const TICK: Duration = Duration::from_millis(250);

/// Ticks between two heartbeats.
const TICKS_PER_BEAT: u64 = (HEARTBEAT.as_millis() / TICK.as_millis()) as u64;

/// The engine's membership clock.
#[derive(Debug)]
pub struct Beats {
    /// When the engine started, and when NATS was first connected: the
    /// node knows the cluster one heartbeat period after that, at most
    /// [`KNOWN_WITHIN`] after the start.
    started: Instant,
    first_connected: Option<Instant>,
    ticks: u64,
    twin_reported: bool,
}

/// What a tick brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Time to heartbeat (when connected).
    pub heartbeat: bool,
    /// The node knows the cluster by now.
    pub known: bool,
}

impl Beats {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            first_connected: None,
            ticks: 0,
            twin_reported: false,
        }
    }

    /// NATS is connected; true the first time.
    pub fn connected(&mut self, now: Instant) -> bool {
        let first = self.first_connected.is_none();
        if first {
            self.first_connected = Some(now);
        }
        first
    }

    pub fn tick(&mut self, now: Instant) -> Tick {
        self.ticks += 1;
        // Every live node heartbeats once a period (and at once when it
        // hears a new node): one period and a tick after the first
        // connection, every live node has been heard.
        let heard_all = self
            .first_connected
            .is_some_and(|at| now.duration_since(at) >= HEARTBEAT + TICK);
        // Within the contract's bound after READY whatever happens.
        let bound = now.duration_since(self.started) >= KNOWN_WITHIN - TICK * 2;
        Tick {
            heartbeat: self.ticks.is_multiple_of(TICKS_PER_BEAT),
            known: heard_all || bound,
        }
    }

    /// A heartbeat from another run of this node's id: true when it is to
    /// be reported (the first time only).
    pub fn twin(&mut self) -> bool {
        !std::mem::replace(&mut self.twin_reported, true)
    }
}

/// Says that this node is alive, with its open connection count.
pub fn send(shared: &Shared) {
    if !shared.is_connected() {
        return;
    }
    let meta = Meta {
        n: Some(shared.registry.open_count() as u64),
        ..Meta::new(Kind::Heartbeat)
    };
    let _ = shared.tell_all(meta, Route::Control);
}

/// Sets the node gauge: this node and the others listed.
pub fn count_nodes(shared: &Shared) {
    shared.metrics.nodes.set(1 + shared.others() as i64);
}

/// A heartbeat from another node.
pub fn heard(shared: &Arc<Shared>, node: &str, run: &str, connections: u64, now: Instant) {
    let change = lock(&shared.members).heard(node, run, connections, now);
    match change {
        Change::Joined => {
            tracing::info!(%node, "node joined");
            count_nodes(shared);
            // A new node learns of this one at once, rather than within a
            // heartbeat period.
            send(shared);
            tokio::spawn(settle(shared.clone(), Some(node.to_owned())));
        }
        Change::Returned => {
            tracing::info!(%node, "node heard again after a missed heartbeat");
            tokio::spawn(settle(shared.clone(), Some(node.to_owned())));
        }
        Change::Same => {}
    }
}

/// Another node said goodbye: true when it was listed (it is gone now).
pub fn bye(shared: &Shared, node: &str, run: &str) -> bool {
    let left = lock(&shared.members).left(node, run);
    if left {
        tracing::info!(%node, "node left");
        count_nodes(shared);
    }
    left
}

/// Drops the nodes silent for too long; returns them.
pub fn expire(shared: &Shared, now: Instant) -> Vec<String> {
    let gone = lock(&shared.members).expire(now);
    for node in &gone {
        tracing::warn!(%node, "node gone (no heartbeat)");
    }
    gone
}

/// Says goodbye, then answers `done` once the client has had a moment to
/// hand it to the server.
pub fn leave(shared: &Shared, client: &Client, done: std::sync::mpsc::Sender<()>) {
    if !shared.is_connected() {
        let _ = done.send(());
        return;
    }
    let _ = shared.tell_all(Meta::new(Kind::Bye), Route::Control);
    let client = client.clone();
    tokio::spawn(async move {
        // Let the outbox hand the goodbye over, then flush.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tokio::time::timeout(Duration::from_millis(300), client.flush()).await;
        let _ = done.send(());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_every_fourth_tick() {
        let t0 = Instant::now();
        let mut beats = Beats::new(t0);
        let due: Vec<bool> = (1..=8).map(|_| beats.tick(t0).heartbeat).collect();
        assert_eq!(due, [false, false, false, true, false, false, false, true]);
    }

    #[test]
    fn the_cluster_is_known_a_period_and_a_tick_after_connecting() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut beats = Beats::new(t0);
        assert!(!beats.tick(t0 + ms(100)).known);
        assert!(beats.connected(t0 + ms(100)));
        assert!(!beats.connected(t0 + ms(200)), "only the first counts");
        assert!(!beats.tick(t0 + ms(1349)).known);
        assert!(beats.tick(t0 + ms(1350)).known);
    }

    #[test]
    fn the_cluster_is_known_within_the_bound_without_nats() {
        let t0 = Instant::now();
        let mut beats = Beats::new(t0);
        assert!(!beats.tick(t0 + KNOWN_WITHIN - TICK * 3).known);
        assert!(beats.tick(t0 + KNOWN_WITHIN - TICK * 2).known);
        // A connection late in the start does not delay it.
        let mut beats = Beats::new(t0);
        beats.connected(t0 + KNOWN_WITHIN - TICK * 3);
        assert!(beats.tick(t0 + KNOWN_WITHIN - TICK * 2).known);
    }

    #[test]
    fn a_twin_is_reported_once() {
        let mut beats = Beats::new(Instant::now());
        assert!(beats.twin());
        assert!(!beats.twin());
    }

    #[tokio::test]
    async fn joins_goodbyes_and_expiry_keep_the_list() {
        let (shared, mut outbox) = crate::shared::for_tests(100, 1 << 20);
        let t0 = Instant::now();
        heard(&shared, "b", "r", 2, t0);
        assert_eq!(shared.listed(), ["b"]);
        // A new node hears from this one at once.
        let out = outbox.try_recv().expect("a heartbeat");
        assert_eq!(
            (out.subject.as_str(), out.meta.k),
            ("gw.all", Kind::Heartbeat)
        );
        heard(&shared, "b", "r", 3, t0);
        assert!(outbox.try_recv().is_err(), "only to a new node");
        assert!(!bye(&shared, "b", "another run"));
        assert!(bye(&shared, "b", "r"));
        assert!(shared.listed().is_empty());
        heard(&shared, "c", "r", 0, t0);
        assert_eq!(expire(&shared, t0 + Duration::from_secs(10)), ["c"]);
        assert!(shared.listed().is_empty());
    }
}
