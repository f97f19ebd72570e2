//! The connection actor: one per client, on one worker thread.
//!
//! Actix hosts it (its task, its timers, `stopped()`), but its mailbox is
//! not actix's: everything addressed to the client from any thread comes
//! through the worker's mailbox table (`crate::mailbox`), taken at the
//! start of each turn by its driver (`drive.rs`), which then reads frames
//! (run by `input.rs`), runs commands and writes what is queued, in the
//! same actor turn. A close is a phase, not an
//! event: once asked for, the actor stops acting on frames, writes what was
//! queued before, shuts the write side, lingers reading until the client's
//! EOF or `--close-timeout`, and only then lets the socket go and returns
//! its state to the pool. A slow consumer skips the wait: what the socket
//! takes at once is written, and the socket closes in the same turn.

mod drive;
mod input;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use bytes::Bytes;
use client_token::{TokenError, TopicGrant};
use gateway_metrics::DropReason;
use pool_manager::Checkin;

use crate::admission::Slot;
use crate::codec::{FrameCodec, body};
use crate::command::{self, Command};
use crate::context::WorkerContext;
use crate::hub::{HistoryRefusal, Published, Replay, Resume, Settled, Subscribed, Subscribing};
use crate::mailbox::{self, Address, ConnHandle, Mail};
use crate::messages::{CloseReason, ConnInfo, last_frame};
use crate::names::ConnId;
use crate::refusals;
use crate::state::{ConnState, OutQueue};
use crate::transport::Transport;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phase {
    /// Acting on frames.
    Open,
    /// The client ended (`QUIT`, EOF, a too-large frame): frames are no
    /// longer acted on, and the close waits behind the mailbox, so that
    /// whatever was addressed to the client before it is still written.
    Ending { reason: CloseReason },
    /// Writing what was queued before the close; input is discarded.
    Flushing {
        reason: CloseReason,
        since: Instant,
        /// A slow consumer: write what the socket takes now, drop the
        /// rest and close the socket in the same turn, without lingering.
        abandon: bool,
    },
    /// Write side shut; discarding input until EOF or the close timeout.
    Lingering { reason: CloseReason },
    /// The socket is about to close.
    Done { reason: CloseReason },
}

impl Phase {
    fn reason(self) -> Option<CloseReason> {
        match self {
            Phase::Open => None,
            Phase::Ending { reason }
            | Phase::Flushing { reason, .. }
            | Phase::Lingering { reason }
            | Phase::Done { reason } => Some(reason),
        }
    }
}

/// Where a connection stands with client tokens.
#[derive(Debug, Clone, PartialEq)]
enum Auth {
    /// No token needed (no key configured).
    NotRequired,
    /// A token is needed and none was accepted yet: only `PING`, `QUIT`
    /// and `HELLO <user> <token>` are served.
    Pending,
    /// A token was accepted; `SUB` and `PUB` are limited to its topics
    /// where it names some.
    Granted(Option<TopicGrant>),
}

/// A token kept for longer than this is looked at again after it, so that
/// no timer is set further ahead than the runtime can.
const MAX_EXPIRY_TIMER: Duration = Duration::from_secs(24 * 3600);

/// A client connection.
pub struct Connection {
    pub(crate) id: ConnId,
    /// Where deliveries, closes and inspections for it wait for its turn.
    pub(crate) mail: Address,
    peer: SocketAddr,
    connected_at: SystemTime,
    /// The byte stream; the close below never asks which kind it is.
    pub(crate) transport: Transport,
    pub(crate) state: Box<ConnState>,
    pub(crate) worker: Arc<WorkerContext>,
    pub(crate) phase: Phase,
    /// The client shut its write side (or reset).
    pub(crate) peer_eof: bool,
    /// Its place under `--max-connections`, given back as the actor stops.
    slot: Option<Slot>,
    close_timer_armed: bool,
    auth: Auth,
    /// An answer waits for the hub (a cluster-wide `HELLO` or `SUB`):
    /// frames are neither read nor acted on until it is sent.
    pub(crate) held: bool,
    /// A hold ended without acting on the frames behind it: the driver
    /// does so in its next turn, after the mail that came meanwhile.
    pub(crate) resume_after_mail: bool,
    /// WebSocket messages that arrived while `held`, in order; allocated
    /// the first time one does.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every connection instead of the 32 of an empty queue most never use"
    )]
    pub(crate) deferred: Option<Box<std::collections::VecDeque<Vec<u8>>>>,
}

