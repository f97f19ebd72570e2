//! The engine: the NATS thread's task that takes every incoming message,
//! subscriptions, membership and NATS's connection events. Incoming
//! messages of all the node's subscriptions are read in one pass and put
//! back in each origin's sending order, so one producer's messages keep
//! their order across subjects (the runtime has one thread: the client's
//! reader never runs during the pass).
//!
//! Not here: starting the thread (`start.rs`), sending (`outbox.rs`).

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::{Client, Event, Message, Subscriber};
use bytes::Bytes;
use conn_actor::{CloseReason, Name, command};
use futures_util::Stream;
use gateway_metrics::cluster::{Direction, Route};
use gateway_registry::query::Target;
use gateway_registry::{Address, RouteError};
use tokio::sync::{mpsc, oneshot};

use crate::members::{Change, HEARTBEAT};
use crate::sequence::{Tracker, Verdict};
use crate::settle::settle;
use crate::shared::{Answer, Cmd, KNOWN_WITHIN, Shared, lock};
use crate::wire::{HEADER, Kind, Meta, Op, Status};

/// How often membership is checked; heartbeats go every fourth tick.
const TICK: Duration = Duration::from_millis(250);

/// A close reason another node may ask for: one a `KICK` names.
fn kick_reason(word: &str) -> Option<CloseReason> {
    use CloseReason::*;
    [Replaced, Admin, Idle, Slow, Shutdown]
        .into_iter()
        .find(|reason| reason.as_str() == word)
}

/// Every subscription of the node, read together.
#[derive(Default)]
pub struct Inbox {
    subs: Vec<(String, Subscriber)>,
}

impl Inbox {
    pub fn add(&mut self, subject: String, sub: Subscriber) {
        self.subs.push((subject, sub));
    }

    fn remove(&mut self, subject: &str) {
        self.subs.retain(|(s, _)| s != subject);
    }

    /// Everything the client has handed over, in one pass.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Vec<Message>> {
        let mut batch = Vec::new();
        self.subs.retain_mut(|(_, sub)| {
            loop {
                match Pin::new(&mut *sub).poll_next(cx) {
                    Poll::Ready(Some(message)) => batch.push(message),
                    Poll::Ready(None) => return false,
                    Poll::Pending => return true,
                }
            }
        });
        match batch.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(batch),
        }
    }
}

enum TopicSub {
    /// Subscribing; these `SUB`s wait for it.
    Pending {
        waiters: Vec<oneshot::Sender<()>>,
        /// The last local subscriber left meanwhile.
        cancel: bool,
    },
    Live,
}

/// Logs a kind of trouble at most once a second, with a count.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

