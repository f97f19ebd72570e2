//! The engine: the NATS thread's task that takes every incoming message,
//! the connections' subscription commands, NATS's connection events and
//! the membership tick, one at a time (the runtime has one thread), and
//! hands each to the module that knows what to do with it.
//!
//! Incoming messages of all the node's subscriptions are read in one pass
//! and put back in each origin's sending order (`inbox.rs`); each is then
//! checked (not this node's own, not a duplicate, of a kind its subject
//! carries, gaps counted) and dispatched by kind: topic messages,
//! broadcasts, counts and target requests to `routing.rs`, login claims to
//! `login.rs`, heartbeats and goodbyes to `heartbeat.rs`, answers to the
//! request that waits for them (`Shared::answered`).
//!
//! Not here: sending (`outbox.rs`), starting the thread (`start.rs`), and
//! any decision a unit test can drive on its own: those live in the
//! modules named above.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::{Client, Event, Message, Subscriber};
use bytes::Bytes;
use conn_actor::Name;
use gateway_metrics::cluster::Direction;
use tokio::sync::mpsc;

use crate::heartbeat::{self, Beats, TICK};
use crate::inbox::{self, Admission, Arrival, Inbox};
use crate::login;
use crate::routing::{self, Counts};
use crate::sequence::Tracker;
use crate::settle::settle;
use crate::shared::{Answer, Cmd, Shared, lock};
use crate::topics::{self, Topics};
use crate::wire::{Kind, Meta, Status};
use conn_actor::Throttle;

pub struct Engine {
    shared: Arc<Shared>,
    client: Client,
    topics: Topics,
    tracker: Tracker,
    counts: Counts,
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
            counts: Counts::default(),
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
                if let Some(history) = &shared.history {
                    let _ = history.feed.send(crate::stored::FeedCmd::Connected);
                }
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
        self.counts.expire(now, keep);
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

    fn malformed(&mut self, subject: &str, why: &str) {
        self.shared.metrics.malformed.inc();
        if let Some(suppressed) = self.malformed_log.allow(Instant::now()) {
            tracing::warn!(%subject, why, suppressed, "dropped a malformed cluster message");
        }
    }

    /// Whether a message is to be acted on (`inbox::admit`), with what
    /// that says counted and logged.
    fn admit(&mut self, meta: &Meta, subject: &str, on_topic: bool) -> bool {
        let shared = &self.shared;
        let (node, run) = (shared.node(), shared.run.as_str());
        let admission = inbox::admit(node, run, meta, subject, on_topic, &mut self.tracker);
        let missed = match admission {
            Admission::Own => return false,
            Admission::Duplicate => {
                tracing::debug!(%subject, origin = %meta.o, seq = meta.s, "duplicate dropped");
                return false;
            }
            Admission::WrongSubject { missed } | Admission::Accept { missed } => missed,
        };
        if missed > 0 {
            shared.metrics.missed.inc_by(missed);
            if let Some(suppressed) = self.missed_log.allow(Instant::now()) {
                tracing::warn!(origin = %meta.o, %subject, missed, suppressed, "missed cross-node messages");
            }
        }
        if let Admission::WrongSubject { .. } = admission {
            self.malformed(subject, "kind does not match subject");
            return false;
        }
        shared
            .metrics
            .message(Direction::Received, routing::route_of(meta.k));
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
        let handled = match meta.k {
            Kind::Publish => routing::publish(&shared, &mut self.counts, meta, topic, &body),
            Kind::Broadcast => {
                routing::broadcast(&shared, &mut self.counts, meta, &body);
                Ok(())
            }
            Kind::Count => routing::count(&shared, &mut self.counts, &meta),
            Kind::User | Kind::Conn => routing::target(&shared, &meta, body),
            Kind::Login => login::received(&shared, &meta),
            Kind::Heartbeat if meta.o == shared.node() => {
                if self.beats.twin() {
                    tracing::error!(node = %meta.o, run = %meta.r, "another live node uses this node's id");
                }
                Ok(())
            }
            Kind::Heartbeat => {
                let connections = meta.n.unwrap_or(0);
                heartbeat::heard(&shared, &meta.o, &meta.r, connections, Instant::now());
                Ok(())
            }
            Kind::Bye => {
                if heartbeat::bye(&shared, &meta.o, &meta.r) {
                    self.tracker.forget_node(&meta.o);
                }
                Ok(())
            }
            Kind::Probe => {
                routing::probe(&shared, message.reply);
                Ok(())
            }
            Kind::Answer => {
                shared.answered(Answer {
                    meta,
                    body,
                    absent: false,
                });
                Ok(())
            }
        };
        if let Err(why) = handled {
            self.malformed(subject, why);
        }
    }
}
