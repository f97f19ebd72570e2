//! What the actix threads and the NATS thread share: the registry, the
//! outbox (a bounded byte budget in front of one queue), the membership
//! table, open requests and login claims.
//!
//! The budget (`--nats-pending-bytes`) is for messages and requests only:
//! control traffic (logins, claims, heartbeats, answers, goodbyes) goes
//! through the same queue, so it keeps its place in the sending order, but
//! never counts against the budget and is never refused for want of room.
//! It is small and only queued while NATS is connected (a heartbeat a
//! second, a claim per login, an answer per request received), so it
//! cannot grow the queue while NATS is away.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use conn_actor::{ConnId, Name};
use gateway_metrics::cluster::{ClusterDrop, ClusterMetrics, Route};
use gateway_registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::info::{ClusterInfo, NatsInfo, NodeInfo};
use crate::members::Members;
use crate::settings::Settings;
use crate::wire::{Claim, HEADER_ALLOWANCE, Meta, Subjects};

/// A message waiting to be sent.
pub struct Outgoing {
    pub subject: String,
    pub meta: Meta,
    pub body: Bytes,
    pub route: Route,
    /// Its share of `--nats-pending-bytes` (0 for control traffic).
    pub size: usize,
    /// Where NATS says "no responders" when nobody subscribes to `subject`.
    pub reply: Option<String>,
}

/// What the engine is asked to do.
pub enum Cmd {
    /// A local subscriber to `topic`: make sure the node hears it; answer
    /// `done` once the subscription is live (or NATS is away).
    Interest {
        topic: Name,
        done: oneshot::Sender<()>,
    },
    /// A local subscriber left `topic`: stop hearing it if it was the last.
    MaybeUnsub { topic: Name },
    /// Say goodbye and answer.
    Leave { done: std::sync::mpsc::Sender<()> },
}

/// An answer to one of this node's requests; `meta.o` is the node that
/// answered.
#[derive(Debug)]
pub struct Answer {
    pub meta: Meta,
    pub body: Bytes,
    /// NATS said that nobody subscribes to the node's subject: it is gone
    /// (killed, or its connection lost), so it holds nothing.
    pub absent: bool,
}

/// What a request got from the nodes it was sent to.
#[derive(Debug, Default)]
pub struct Collected {
    /// Answers of nodes that are there, in arrival order.
    pub answers: Vec<Answer>,
    /// Nodes NATS said were not there.
    pub absent: Vec<String>,
    /// Nodes that did not answer in time (or were skipped once they
    /// missed a heartbeat, where the caller asked for that).
    pub missing: Vec<String>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    TooLarge,
    Overflow,
    Unreachable,
}

pub struct Shared {
    pub settings: Settings,
    /// History in the stream, where `--history-size` turns it on.
    pub history: Option<crate::stored::ClusterHistory>,
    pub run: String,
    pub subjects: Subjects,
    pub registry: Registry,
    pub metrics: ClusterMetrics,
    outbox: mpsc::UnboundedSender<Outgoing>,
    outbox_bytes: AtomicUsize,
    pub cmds: mpsc::UnboundedSender<Cmd>,
    connected: AtomicBool,
    pub server: Mutex<Option<String>>,
    pub max_payload: AtomicUsize,
    pub members: Mutex<Members>,
    /// Topics whose subscription is live; held while deciding to drop one,
    /// so a `SUB` never trusts a subscription that is going away.
    pub live_topics: Mutex<HashSet<Name>>,
    requests: Mutex<HashMap<u64, mpsc::UnboundedSender<Answer>>>,
    next_request: AtomicU64,
    clock: AtomicU64,
    /// This node's logins: the claim each local holder made.
    pub claims: Mutex<HashMap<Name, (Claim, ConnId)>>,
    /// Whether this node has heard from the cluster once since it started
    /// (or NATS could not be reached at start): until then it does not
    /// know which nodes there are, so `/readyz` is 503 and cross-node
    /// answers wait for it rather than report 404.
    known: tokio::sync::watch::Sender<bool>,
}

/// The longest a cross-node answer waits for the node to know the cluster
/// (the contract's bound on it after `READY`).
pub const KNOWN_WITHIN: Duration = Duration::from_secs(3);