impl Connection {
    /// Starts the actor for an accepted client on the current thread, over
    /// its transport (TCP, or TLS with the handshake done). `state` comes
    /// from the pool manager and goes back to it on close; `slot` is given
    /// back when the socket closes. The connection is in the registry when
    /// this returns.
    pub fn start(
        id: ConnId,
        transport: Transport,
        peer: SocketAddr,
        state: Box<ConnState>,
        slot: Slot,
        worker: Arc<WorkerContext>,
    ) -> ConnHandle {
        let auth = match worker.tokens {
            Some(_) => Auth::Pending,
            None => Auth::NotRequired,
        };
        let mail = mailbox::open();
        worker.hub.opened(ConnHandle::new(id, mail));
        Connection::create(|_| Connection {
            id,
            mail,
            peer,
            connected_at: SystemTime::now(),
            transport,
            state,
            worker,
            phase: Phase::Open,
            peer_eof: false,
            slot: Some(slot),
            close_timer_armed: false,
            auth,
            held: false,
            resume_after_mail: false,
            deferred: None,
        });
        ConnHandle::new(id, mail)
    }

    /// How bodies are framed for this transport: the worker's framing, or
    /// one WebSocket message each. Worked out when needed rather than kept:
    /// every byte the actor holds counts against idle memory.
    pub(crate) fn codec(&self) -> FrameCodec {
        match self.transport {
            Transport::Ws(_) => FrameCodec::websocket(self.worker.limits.max_frame_bytes),
            Transport::Tcp(_) | Transport::Tls(_) => self.worker.codec,
        }
    }

