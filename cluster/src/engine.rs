//! The engine: the NATS thread's task that takes every incoming message,
//! the connections' subscription commands, NATS's connection events and
//! the membership tick, one at a time (the runtime has one thread), and
//! hands each to the module that knows what to do with it.
//!
//! Incoming messages of all the node's subscriptions are read in one pass
//! and put back in each origin's sending order (`inbox.rs`); each is then
//! checked (not this node's own, not a duplicate, of a kind its subject
//! carries, gaps counted) and dispatched by kind: topic messages,
//! broadcasts, counts, target requests and login claims here, heartbeats
//! and goodbyes to `heartbeat.rs`, answers to the request that waits for
//! them (`Shared::answered`).
//!
//! Not here: sending (`outbox.rs`), starting the thread (`start.rs`), and
//! any decision a unit test can drive on its own: those live in the
//! modules named above.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::{Client, Event, Message, Subscriber};
use bytes::Bytes;
use conn_actor::{CloseReason, Name, command};
use gateway_metrics::cluster::{Direction, Route};
use gateway_registry::query::Target;
use gateway_registry::{Address, RouteError};
use tokio::sync::mpsc;

use crate::heartbeat::{self, Beats, TICK};
use crate::inbox::{self, Arrival, Inbox};
use crate::sequence::{Tracker, Verdict};
use crate::settle::settle;
use crate::shared::{Answer, Cmd, Shared, lock};
use crate::throttle::Throttle;
use crate::topics::{self, Topics};
use crate::wire::{Kind, Meta, Op, Status};

/// A close reason another node may ask for: one a `KICK` names.
fn kick_reason(word: &str) -> Option<CloseReason> {
    use CloseReason::*;
    [Replaced, Admin, Idle, Slow, Shutdown]
        .into_iter()
        .find(|reason| reason.as_str() == word)
}