pub struct Engine {
    shared: Arc<Shared>,
    client: Client,
    topics: HashMap<Name, TopicSub>,
    tracker: Tracker,
    /// Local deliveries of admin publishes, until the count is asked.
    counts: HashMap<(String, u64), (u64, Instant)>,
    ever_connected: bool,
    /// When the engine started, and when NATS was first connected: the
    /// node knows the cluster one heartbeat period after that, at most
    /// [`KNOWN_WITHIN`] after the start.
    started: Instant,
    first_connected: Option<Instant>,
    ticks: u64,
    subscribed: mpsc::UnboundedSender<(Name, Option<Subscriber>)>,
    malformed_log: Throttle,
    missed_log: Throttle,
    twin_warned: bool,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, client: Client) -> Self {
        let (subscribed, _) = mpsc::unbounded_channel();
        Self {
            shared,
            client,
            topics: HashMap::new(),
            tracker: Tracker::default(),
            counts: HashMap::new(),
            ever_connected: false,
            started: Instant::now(),
            first_connected: None,
            ticks: 0,
            subscribed,
            malformed_log: Throttle::default(),
            missed_log: Throttle::default(),
            twin_warned: false,
        }
    }

    pub async fn run(
        mut self,
        mut inbox: Inbox,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        self.subscribed = subscribed_tx;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Unconstrained: tokio's cooperative budget would end the
                // pass early and split one origin's messages across passes.
                batch = tokio::task::unconstrained(poll_fn(|cx| inbox.poll_batch(cx))) => {
                    self.incoming(batch)
                }
                Some(cmd) = cmds.recv() => self.command(cmd, &mut inbox),
                Some(event) = events.recv() => self.event(event),
                Some((topic, sub)) = subscribed_rx.recv() => self.subscribed(topic, sub, &mut inbox),
                _ = tick.tick() => self.tick(),
            }
        }
    }

    // ---- connection events -------------------------------------------

    fn event(&mut self, event: Event) {
        let shared = &self.shared;
        match event {
            Event::Connected => {
                let info = self.client.server_info();
                if info.max_payload > 0 {
                    shared
                        .max_payload
                        .store(info.max_payload, std::sync::atomic::Ordering::Relaxed);
                }
                let server = format!("nats://{}:{}", info.host, info.port);
                *lock(&shared.server) = Some(server.clone());
                shared.set_connected(true);
                if self.ever_connected {
                    shared.metrics.nats_reconnects.inc();
                    tracing::warn!(%server, "reconnected to NATS; re-subscribing and re-asserting logins");
                } else {
                    tracing::info!(%server, max_payload = info.max_payload, "connected to NATS");
                    self.first_connected = Some(Instant::now());
                }
                self.ever_connected = true;
                // Nodes could not be heard while away: give them a beat.
                lock(&shared.members).touch_all(Instant::now());
                self.heartbeat();
                self.assert_claims(None);
            }
            Event::Disconnected => {
                shared.set_connected(false);
                tracing::warn!(
                    "lost NATS: local service goes on; cross-node traffic is held up to --nats-pending-bytes"
                );
            }
            // Failed tries are logged once each, by the backoff.
            Event::ClientError(err) => tracing::debug!(error = %err, "NATS client error"),
            other => tracing::warn!(event = %other, "NATS event"),
        }
    }

    // ---- subscriptions -----------------------------------------------

    fn command(&mut self, cmd: Cmd, inbox: &mut Inbox) {
        match cmd {
            Cmd::Interest { topic, done } => match self.topics.get_mut(&topic) {
                Some(TopicSub::Live) => {
                    let _ = done.send(());
                }
                Some(TopicSub::Pending { waiters, cancel }) => {
                    waiters.push(done);
                    *cancel = false;
                }
                None => {
                    self.topics.insert(
                        topic.clone(),
                        TopicSub::Pending {
                            waiters: vec![done],
                            cancel: false,
                        },
                    );
                    self.start_subscription(topic);
                }
            },
            Cmd::MaybeUnsub { topic } => {
                let shared = self.shared.clone();
                let mut live = lock(&shared.live_topics);
                if shared.registry.has_subscribers(&topic) {
                    return;
                }
                match self.topics.get_mut(&topic) {
                    Some(TopicSub::Live) => {
                        live.remove(&topic);
                        self.topics.remove(&topic);
                        let subject = shared.subjects.topic(&topic);
                        inbox.remove(&subject);
                        self.tracker.forget_subject(&subject);
                    }
                    Some(TopicSub::Pending { cancel, .. }) => *cancel = true,
                    None => {}
                }
            }
            Cmd::Leave { done } => {
                if !self.shared.is_connected() {
                    let _ = done.send(());
                    return;
                }
                let meta = Meta::new(Kind::Bye);
                let _ = self.shared.send(
                    self.shared.subjects.all(),
                    meta,
                    Bytes::new(),
                    Route::Control,
                    false,
                );
                let client = self.client.clone();
                tokio::spawn(async move {
                    // Let the outbox hand the goodbye over, then flush.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tokio::time::timeout(Duration::from_millis(300), client.flush()).await;
                    let _ = done.send(());
                });
            }
        }
    }

    /// Subscribes to a topic's subject; once the server has it (a round
    /// trip behind the `SUB`), the waiting `SUB`s are answered.
    fn start_subscription(&self, topic: Name) {
        let shared = self.shared.clone();
        let client = self.client.clone();
        let done = self.subscribed.clone();
        tokio::spawn(async move {
            let subject = shared.subjects.topic(&topic);
            let bound = shared.settings.timeout;
            let sub = match tokio::time::timeout(bound, client.subscribe(subject.clone())).await {
                Ok(Ok(sub)) => Some(sub),
                Ok(Err(err)) => {
                    tracing::warn!(%subject, error = %err, "cannot subscribe");
                    None
                }
                Err(_) => None,
            };
            if sub.is_some() && shared.is_connected() {
                let barrier = shared.subjects.barrier(shared.node(), &shared.run);
                let _ = tokio::time::timeout(bound, client.request(barrier, Bytes::new())).await;
            }
            let _ = done.send((topic, sub));
        });
    }

    fn subscribed(&mut self, topic: Name, sub: Option<Subscriber>, inbox: &mut Inbox) {
        let Some(TopicSub::Pending { waiters, cancel }) = self.topics.remove(&topic) else {
            return;
        };
        if let Some(sub) = sub {
            let shared = self.shared.clone();
            let mut live = lock(&shared.live_topics);
            if !cancel || shared.registry.has_subscribers(&topic) {
                inbox.add(shared.subjects.topic(&topic), sub);
                live.insert(topic.clone());
                self.topics.insert(topic, TopicSub::Live);
            }
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    // ---- membership --------------------------------------------------

    fn tick(&mut self) {
        self.ticks += 1;
        let shared = self.shared.clone();
        if !shared.knows_cluster() {
            // Every live node heartbeats once a period (and at once when
            // it hears a new node): one period and a tick after the first
            // connection, every live node has been heard.
            let heard_all = self
                .first_connected
                .is_some_and(|at| at.elapsed() >= HEARTBEAT + TICK);
            // Within the contract's bound after READY whatever happens.
            let bound = self.started.elapsed() >= KNOWN_WITHIN - TICK * 2;
            if heard_all || bound {
                shared.set_known();
            }
        }
        if shared.is_connected() {
            let gone = lock(&shared.members).expire(Instant::now());
            for node in gone {
                tracing::warn!(%node, "node gone (no heartbeat)");
                self.tracker.forget_node(&node);
            }
            if self
                .ticks
                .is_multiple_of((HEARTBEAT.as_millis() / TICK.as_millis()) as u64)
            {
                self.heartbeat();
            }
        }
        shared.metrics.nodes.set(1 + shared.others() as i64);
        let keep = shared.settings.timeout * 2 + Duration::from_secs(1);
        self.counts.retain(|_, (_, at)| at.elapsed() < keep);
    }

    fn heartbeat(&self) {
        let shared = &self.shared;
        if !shared.is_connected() {
            return;
        }
        let meta = Meta {
            n: Some(shared.registry.open_count() as u64),
            ..Meta::new(Kind::Heartbeat)
        };
        let _ = shared.send(
            shared.subjects.all(),
            meta,
            Bytes::new(),
            Route::Control,
            false,
        );
    }

    /// Settles the users this node holds with `only` (every listed node
    /// when `None`), in a task of its own (`settle.rs`).
    fn assert_claims(&self, only: Option<String>) {
        tokio::spawn(settle(self.shared.clone(), only));
    }

    fn assert_claim(&self, user: &str, claim: crate::wire::Claim) {
        let shared = &self.shared;
        let meta = Meta {
            user: Some(user.to_owned()),
            claim: Some(claim),
            ..Meta::new(Kind::Login)
        };
        let _ = shared.send(
            shared.subjects.all(),
            meta,
            Bytes::new(),
            Route::Login,
            false,
        );
    }

    // ---- incoming ----------------------------------------------------

    fn incoming(&mut self, batch: Vec<Message>) {
        let mut messages: Vec<(Meta, Message)> = Vec::with_capacity(batch.len());
        for message in batch {
            if let Some((q, node)) = self.shared.subjects.reply_of(
                self.shared.node(),
                &self.shared.run,
                &message.subject,
            ) {
                self.no_responders(q, node, &message);
                continue;
            }
            let meta = message
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER))
                .and_then(|v| Meta::decode(v.as_str()));
            match meta {
                Some(meta) => messages.push((meta, message)),
                None => self.malformed(&message.subject, "no readable Gw header of version 1"),
            }
        }
        // One origin's messages in its sending order, across subjects.
        messages.sort_by(|(a, _), (b, _)| (&a.o, &a.r, a.g).cmp(&(&b.o, &b.r, b.g)));
        for (meta, message) in messages {
            self.handle(meta, message);
        }
    }

    /// NATS on a request's reply subject: nobody subscribes to the node's
    /// subject, so that node is not there. Nothing else arrives here.
    fn no_responders(&mut self, q: u64, node: String, message: &Message) {
        if message.status != Some(async_nats::StatusCode::NO_RESPONDERS) {
            return self.malformed(&message.subject, "a message on a reply subject");
        }
        let meta = Meta {
            o: node,
            ..Meta::answer(q, Status::NotFound)
        };
        self.shared.answered(Answer {
            meta,
            body: Bytes::new(),
            absent: true,
        });
    }

    fn malformed(&mut self, subject: &str, why: &str) {
        self.shared.metrics.malformed.inc();
        if let Some(suppressed) = self.malformed_log.allow() {
            tracing::warn!(%subject, why, suppressed, "dropped a malformed cluster message");
        }
    }

    fn route_of(kind: Kind) -> Route {
        match kind {
            Kind::Publish => Route::Publish,
            Kind::Broadcast => Route::Broadcast,
            Kind::User => Route::User,
            Kind::Conn => Route::Connection,
            Kind::Login => Route::Login,
            Kind::Count | Kind::Heartbeat | Kind::Bye | Kind::Probe | Kind::Answer => {
                Route::Control
            }
        }
    }

    fn handle(&mut self, meta: Meta, message: Message) {
        let shared = self.shared.clone();
        let subject = message.subject.as_str();
        if meta.o == shared.node() && meta.r == shared.run {
            return;
        }
        match self.tracker.check(&meta.o, &meta.r, subject, meta.s) {
            Verdict::Duplicate => {
                tracing::debug!(%subject, origin = %meta.o, seq = meta.s, "duplicate dropped");
                return;
            }
            Verdict::Accept { missed } if missed > 0 => {
                shared.metrics.missed.inc_by(missed);
                if let Some(suppressed) = self.missed_log.allow() {
                    tracing::warn!(origin = %meta.o, %subject, missed, suppressed, "missed cross-node messages");
                }
            }
            Verdict::Accept { .. } => {}
        }
        let topic = shared.subjects.topic_of(subject);
        if (meta.k == Kind::Publish) != topic.is_some() {
            return self.malformed(subject, "kind does not match subject");
        }
        shared
            .metrics
            .message(Direction::Received, Self::route_of(meta.k));
        let body = message.payload;
        let registry = &shared.registry;
        match meta.k {
            Kind::Publish => {
                let Some(topic) = topic.filter(|t| command::topic(t.as_bytes()).is_ok()) else {
                    return self.malformed(subject, "bad topic");
                };
                if !registry.fits_framing(&body) {
                    return self.malformed(subject, "payload this node's framing cannot carry");
                }
                let frame = registry.msg_frame(&topic, &body);
                let n = registry.publish_frame(&topic, &frame, None);
                if let Some(q) = meta.q {
                    self.counts.insert((meta.o, q), (n as u64, Instant::now()));
                }
            }
            Kind::Count => {
                let Some(q) = meta.q else {
                    return self.malformed(subject, "count without request");
                };
                let n = self
                    .counts
                    .remove(&(meta.o.clone(), q))
                    .map_or(0, |(n, _)| n);
                self.reply(
                    &meta.o,
                    Meta {
                        n: Some(n),
                        ..Meta::answer(q, Status::Ok)
                    },
                    Bytes::new(),
                );
            }
            Kind::Broadcast => {
                // A payload this node's framing cannot carry reaches no
                // one here.
                let n = match registry.fits_framing(&body) {
                    true => registry.broadcast_frame(&registry.push_frame(&body)),
                    false => 0,
                };
                if let Some(q) = meta.q {
                    self.counts.insert((meta.o, q), (n as u64, Instant::now()));
                }
            }
            Kind::User | Kind::Conn => self.target_request(meta, body),
            Kind::Login => self.login_claim(meta),
            Kind::Heartbeat => {
                if meta.o == shared.node() {
                    if !self.twin_warned {
                        self.twin_warned = true;
                        tracing::error!(node = %meta.o, run = %meta.r, "another live node uses this node's id");
                    }
                    return;
                }
                let change = lock(&shared.members).heard(
                    &meta.o,
                    &meta.r,
                    meta.n.unwrap_or(0),
                    Instant::now(),
                );
                match change {
                    Change::Joined => {
                        tracing::info!(node = %meta.o, "node joined");
                        shared.metrics.nodes.set(1 + shared.others() as i64);
                        // A new node learns of this one at once, rather
                        // than within a heartbeat period.
                        self.heartbeat();
                        self.assert_claims(Some(meta.o.clone()));
                    }
                    Change::Returned => {
                        tracing::info!(node = %meta.o, "node heard again after a missed heartbeat");
                        self.assert_claims(Some(meta.o.clone()));
                    }
                    Change::Same => {}
                }
            }
            Kind::Bye => {
                if lock(&shared.members).left(&meta.o, &meta.r) {
                    tracing::info!(node = %meta.o, "node left");
                    self.tracker.forget_node(&meta.o);
                    shared.metrics.nodes.set(1 + shared.others() as i64);
                }
            }
            Kind::Probe => {
                if let Some(reply) = message.reply {
                    let _ = shared.send(
                        reply.to_string(),
                        Meta::new(Kind::Answer),
                        Bytes::new(),
                        Route::Control,
                        false,
                    );
                }
            }
            Kind::Answer => shared.answered(Answer {
                meta,
                body,
                absent: false,
            }),
        }
    }

    fn reply(&self, node: &str, meta: Meta, body: Bytes) {
        let shared = &self.shared;
        let _ = shared.send(
            shared.subjects.node(node),
            meta,
            body,
            Route::Control,
            false,
        );
    }

    /// A send, close or look-up from another node's admin API.
    fn target_request(&mut self, meta: Meta, body: Bytes) {
        let shared = self.shared.clone();
        let registry = &shared.registry;
        let (Some(q), Some(op)) = (meta.q, meta.op) else {
            return self.malformed("", "target request without request id or op");
        };
        let to = match (meta.k, &meta.user, &meta.conn) {
            (Kind::User, Some(user), _) if command::user(user.as_bytes()).is_ok() => {
                Address::User(Name::from(user.as_str()))
            }
            (Kind::Conn, _, Some(id)) => Address::Conn(id.clone()),
            _ => return self.malformed("", "target request without a valid target"),
        };
        let result = match op {
            Op::Send if !registry.fits_framing(&body) => Err(RouteError::TooLarge),
            Op::Send => registry.send_local(&to, &body),
            Op::Close => {
                let reason = meta.reason.as_deref().and_then(kick_reason);
                let message = meta.msg.then_some(body);
                match reason {
                    None => return self.malformed("", "close without a known reason"),
                    Some(_) if message.as_ref().is_some_and(|m| !registry.fits_framing(m)) => {
                        Err(RouteError::TooLarge)
                    }
                    Some(reason) => registry.close_local(&to, reason, message),
                }
            }
            Op::Get => {
                return self.answer_get(&meta.o, q, to);
            }
        };
        let status = match result {
            Ok(()) => Status::Ok,
            Err(RouteError::Closing) => Status::Closing,
            Err(RouteError::TooLarge) => Status::Refused,
            Err(_) => Status::NotFound,
        };
        self.reply(&meta.o, Meta::answer(q, status), Bytes::new());
    }

    /// Looks a connection up; its snapshot comes from its own mailbox, so
    /// the answer is sent from a task.
    fn answer_get(&self, origin: &str, q: u64, to: Address) {
        let shared = self.shared.clone();
        let origin = origin.to_owned();
        let Address::Conn(id) = to else {
            return self.reply(&origin, Meta::answer(q, Status::NotFound), Bytes::new());
        };
        tokio::spawn(async move {
            let (meta, body) = match shared.registry.get_view(&id).await {
                Ok(view) => (
                    Meta::answer(q, Status::Ok),
                    Bytes::from(serde_json::to_vec(&view).unwrap_or_default()),
                ),
                Err(_) => (Meta::answer(q, Status::NotFound), Bytes::new()),
            };
            let _ = shared.send(
                shared.subjects.node(&origin),
                meta,
                body,
                Route::Control,
                false,
            );
        });
    }

    /// Another node's login claim: the newer claim keeps the user.
    fn login_claim(&mut self, meta: Meta) {
        let shared = self.shared.clone();
        let (Some(user), Some(claim)) = (meta.user.as_deref(), meta.claim.clone()) else {
            return self.malformed("", "login without user or claim");
        };
        if command::user(user.as_bytes()).is_err() {
            return self.malformed("", "login with a bad user");
        }
        shared.observe(&claim);
        let user: Name = Name::from(user);
        let held = lock(&shared.claims).get(&user).cloned();
        let holder = held.filter(|(_, conn)| {
            shared
                .registry
                .find(&Target::User(user.clone()))
                .is_ok_and(|h| h.id() == *conn)
        });
        let status = match holder {
            None => Status::Ok,
            Some((mine, conn)) if mine < claim => {
                let me = Address::Conn(shared.registry.conn_name(conn));
                let _ = shared
                    .registry
                    .close_local(&me, CloseReason::Replaced, None);
                lock(&shared.claims).retain(|_, (_, holder)| *holder != conn);
                Status::Ok
            }
            Some((mine, _)) => {
                if meta.q.is_none() {
                    // An older claim without a request: a reminder, or an
                    // assertion from a node of an earlier version (which
                    // asserted without requests). Remind its node who
                    // holds the user.
                    self.assert_claim(&user, mine);
                }
                Status::Holds
            }
        };
        if let Some(q) = meta.q {
            self.reply(&meta.o, Meta::answer(q, status), Bytes::new());
        }
    }
}