/// Locks, carrying on after a panic elsewhere (every critical section
/// leaves its data consistent).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        settings: Settings,
        run: String,
        registry: Registry,
        metrics: ClusterMetrics,
        history: Option<gateway_history::Settings>,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<Cmd>,
        mpsc::UnboundedReceiver<Outgoing>,
        Option<mpsc::UnboundedReceiver<crate::stored::FeedCmd>>,
    ) {
        let (history, feed) = match history {
            Some(history) => {
                let (history, feed) = crate::stored::ClusterHistory::new(
                    history,
                    registry.metrics().clone(),
                    settings.timeout,
                );
                (Some(history), Some(feed))
            }
            None => (None, None),
        };
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (cmds, cmds_rx) = mpsc::unbounded_channel();
        metrics.nodes.set(1);
        let shared = Self {
            history,
            subjects: Subjects::new(&settings.prefix),
            settings,
            run,
            registry,
            metrics,
            outbox,
            outbox_bytes: AtomicUsize::new(0),
            cmds,
            connected: AtomicBool::new(false),
            server: Mutex::new(None),
            max_payload: AtomicUsize::new(1024 * 1024),
            members: Mutex::new(Members::default()),
            live_topics: Mutex::new(HashSet::new()),
            requests: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            clock: AtomicU64::new(0),
            claims: Mutex::new(HashMap::new()),
            known: tokio::sync::watch::Sender::new(false),
        };
        (shared, cmds_rx, outbox_rx, feed)
    }

    /// The cluster's history, where `topic` has one.
    pub fn history_of(&self, topic: &str) -> Option<&crate::stored::ClusterHistory> {
        self.history.as_ref().filter(|h| h.covers(topic))
    }

    pub fn node(&self) -> &str {
        &self.settings.node_id
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        self.metrics.nats_connected.set(i64::from(connected));
    }

    /// Other live nodes.
    pub fn others(&self) -> usize {
        lock(&self.members).count()
    }

    /// Every other listed node.
    pub fn listed(&self) -> Vec<String> {
        lock(&self.members).ids()
    }

    /// The other listed nodes that have not missed a heartbeat.
    pub fn fresh(&self) -> Vec<String> {
        lock(&self.members).fresh(Instant::now())
    }

    /// Whether this node has heard from the cluster once (see `known`).
    pub fn knows_cluster(&self) -> bool {
        *self.known.borrow()
    }

    /// From now on the node knows the cluster.
    pub fn set_known(&self) {
        self.known.send_replace(true);
    }

    /// Waits until the node knows the cluster, at most [`KNOWN_WITHIN`].
    pub async fn wait_known(&self) {
        let mut known = self.known.subscribe();
        let _ = tokio::time::timeout(KNOWN_WITHIN, known.wait_for(|k| *k)).await;
    }

    /// Counts a cross-node message or request that was not carried
    /// because NATS is not connected.
    pub fn unreachable(&self) {
        self.metrics.dropped(ClusterDrop::Unreachable);
    }

    /// Whether a message of `body` bytes (and `meta`) fits NATS's
    /// `max_payload`.
    pub fn fits(&self, meta: &Meta, body: &[u8]) -> bool {
        Self::size(meta, body) <= self.max_payload.load(Ordering::Relaxed)
    }

    fn size(meta: &Meta, body: &[u8]) -> usize {
        body.len() + meta.encode().len() + HEADER_ALLOWANCE
    }

    /// Queues a message. `buffer`: hold it while NATS is away (publishes);
    /// otherwise refuse it at once (requests, which would time out).
    pub fn send(
        &self,
        subject: String,
        meta: Meta,
        body: Bytes,
        route: Route,
        buffer: bool,
    ) -> Result<(), NotSent> {
        self.queue(subject, None, meta, body, route, buffer)
    }

    /// Queues request `meta.q` to one node, with a reply subject on which
    /// NATS says so at once if that node is not there.
    pub fn ask(&self, node: &str, meta: Meta, body: Bytes, route: Route) -> Result<(), NotSent> {
        let reply = meta
            .q
            .map(|q| self.subjects.reply(self.node(), &self.run, q, node));
        self.queue(self.subjects.node(node), reply, meta, body, route, false)
    }

    fn queue(
        &self,
        subject: String,
        reply: Option<String>,
        meta: Meta,
        body: Bytes,
        route: Route,
        buffer: bool,
    ) -> Result<(), NotSent> {
        let size = Self::size(&meta, &body);
        if size > self.max_payload.load(Ordering::Relaxed) {
            self.metrics.dropped(ClusterDrop::TooLarge);
            return Err(NotSent::TooLarge);
        }
        if !buffer && !self.is_connected() {
            self.metrics.dropped(ClusterDrop::Unreachable);
            return Err(NotSent::Unreachable);
        }
        // Control traffic always has room (see the module's doc).
        let control = matches!(route, Route::Login | Route::Control);
        let size = if control { 0 } else { size };
        let limit = self.settings.pending_bytes;
        let admitted = control
            || self
                .outbox_bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                    (held + size <= limit).then_some(held + size)
                })
                .is_ok();
        if !admitted {
            self.metrics.dropped(ClusterDrop::Overflow);
            return Err(NotSent::Overflow);
        }
        let outgoing = Outgoing {
            subject,
            meta,
            body,
            route,
            size,
            reply,
        };
        if self.outbox.send(outgoing).is_err() {
            self.sent(size);
            self.metrics.dropped(ClusterDrop::Unreachable);
            return Err(NotSent::Unreachable);
        }
        Ok(())
    }

    /// Queues an answer (or a count) to a request of `node`, on its own
    /// subject. Not queued: counted where it was refused, and the asking
    /// node stops waiting at its timeout.
    pub fn reply(&self, node: &str, meta: Meta, body: Bytes) {
        let _ = self.send(self.subjects.node(node), meta, body, Route::Control, false);
    }

    /// Queues a message without a body that every node hears (heartbeats,
    /// goodbyes, login reminders): control traffic, refused at once while
    /// NATS is away.
    pub fn tell_all(&self, meta: Meta, route: Route) -> Result<(), NotSent> {
        self.send(self.subjects.all(), meta, Bytes::new(), route, false)
    }

    /// A queued message left the buffer.
    pub fn sent(&self, size: usize) {
        self.outbox_bytes.fetch_sub(size, Ordering::SeqCst);
    }

    /// Opens a request: its id and where its answers arrive.
    pub fn open_request(self: &Arc<Self>) -> Request {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.requests).insert(id, tx);
        Request {
            shared: self.clone(),
            id,
            answers: rx,
            started: Instant::now(),
        }
    }

    /// Hands an answer to its request, if it is still open.
    pub fn answered(&self, answer: Answer) {
        let Some(id) = answer.meta.q else { return };
        if let Some(tx) = lock(&self.requests).get(&id) {
            let _ = tx.send(answer);
        }
    }

    /// A login claim, newer than every claim this node made or saw.
    pub fn claim(&self, conn: ConnId) -> Claim {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut t = 0;
        let _ = self
            .clock
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                t = now.max(last + 1);
                Some(t)
            });
        Claim {
            t,
            node: self.settings.node_id.clone(),
            run: self.run.clone(),
            conn,
        }
    }

    /// Keeps the clock ahead of a claim seen from another node.
    pub fn observe(&self, claim: &Claim) {
        self.clock.fetch_max(claim.t, Ordering::SeqCst);
    }

    pub fn info(&self) -> ClusterInfo {
        let mut nodes = vec![NodeInfo {
            id: self.node().to_owned(),
            connections: self.registry.open_count() as u64,
            last_seen_seconds: 0.0,
        }];
        let now = Instant::now();
        nodes.extend(lock(&self.members).iter().map(|(id, m)| NodeInfo {
            id: id.clone(),
            connections: m.connections,
            last_seen_seconds: now.duration_since(m.last_seen).as_secs_f64(),
        }));
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        ClusterInfo {
            node: self.node().to_owned(),
            nats: Some(NatsInfo {
                connected: self.is_connected(),
                server: lock(&self.server).clone(),
            }),
            nodes,
        }
    }

    pub fn leave(&self, bound: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.cmds.send(Cmd::Leave { done }).is_ok() {
            let _ = wait.recv_timeout(bound);
        }
    }
}