    /// `conn`, with the id, the peer and, after `HELLO`, the user. At
    /// debug level, so that at the default `info` a connection logs
    /// nothing but a refused token (`refusals.rs`); everything else it logs
    /// is at debug. Made for each use rather than kept: a disabled span
    /// costs a level check, a kept one 40 bytes of every connection. A root
    /// span: one made while the driver has another entered would otherwise
    /// be its child, and a line would name the connection twice.
    pub(crate) fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            parent: None,
            "conn",
            conn_id = %self.id,
            peer = %self.peer,
            user = self.state.user.as_deref()
        )
    }

    /// Whether frames from the client are acted on.
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether frames for the client are still queued (no close yet).
    fn takes_output(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Ending { .. })
    }

    /// Runs the command in one complete frame.
    pub(crate) fn on_frame(&mut self, ctx: &mut Context<Self>, frame: &[u8]) {
        if self.auth != Auth::NotRequired
            && let Some(hello) = command::hello_with_token(frame)
        {
            return match hello {
                Ok((user, token)) => self.hello_with_token(ctx, user, token),
                Err(err) => self.reply(&[err.reply()]),
            };
        }
        if self.worker.limits.history
            && let Some(sub) = command::positioned_sub(frame)
        {
            return match sub {
                _ if self.auth == Auth::Pending => self.reply(&[b"ERR unauthorized"]),
                Ok((topic, argument)) => self.subscribe_at(ctx, topic, argument),
                Err(err) => self.reply(&[err.reply()]),
            };
        }
        match command::parse(frame) {
            Ok(cmd @ (Command::Ping(_) | Command::Quit)) => self.run_command(ctx, cmd),
            Ok(_) | Err(_) if self.auth == Auth::Pending => self.reply(&[b"ERR unauthorized"]),
            Ok(cmd) => self.run_command(ctx, cmd),
            Err(err) => self.reply(&[err.reply()]),
        }
    }

    /// `HELLO <user> <token>`: a token that does not verify ends the
    /// connection; one that does binds the user, limits its topics and
    /// sets the `KICK expired`. The token itself is never kept or logged.
    fn hello_with_token(&mut self, ctx: &mut Context<Self>, user: &str, token: Option<&[u8]>) {
        if self.auth != Auth::Pending {
            return self.reply(&[b"ERR already-identified"]);
        }
        let Some(verifier) = self.worker.tokens.clone() else {
            return;
        };
        let checked = match token {
            Some(token) => verifier.verify(token, user),
            None => Err(TokenError::Missing),
        };
        let grant = match checked {
            Ok(grant) => grant,
            Err(err) => {
                refusals::token_refused(&self.span(), self.id, self.peer, user, err);
                return self.close_behind_queued(CloseReason::Unauthorized);
            }
        };
        self.auth = Auth::Granted(grant.topics);
        self.arm_expiry(ctx, grant.expires_at);
        self.run_command(ctx, Command::Hello(user));
    }

    /// `KICK expired` once `at` has passed.
    fn arm_expiry(&mut self, ctx: &mut Context<Self>, at: SystemTime) {
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if left > MAX_EXPIRY_TIMER {
            ctx.run_later(MAX_EXPIRY_TIMER, move |act, ctx| act.arm_expiry(ctx, at));
        } else {
            // Behind the worker's inbox, as any close the connection
            // starts: whatever was addressed to it before the token ran
            // out (an admin push already answered 202) is written before
            // the kick.
            ctx.run_later(left, |act, _| act.close_behind_queued(CloseReason::Expired));
        }
    }

    /// Whether the token (if any) lets the connection use `topic`.
    fn may_use(&self, topic: &str) -> bool {
        match &self.auth {
            Auth::Granted(Some(topics)) => topics.allows(topic),
            _ => true,
        }
    }

    /// Acts on one parsed command.
    fn run_command(&mut self, ctx: &mut Context<Self>, cmd: Command<'_>) {
        let hub = &self.worker.hub;
        match cmd {
            Command::Hello(user) => {
                if self.state.user.is_some() {
                    return self.reply(&[b"ERR already-identified"]);
                }
                let user: Arc<str> = Arc::from(user);
                self.state.user = Some(user.clone());
                let settled = hub.login(user, self.id);
                let answer = [b"OK HELLO ".as_slice(), hub.conn_name(self.id).as_bytes()].concat();
                self.answer_when(ctx, settled, answer);
            }
            Command::Sub(topic) if !self.may_use(topic) => self.reply(&[b"ERR forbidden"]),
            Command::Pub { topic, .. } if !self.may_use(topic) => self.reply(&[b"ERR forbidden"]),
            // Under `lines` such a payload would reach TCP subscribers split
            // (a `\n` from a WebSocket client) or cut short (a trailing `\r`,
            // which a lines client can send as `PUB t a\r\r\n`).
            Command::Pub { payload, .. } if !self.worker.codec.carries(payload) => {
                self.reply(&[b"ERR invalid-payload"])
            }
            Command::Sub(topic) => {
                let topics = &mut self.state.topics;
                if !topics.iter().any(|t| &**t == topic) {
                    if topics.len() >= self.worker.limits.max_subscriptions {
                        return self.reply(&[b"ERR too-many-subscriptions"]);
                    }
                    let name: Arc<str> = Arc::from(topic);
                    topics.push(name.clone());
                    let settled = hub.subscribe(name, self.id);
                    let answer = [b"OK SUB ", topic.as_bytes()].concat();
                    return self.answer_when(ctx, settled, answer);
                }
                self.reply(&[b"OK SUB ", topic.as_bytes()]);
            }
            Command::Unsub(topic) => {
                let topics = &mut self.state.topics;
                if let Some(at) = topics.iter().position(|t| &**t == topic) {
                    hub.unsubscribe(topics.remove(at), self.id);
                }
                self.state.positioned.retain(|t| &**t != topic);
                self.state.floors.retain(|(t, _)| &**t != topic);
                self.reply(&[b"OK UNSUB ", topic.as_bytes()]);
            }
            Command::Pub { topic, payload } => {
                let frame = body(&[b"MSG ", topic.as_bytes(), b" ", payload]);
                let own = match hub.publish(topic, payload, frame.clone(), self.id) {
                    Published::Refused(_) => return self.reply(&[b"ERR history-unavailable"]),
                    Published::Storing(storing) => return self.hold_for_store(ctx, storing),
                    Published::Stored(positioned)
                        if self.state.positioned.iter().any(|t| &**t == topic) =>
                    {
                        positioned
                    }
                    Published::Stored(_) | Published::Live => frame,
                };
                if self.state.topics.iter().any(|t| &**t == topic) {
                    self.enqueue(own);
                }
            }
            Command::Ping(None) => self.reply(&[b"PONG"]),
            Command::Ping(Some(payload)) => self.reply(&[b"PONG ", payload]),
            Command::Quit => self.close_behind_queued(CloseReason::Quit),
        }
    }

    /// `SUB <topic> <position>` or `SUB <topic> LATEST` (section 13): the
    /// answer, then the messages history replays, queued in this turn, so
    /// that every live message (which comes through the mailbox, in a later
    /// turn) follows them; the hub registered the subscription and read
    /// history at one instant, so none is missing or twice in between.
    fn subscribe_at(&mut self, ctx: &mut Context<Self>, topic: &str, argument: &str) {
        let from = match argument {
            "LATEST" => Resume::Latest,
            position => match position.parse::<gateway_history::Position>() {
                Ok(position) => Resume::After(position),
                Err(_) => return self.reply(&[b"ERR bad-position"]),
            },
        };
        if !self.may_use(topic) {
            return self.reply(&[b"ERR forbidden"]);
        }
        if self.state.topics.iter().any(|t| &**t == topic) {
            return self.reply(&[b"ERR already-subscribed"]);
        }
        if self.state.topics.len() >= self.worker.limits.max_subscriptions {
            return self.reply(&[b"ERR too-many-subscriptions"]);
        }
        let name: Arc<str> = Arc::from(topic);
        // Taken before the answer, as a plain SUB's: a second SUB of the
        // topic meanwhile is `already-subscribed`.
        self.state.topics.push(name.clone());
        self.state.positioned.push(name.clone());
        match self.worker.hub.subscribe_at(name.clone(), self.id, from) {
            Subscribing::Now(answer) => self.subscribed_at(name, answer),
            Subscribing::Later(reading) => {
                self.held = true;
                ctx.wait(reading.into_actor(self).map(move |answer, act, _| {
                    act.held = false;
                    act.subscribed_at(name, answer);
                    // The mail that came meanwhile (live messages the
                    // recovery may also hold) is taken before any later
                    // frame is acted on.
                    act.resume_after_mail = true;
                }));
            }
        }
    }

    /// Answers a positioned `SUB`: `OK SUB`, then what history replays,
    /// queued in this turn, before any live message still in the mailbox;
    /// those at or below the newest offset are dropped as they come
    /// (`floors`).
    fn subscribed_at(&mut self, name: Arc<str>, answer: Result<Subscribed, HistoryRefusal>) {
        let subscribed = match answer {
            Ok(subscribed) => subscribed,
            Err(refusal) => {
                self.state.topics.retain(|t| *t != name);
                self.state.positioned.retain(|t| *t != name);
                let answer: &[u8] = match refusal {
                    HistoryRefusal::NoHistory => b"ERR no-history",
                    HistoryRefusal::Unavailable => b"ERR history-unavailable",
                };
                return self.reply(&[answer]);
            }
        };
        if !self.state.topics.contains(&name) {
            // Unsubscribed meanwhile (a close): nothing to answer for.
            return;
        }
        let newest = subscribed.newest.to_string();
        self.state.floors.retain(|(t, _)| *t != name);
        self.state
            .floors
            .push((name.clone(), subscribed.newest.offset));
        let head = [b"OK SUB ", name.as_bytes(), b" ", newest.as_bytes()];
        match subscribed.replay {
            Replay::Latest => self.reply(&head),
            Replay::Lost => self.reply(&[&head[..], &[b" LOST"]].concat()),
            Replay::Recovered(frames) => {
                let count = frames.len().to_string();
                self.reply(&[&head[..], &[b" RECOVERED ", count.as_bytes()]].concat());
                for frame in frames {
                    self.enqueue(frame);
                }
            }
        }
    }

    /// A `PUB` being stored in a cluster's stream: the connection holds
    /// its frames until it is, so that its own copy (delivered through its
    /// mailbox by the stream's feed) comes before the answers to its later
    /// commands, and a refusal is answered in their place.
    fn hold_for_store(
        &mut self,
        ctx: &mut Context<Self>,
        storing: crate::hub::Pending<Result<(), HistoryRefusal>>,
    ) {
        self.held = true;
        let stored = async move {
            let stored = storing.await;
            // The feed delivered the own copy from another thread, through
            // this worker's inbox: wait until it is in the mailbox.
            mailbox::behind_queued().await;
            stored
        };
        ctx.wait(stored.into_actor(self).map(|stored, act, _| {
            act.held = false;
            if stored.is_err() {
                act.reply(&[b"ERR history-unavailable"]);
            }
            act.resume_after_mail = true;
        }));
    }

    /// Answers now, or once the hub has `settled`; until then the
    /// connection holds its frames and its mailbox (`ctx.wait`), so answers
    /// keep the order of the commands.
    fn answer_when(&mut self, ctx: &mut Context<Self>, settled: Option<Settled>, answer: Vec<u8>) {
        let Some(settled) = settled else {
            return self.reply(&[&answer]);
        };
        self.held = true;
        ctx.wait(settled.into_actor(self).map(move |(), act, ctx| {
            act.held = false;
            act.reply(&[&answer]);
            act.resume_frames(ctx);
        }));
    }

    /// Answers the client: `parts` laid end to end, built in the queue's
    /// reply buffer rather than allocated on their own.
    pub(crate) fn reply(&mut self, parts: &[&[u8]]) {
        self.queue_with(|out, codec| out.push_reply(codec, parts));
    }

    /// Queues a frame body, or drops it once a close was asked for. Past
    /// `--max-pending-bytes` the client is a slow consumer.
    fn enqueue(&mut self, frame: Bytes) {
        self.queue_with(|out, codec| out.push(codec, frame));
    }

    /// Queues one frame with `push`, or drops it (counted) once a close was
    /// asked for. Past `--max-pending-bytes` the client is a slow consumer.
    fn queue_with(&mut self, push: impl FnOnce(&mut OutQueue, &FrameCodec)) {
        if !self.takes_output() {
            self.worker.metrics.dropped(DropReason::Closed, 1);
            return;
        }
        let codec = self.codec();
        push(&mut self.state.out, &codec);
        if self.state.out.pending() > self.worker.limits.max_pending_bytes {
            // The queue may only be long because nothing was written yet
            // this turn: give the socket a chance before judging the client.
            self.write_now();
            if self.state.out.pending() > self.worker.limits.max_pending_bytes {
                self.slow_consumer();
            }
        }
    }

    /// Past `--max-pending-bytes`: the queue is dropped but for the rest of
    /// a partly written frame, so that `KICK slow` can only follow a whole
    /// frame; the driver writes what the socket takes and closes.
    fn slow_consumer(&mut self) {
        let dropped = self.state.out.drop_whole_frames(&self.codec());
        tracing::debug!(parent: &self.span(), dropped, "slow consumer: queue dropped");
        self.worker
            .metrics
            .dropped(DropReason::Slow, dropped as u64);
        self.start_closing(CloseReason::Slow, None, true);
    }

    /// Asks for a graceful close; the first reason wins. The driver arms
    /// the close timeout in the same actor turn.
    pub(crate) fn begin_close(&mut self, reason: CloseReason, message: Option<Bytes>) {
        self.start_closing(reason, message, false);
    }

    /// A close the connection starts itself (the client's `QUIT` or EOF, a
    /// frame too large, an expired token, an idle timeout): it stops acting
    /// on the client's frames now and is marked closing in the registry
    /// (a request behind this gets 409), and the close is queued behind
    /// everything already on its way to the mailbox, so that what was
    /// addressed to the connection before (a publish handled, a push
    /// answered 202) is written first.
    pub(crate) fn close_behind_queued(&mut self, reason: CloseReason) {
        if self.is_open() {
            self.phase = Phase::Ending { reason };
            self.worker.hub.closing(self.id);
            mailbox::close_in_order(self.mail, reason);
        }
    }

    fn start_closing(&mut self, reason: CloseReason, message: Option<Bytes>, abandon: bool) {
        let (reason, message) = match self.phase {
            Phase::Open => {
                self.worker.hub.closing(self.id);
                (reason, message)
            }
            // The client's own end came first.
            Phase::Ending { reason } => (reason, None),
            _ => return,
        };
        tracing::debug!(parent: &self.span(), %reason, "closing");
        self.transport.closing(reason);
        if let Some(last) = last_frame(reason, message.as_deref()) {
            self.state.out.push(&self.codec(), last);
        }
        self.phase = Phase::Flushing {
            reason,
            since: Instant::now(),
            abandon,
        };
        mailbox::unwatch_idle(self.mail);
    }

    /// Bounds a close by `--close-timeout`, once.
    pub(crate) fn arm_close_timer(&mut self, ctx: &mut Context<Self>) {
        if !self.takes_output() && !self.close_timer_armed {
            self.close_timer_armed = true;
            let timeout = self.worker.limits.close_timeout;
            ctx.run_later(timeout, |act, ctx| act.close_timed_out(ctx));
        }
    }

    /// The close timeout ran out: whatever is not written is cut off.
    fn close_timed_out(&mut self, ctx: &mut Context<Self>) {
        match self.phase {
            Phase::Flushing { .. } => {
                tracing::debug!(
                    parent: &self.span(),
                    unwritten = self.state.out.pending(),
                    "close timed out before the flush"
                );
                self.worker.metrics.close_flush_timeouts.inc();
                self.finish(ctx);
            }
            Phase::Lingering { .. } => self.finish(ctx),
            Phase::Open | Phase::Ending { .. } | Phase::Done { .. } => {}
        }
    }

    /// The write side is shut: record how long the flush took and linger.
    pub(crate) fn flushed(&mut self) {
        if let Phase::Flushing { reason, since, .. } = self.phase {
            self.worker
                .metrics
                .close_flush_duration
                .observe(since.elapsed().as_secs_f64());
            self.phase = Phase::Lingering { reason };
            if let Some(slot) = &mut self.slot {
                slot.mark_flushed();
            }
        }
    }

    /// The socket may close now.
    /// Frames it could not write (a reset, the close timeout) are counted
    /// as dropped.
    pub(crate) fn finish(&mut self, ctx: &mut Context<Self>) {
        let unwritten = self.state.out.clear();
        self.worker
            .metrics
            .dropped(DropReason::Closed, unwritten as u64);
        let reason = self.phase.reason().unwrap_or(CloseReason::Error);
        self.phase = Phase::Done { reason };
        ctx.stop();
    }

    /// The client went away (EOF in the open phase, or a reset).
    pub(crate) fn peer_gone(&mut self, ctx: &mut Context<Self>, reset: bool) {
        self.peer_eof = true;
        if reset {
            // Nothing can reach the client any more.
            self.start_closing(CloseReason::Client, None, false);
            self.finish(ctx);
        } else {
            self.close_behind_queued(CloseReason::Client);
        }
    }

    /// Notes a frame from the client for the idle timeout.
    pub(crate) fn touch(&self) {
        if self.worker.limits.idle_timeout.is_some() {
            mailbox::note_activity(self.mail);
        }
    }

    /// Acts on what was posted to the connection since its last turn.
    pub(crate) fn on_mail(&mut self, mail: Mail) {
        match mail {
            Mail::Deliver(frame) => {
                if self.state.floors.is_empty() || self.above_floor(&frame) {
                    self.enqueue(frame);
                }
            }
            Mail::Close { reason, message } => self.begin_close(reason, message),
            Mail::Heartbeat => {
                if let Transport::Ws(ws) = &mut self.transport
                    && self.phase == Phase::Open
                {
                    ws.queue_ping();
                }
            }
            Mail::TimedOut => self.close_behind_queued(CloseReason::Idle),
            Mail::Cool => {
                if !self.transport.cool() {
                    mailbox::keys_cooled(self.mail);
                }
            }
            Mail::Inspect(reply) => {
                // The asker may have given up; nothing to do then.
                let _ = reply.send(self.info());
            }
            Mail::Overflow => {
                if self.takes_output() {
                    self.worker.metrics.dropped(DropReason::Slow, 1);
                    self.slow_consumer();
                } else {
                    self.worker.metrics.dropped(DropReason::Closed, 1);
                }
            }
        }
    }

    /// Whether a delivery is new to the client: a `MSG <topic>@<offset>`
    /// of a topic whose recovery replayed up to a floor is dropped at or
    /// below it; the first one above it lifts the floor, as every later
    /// one comes in offset order.
    fn above_floor(&mut self, frame: &[u8]) -> bool {
        let floors = &mut self.state.floors;
        match floor_verdict(frame, floors) {
            Floor::Other => true,
            Floor::AtOrBelow => false,
            Floor::Above(at) => {
                floors.swap_remove(at);
                true
            }
        }
    }

    fn info(&self) -> ConnInfo {
        ConnInfo {
            id: self.id,
            peer: self.peer,
            user: self.state.user.clone(),
            topics: self.state.topics.to_vec(),
            closing: !self.is_open(),
            connected_at: self.connected_at,
            counters: self.state.counters,
            pending_bytes: self.state.out.pending(),
            transport: self.transport.label(),
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(timeout) = self.worker.limits.idle_timeout {
            // A WebSocket client is pinged halfway through its silence.
            let pings = matches!(self.transport, Transport::Ws(_));
            mailbox::watch_idle(self.mail, timeout, pings);
        }
        self.start_driver(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        mailbox::close(self.mail);
        let metrics = &self.worker.metrics;
        let reason = self.phase.reason().unwrap_or(CloseReason::Error);
        if self.takes_output() {
            // Stopped without a close (the system is going down).
            self.worker.hub.closing(self.id);
        }
        self.worker.hub.closed(self.id);
        // Given back before the close is counted: whoever sees the count
        // can open a connection in its place.
        self.slot = None;
        metrics.closed(reason);
        let counters = &self.state.counters;
        tracing::debug!(
            parent: &self.span(),
            %reason,
            frames_in = counters.frames_in,
            frames_out = counters.frames_out,
            bytes_in = counters.bytes_in,
            bytes_out = counters.bytes_out,
            "closed"
        );
        metrics.connections_active.dec();
        metrics.connections_by_transport.dec(self.transport.label());
        let state = std::mem::take(&mut self.state);
        self.worker.pool.do_send(Checkin(state));
    }
}

/// Where a delivery stands against the floors of recovering topics.
#[derive(Debug, PartialEq, Eq)]
enum Floor {
    /// Not a positioned `MSG` of a topic with a floor.
    Other,
    /// At or below its topic's floor: the recovery replayed it.
    AtOrBelow,
    /// Above the floor at this index: new, and the floor can go.
    Above(usize),
}

/// Reads `MSG <topic>@<offset> ...` against `floors`.
fn floor_verdict(frame: &[u8], floors: &[(Arc<str>, u64)]) -> Floor {
    let Some(rest) = frame.strip_prefix(b"MSG ") else {
        return Floor::Other;
    };
    let found = floors.iter().enumerate().find_map(|(at, (topic, floor))| {
        let digits = rest.strip_prefix(topic.as_bytes())?.strip_prefix(b"@")?;
        Some((at, *floor, digits))
    });
    let Some((at, floor, digits)) = found else {
        return Floor::Other;
    };
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let offset = std::str::from_utf8(&digits[..end])
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    match offset {
        Some(offset) if offset <= floor => Floor::AtOrBelow,
        _ => Floor::Above(at),
    }
}

#[cfg(test)]
mod tests {
    use super::{Connection, Floor, floor_verdict};
    use std::sync::Arc;

    #[test]
    fn a_recovery_floor_drops_what_it_replayed_and_lets_the_rest_through() {
        let floors = [(Arc::<str>::from("a"), 7), (Arc::<str>::from("ab"), 3)];
        assert_eq!(floor_verdict(b"MSG a@7 x", &floors), Floor::AtOrBelow);
        assert_eq!(floor_verdict(b"MSG a@2 x y", &floors), Floor::AtOrBelow);
        assert_eq!(floor_verdict(b"MSG a@8 x", &floors), Floor::Above(0));
        // A topic that only starts like one with a floor is its own.
        assert_eq!(floor_verdict(b"MSG ab@3 x", &floors), Floor::AtOrBelow);
        assert_eq!(floor_verdict(b"MSG ab@4 ", &floors), Floor::Above(1));
        // Plain messages, other topics and other frames pass.
        assert_eq!(floor_verdict(b"MSG a 7", &floors), Floor::Other);
        assert_eq!(floor_verdict(b"MSG b@1 x", &floors), Floor::Other);
        assert_eq!(floor_verdict(b"PUSH a@1", &floors), Floor::Other);
        assert_eq!(floor_verdict(b"MSG a@", &floors), Floor::Above(0));
    }

    /// The actor runs as one tokio task holding actix's `ContextFut`, in a
    /// cell aligned to 128 bytes: with tokio 1.54 a future of up to 533
    /// bytes (528 for this one, whose size is a multiple of 8) gets a
    /// 640-byte cell, one larger a 768-byte cell. Those 128 bytes are 7 %
    /// of an idle connection, so growing the actor past the line should be
    /// a decision, not an accident. What is measured is the actor's own
    /// future, not tokio's cell, so a tokio upgrade does not fail this.
    #[test]
    fn the_actor_fits_a_640_byte_task_cell() {
        let future =
            std::mem::size_of::<actix::dev::ContextFut<Connection, actix::Context<Connection>>>();
        assert!(
            future <= 528,
            "the actor's future is {future} bytes, past 528: its tokio task cell grows \
             from 640 to 768 bytes, about 7 % more memory per idle connection. Keep the \
             new field out of the actor (in the pooled `ConnState`, or worked out when \
             needed), or, if it must be there, measure idle memory (bench/run.sh --only \
             idle) and raise this line with the figures in docs/benchmarks.md. After a \
             tokio upgrade, check the cell size for this future first (tokio's `Cell` \
             layout) and move the line to its new boundary."
        );
    }
}