pub struct Engine {
    shared: Arc<Shared>,
    client: Client,
    topics: Topics,
    tracker: Tracker,
    /// Local deliveries of admin publishes, until the count is asked.
    counts: HashMap<(String, u64), (u64, Instant)>,
    beats: Beats,
    /// Where the subscription tasks hand what they made.
    made: topics::Made<Subscriber>,
    malformed_log: Throttle,
    missed_log: Throttle,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, client: Client) -> Self {
        let (made, _) = mpsc::unbounded_channel();
        Self {
            shared,
            client,
            topics: Topics::default(),
            tracker: Tracker::default(),
            counts: HashMap::new(),
            beats: Beats::new(Instant::now()),
            made,
            malformed_log: Throttle::default(),
            missed_log: Throttle::default(),
        }
    }

    pub async fn run(
        mut self,
        mut inbox: Inbox,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let (made_tx, mut made_rx) = mpsc::unbounded_channel();
        self.made = made_tx;
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
                Some((topic, sub)) = made_rx.recv() => self.subscribed(topic, sub, &mut inbox),
                _ = tick.tick() => self.tick(),
            }
        }
    }

    fn event(&mut self, event: Event) {
        let shared = &self.shared;
        match event {
            Event::Connected => {
                let info = self.client.server_info();
                if info.max_payload > 0 {
                    shared
                        .max_payload
                        .store(info.max_payload, Ordering::Relaxed);
                }
                let server = format!("nats://{}:{}", info.host, info.port);
                *lock(&shared.server) = Some(server.clone());
                shared.set_connected(true);
                if self.beats.connected(Instant::now()) {
                    tracing::info!(%server, max_payload = info.max_payload, "connected to NATS");
                } else {
                    shared.metrics.nats_reconnects.inc();
                    tracing::warn!(%server, "reconnected to NATS; re-subscribing and re-asserting logins");
                }
                // Nodes could not be heard while away: give them a beat.
                lock(&shared.members).touch_all(Instant::now());
                heartbeat::send(shared);
                tokio::spawn(settle(shared.clone(), None));
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

    fn command(&mut self, cmd: Cmd, inbox: &mut Inbox) {
        match cmd {
            Cmd::Interest { topic, done } => {
                if self.topics.interest(&topic, done) {
                    let (shared, client) = (self.shared.clone(), self.client.clone());
                    topics::subscribe(shared, client, topic, self.made.clone());
                }
            }
            Cmd::MaybeUnsub { topic } => {
                let shared = self.shared.clone();
                // Held while deciding, so a `SUB` never trusts a
                // subscription that is going away.
                let mut live = lock(&shared.live_topics);
                if shared.registry.has_subscribers(&topic) || !self.topics.unwanted(&topic) {
                    return;
                }
                live.remove(&topic);
                let subject = shared.subjects.topic(&topic);
                inbox.remove(&subject);
                self.tracker.forget_subject(&subject);
            }
            Cmd::Leave { done } => heartbeat::leave(&self.shared, &self.client, done),
        }
    }

    /// A subscription try ended: the subscription is read from now on
    /// (unless nobody wants it any more), then the waiting `SUB`s are
    /// answered.
    fn subscribed(&mut self, topic: Name, sub: Option<Subscriber>, inbox: &mut Inbox) {
        let shared = self.shared.clone();
        let waiters = {
            let mut live = lock(&shared.live_topics);
            let wanted = || shared.registry.has_subscribers(&topic);
            let (kept, waiters) = self.topics.made(&topic, sub, wanted);
            if let Some(sub) = kept {
                inbox.add(shared.subjects.topic(&topic), sub);
                live.insert(topic);
            }
            waiters
        };
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    fn tick(&mut self) {
        let shared = self.shared.clone();
        let now = Instant::now();
        let tick = self.beats.tick(now);
        if tick.known && !shared.knows_cluster() {
            shared.set_known();
        }
        if shared.is_connected() {
            for node in heartbeat::expire(&shared, now) {
                self.tracker.forget_node(&node);
            }
            if tick.heartbeat {
                heartbeat::send(&shared);
            }
        }
        heartbeat::count_nodes(&shared);
        let keep = shared.settings.timeout * 2 + Duration::from_secs(1);
        self.counts
            .retain(|_, (_, at)| now.duration_since(*at) < keep);
    }

    fn incoming(&mut self, batch: Vec<Message>) {
        let shared = self.shared.clone();
        let mut messages: Vec<(Meta, Message)> = Vec::with_capacity(batch.len());
        for message in batch {
            match inbox::arrival_of(&shared.subjects, shared.node(), &shared.run, &message) {
                Arrival::Message(meta) => messages.push((*meta, message)),
                Arrival::Absent { q, node } => shared.answered(Answer {
                    meta: Meta {
                        o: node,
                        ..Meta::answer(q, Status::NotFound)
                    },
                    body: Bytes::new(),
                    absent: true,
                }),
                Arrival::Malformed(why) => self.malformed(&message.subject, why),
            }
        }
        inbox::in_sending_order(&mut messages);
        for (meta, message) in messages {
            self.handle(meta, message);
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

    fn assert_claim(&self, user: &str, claim: crate::wire::Claim) {
        let meta = Meta {
            user: Some(user.to_owned()),
            claim: Some(claim),
            ..Meta::new(Kind::Login)
        };
        let _ = self.shared.tell_all(meta, Route::Login);
    }

    fn malformed(&mut self, subject: &str, why: &str) {
        self.shared.metrics.malformed.inc();
        if let Some(suppressed) = self.malformed_log.allow(Instant::now()) {
            tracing::warn!(%subject, why, suppressed, "dropped a malformed cluster message");
        }
    }

    /// Whether a message is to be acted on: not this run's own, not seen
    /// before (a gap before it is counted), of a kind its subject carries.
    fn admit(&mut self, meta: &Meta, subject: &str, on_topic: bool) -> bool {
        let shared = &self.shared;
        if meta.o == shared.node() && meta.r == shared.run {
            return false;
        }
        match self.tracker.check(&meta.o, &meta.r, subject, meta.s) {
            Verdict::Duplicate => {
                tracing::debug!(%subject, origin = %meta.o, seq = meta.s, "duplicate dropped");
                return false;
            }
            Verdict::Accept { missed } if missed > 0 => {
                shared.metrics.missed.inc_by(missed);
                if let Some(suppressed) = self.missed_log.allow(Instant::now()) {
                    tracing::warn!(origin = %meta.o, %subject, missed, suppressed, "missed cross-node messages");
                }
            }
            Verdict::Accept { .. } => {}
        }
        if (meta.k == Kind::Publish) != on_topic {
            self.malformed(subject, "kind does not match subject");
            return false;
        }
        shared
            .metrics
            .message(Direction::Received, Self::route_of(meta.k));
        true
    }

    fn handle(&mut self, meta: Meta, message: Message) {
        let shared = self.shared.clone();
        let subject = message.subject.as_str();
        let topic = shared.subjects.topic_of(subject);
        if !self.admit(&meta, subject, topic.is_some()) {
            return;
        }
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
            Kind::Heartbeat if meta.o == shared.node() => {
                if self.beats.twin() {
                    tracing::error!(node = %meta.o, run = %meta.r, "another live node uses this node's id");
                }
            }
            Kind::Heartbeat => {
                let connections = meta.n.unwrap_or(0);
                heartbeat::heard(&shared, &meta.o, &meta.r, connections, Instant::now());
            }
            Kind::Bye => {
                if heartbeat::bye(&shared, &meta.o, &meta.r) {
                    self.tracker.forget_node(&meta.o);
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