/// An open request; closed when dropped.
pub struct Request {
    shared: Arc<Shared>,
    pub id: u64,
    answers: mpsc::UnboundedReceiver<Answer>,
    started: Instant,
}

/// How often a request that does not wait on silent nodes looks again at
/// which nodes have missed a heartbeat.
const RECHECK: Duration = Duration::from_millis(100);

impl Request {
    /// Answers of `nodes` until each answered or was found absent, `enough`
    /// says stop, or `--cluster-timeout` ran out. `skip_stale`: stop
    /// waiting for a node once it has missed a heartbeat.
    pub async fn collect(
        &mut self,
        nodes: Vec<String>,
        enough: impl Fn(&Answer) -> bool,
        skip_stale: bool,
    ) -> Collected {
        let deadline = tokio::time::Instant::from_std(self.started + self.shared.settings.timeout);
        let mut pending: HashSet<String> = nodes.into_iter().collect();
        let mut got = Collected::default();
        let mut stopped = false;
        while !pending.is_empty() {
            let wake = match skip_stale {
                true => deadline.min(tokio::time::Instant::now() + RECHECK),
                false => deadline,
            };
            match tokio::time::timeout_at(wake, self.answers.recv()).await {
                Ok(Some(answer)) => {
                    // One answer per node: a late "no responders" after a
                    // real answer (or the reverse) changes nothing.
                    if !pending.remove(&answer.meta.o) {
                        continue;
                    }
                    if answer.absent {
                        got.absent.push(answer.meta.o);
                        continue;
                    }
                    let stop = enough(&answer);
                    got.answers.push(answer);
                    if stop {
                        stopped = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => {
                    let members = lock(&self.shared.members);
                    let now = Instant::now();
                    pending.retain(|node| {
                        let fresh = members.is_fresh(node, now);
                        if !fresh {
                            got.missing.push(node.clone());
                        }
                        fresh
                    });
                }
            }
        }
        if !stopped {
            got.missing.extend(pending);
        }
        self.shared
            .metrics
            .request_duration
            .observe(self.started.elapsed().as_secs_f64());
        got
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        lock(&self.shared.requests).remove(&self.id);
    }
}

/// A connected node `me` of run `r1` under prefix `gw`, with no NATS
/// behind it: what it queues is read from the outbox.
#[cfg(test)]
pub fn for_tests(
    timeout_ms: u64,
    pending_bytes: usize,
) -> (Arc<Shared>, mpsc::UnboundedReceiver<Outgoing>) {
    use conn_actor::{FrameCodec, Framing};
    let (prometheus, metrics) = gateway_metrics::new_registry().expect("metrics");
    let registry = Registry::new(metrics, FrameCodec::new(Framing::Lines, 64), None);
    let cluster = ClusterMetrics::register(&prometheus).expect("cluster metrics");
    let settings = Settings {
        urls: vec!["nats://127.0.0.1:4222".into()],
        node_id: "me".into(),
        prefix: "gw".into(),
        timeout: Duration::from_millis(timeout_ms),
        pending_bytes,
    };
    let (shared, _cmds, outbox, _) = Shared::new(settings, "r1".into(), registry, cluster, None);
    let shared = Arc::new(shared);
    shared.set_connected(true);
    (shared, outbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::STALE;
    use crate::wire::{Kind, Status};

    fn shared(
        timeout_ms: u64,
        pending_bytes: usize,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Outgoing>) {
        for_tests(timeout_ms, pending_bytes)
    }

    fn answer(node: &str, q: u64, absent: bool) -> Answer {
        Answer {
            meta: Meta {
                o: node.into(),
                ..Meta::answer(q, Status::NotFound)
            },
            body: Bytes::new(),
            absent,
        }
    }

    #[test]
    fn control_traffic_has_room_when_messages_do_not() {
        let (shared, _outbox) = shared(100, 2048);
        let send = |kind: Kind, route: Route, body: &'static [u8]| {
            shared.send(
                "gw.all".into(),
                Meta::new(kind),
                Bytes::from_static(body),
                route,
                true,
            )
        };
        let big: &[u8] = &[b'x'; 1024];
        assert_eq!(send(Kind::Publish, Route::Publish, big), Ok(()));
        assert_eq!(
            send(Kind::Publish, Route::Publish, big),
            Err(NotSent::Overflow)
        );
        for _ in 0..100 {
            assert_eq!(send(Kind::Heartbeat, Route::Control, b""), Ok(()));
            assert_eq!(send(Kind::Login, Route::Login, b""), Ok(()));
        }
        // Control traffic took none of the budget.
        assert_eq!(
            send(Kind::Publish, Route::Publish, big),
            Err(NotSent::Overflow)
        );
    }

    #[tokio::test]
    async fn a_request_tells_answered_absent_and_silent_nodes_apart() {
        let (shared, _outbox) = shared(200, 1 << 20);
        let now = Instant::now();
        for node in ["b", "c", "d"] {
            lock(&shared.members).heard(node, "r", 0, now);
        }
        let mut request = shared.open_request();
        shared.answered(answer("b", request.id, false));
        shared.answered(answer("c", request.id, true));
        // A second word from a node that already answered changes nothing.
        shared.answered(answer("b", request.id, true));
        let nodes = vec!["b".to_owned(), "c".to_owned(), "d".to_owned()];
        let got = request.collect(nodes, |_| false, false).await;
        let answered: Vec<&str> = got.answers.iter().map(|a| a.meta.o.as_str()).collect();
        assert_eq!(answered, ["b"]);
        assert_eq!(got.absent, ["c"]);
        assert_eq!(got.missing, ["d"]);
    }

    #[tokio::test]
    async fn a_login_stops_waiting_for_a_node_that_missed_a_heartbeat() {
        let (shared, _outbox) = shared(5000, 1 << 20);
        // Heard just under the limit: it misses its heartbeat while the
        // request waits.
        let Some(heard) = Instant::now().checked_sub(STALE - Duration::from_millis(50)) else {
            return;
        };
        lock(&shared.members).heard("b", "r", 0, heard);
        let mut request = shared.open_request();
        let started = Instant::now();
        let got = request.collect(vec!["b".to_owned()], |_| false, true).await;
        assert_eq!(got.missing, ["b"]);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "waited {:?}",
            started.elapsed()
        );
    }
}
