//! What this node does with another node's messages and requests to it:
//! topic messages and broadcasts delivered to local receivers (their counts
//! kept until the sender asks), sends, closes and look-ups of a local user
//! or connection answered with how they went, and the start-up id probe.
//! Each answer goes to the asking node's own subject, once the work is
//! queued in the connection's mailbox.
//!
//! The decisions are plain functions and data, unit-tested: which route a
//! kind counts under, what a target request asks ([`wanted`]), how its result is answered ([`status_of`]),
//! and the delivery counts ([`Counts`]). The handlers around them return
//! why a message is malformed; the engine counts and logs it.
//!
//! Not here: envelopes, order, duplicates and subjects (`inbox.rs`,
//! `sequence.rs`), login claims (`login.rs`), heartbeats and goodbyes
//! (`heartbeat.rs`), answers to this node's own requests (`Shared::answered`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use conn_actor::{CloseReason, Name, command};
use gateway_metrics::cluster::Route;
use gateway_registry::{Address, RouteError};

use crate::shared::Shared;
use crate::wire::{Kind, Meta, Op, Status};

/// Why a message is dropped as malformed.
pub type Malformed = &'static str;

/// The route a message of `kind` counts under.
pub fn route_of(kind: Kind) -> Route {
    match kind {
        Kind::Publish => Route::Publish,
        Kind::Broadcast => Route::Broadcast,
        Kind::User => Route::User,
        Kind::Conn => Route::Connection,
        Kind::Login => Route::Login,
        Kind::Count | Kind::Heartbeat | Kind::Bye | Kind::Probe | Kind::Answer => Route::Control,
    }
}

/// A close reason another node may ask for: one a `KICK` names.
pub fn kick_reason(word: &str) -> Option<CloseReason> {
    use CloseReason::*;
    [Replaced, Admin, Idle, Slow, Shutdown]
        .into_iter()
        .find(|reason| reason.as_str() == word)
}

/// How a send or close that was tried here is answered.
pub fn status_of(result: Result<(), RouteError>) -> Status {
    match result {
        Ok(()) => Status::Ok,
        Err(RouteError::Closing) => Status::Closing,
        Err(RouteError::TooLarge) => Status::Refused,
        Err(_) => Status::NotFound,
    }
}

/// What a user or connection request asks of its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue `PUSH <body>`.
    Send,
    /// Close it; the body is its message when `message`.
    Close { reason: CloseReason, message: bool },
    /// Answer its CONN.
    Get,
}

/// A user or connection request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub q: u64,
    pub to: Address,
    pub action: Action,
}

/// Reads a user or connection request.
pub fn wanted(meta: &Meta) -> Result<Wanted, Malformed> {
    let (Some(q), Some(op)) = (meta.q, meta.op) else {
        return Err("target request without request id or op");
    };
    let to = match (meta.k, &meta.user, &meta.conn) {
        (Kind::User, Some(user), _) if command::user(user.as_bytes()).is_ok() => {
            Address::User(Name::from(user.as_str()))
        }
        (Kind::Conn, _, Some(id)) => Address::Conn(id.clone()),
        _ => return Err("target request without a valid target"),
    };
    let action = match op {
        Op::Send => Action::Send,
        Op::Close => match meta.reason.as_deref().and_then(kick_reason) {
            Some(reason) => Action::Close {
                reason,
                message: meta.msg,
            },
            None => return Err("close without a known reason"),
        },
        Op::Get => Action::Get,
    };
    Ok(Wanted { q, to, action })
}

/// Local deliveries of other nodes' admin publishes and broadcasts, by
/// origin and request, kept until the origin asks for the count (or for a
/// while, when it never does).
#[derive(Debug, Default)]
pub struct Counts {
    delivered: HashMap<(String, u64), (u64, Instant)>,
}

impl Counts {
    pub fn delivered(&mut self, origin: String, q: u64, n: u64, now: Instant) {
        self.delivered.insert((origin, q), (n, now));
    }

    /// The count of request `q` of `origin`; 0 when nothing was delivered
    /// (no local receiver, or the message never came).
    pub fn take(&mut self, origin: &str, q: u64) -> u64 {
        self.delivered
            .remove(&(origin.to_owned(), q))
            .map_or(0, |(n, _)| n)
    }

    /// Forgets counts older than `keep`.
    pub fn expire(&mut self, now: Instant, keep: Duration) {
        self.delivered
            .retain(|_, (_, at)| now.duration_since(*at) < keep);
    }
}

/// A topic message: delivered to the local subscribers of `topic` (the
/// topic its subject names).
pub fn publish(
    shared: &Shared,
    counts: &mut Counts,
    meta: Meta,
    topic: Option<String>,
    body: &[u8],
) -> Result<(), Malformed> {
    let registry = &shared.registry;
    let Some(topic) = topic.filter(|t| command::topic(t.as_bytes()).is_ok()) else {
        return Err("bad topic");
    };
    if !registry.fits_framing(body) {
        return Err("payload this node's framing cannot carry");
    }
    let frame = registry.msg_frame(&topic, body);
    let n = registry.publish_frame(&topic, &frame, None);
    if let Some(q) = meta.q {
        counts.delivered(meta.o, q, n as u64, Instant::now());
    }
    Ok(())
}

/// An admin broadcast: delivered to every local connection. A payload
/// this node's framing cannot carry reaches no one here.
pub fn broadcast(shared: &Shared, counts: &mut Counts, meta: Meta, body: &[u8]) {
    let registry = &shared.registry;
    let n = match registry.fits_framing(body) {
        true => registry.broadcast_frame(&registry.push_frame(body)),
        false => 0,
    };
    if let Some(q) = meta.q {
        counts.delivered(meta.o, q, n as u64, Instant::now());
    }
}

/// How many local receivers got a publish or broadcast: the origin asks
/// after the message, from the same connection, so it came first.
pub fn count(shared: &Shared, counts: &mut Counts, meta: &Meta) -> Result<(), Malformed> {
    let Some(q) = meta.q else {
        return Err("count without request");
    };
    let n = counts.take(&meta.o, q);
    let answer = Meta {
        n: Some(n),
        ..Meta::answer(q, Status::Ok)
    };
    shared.reply(&meta.o, answer, Bytes::new());
    Ok(())
}

/// A send, close or look-up from another node's admin API.
pub fn target(shared: &Arc<Shared>, meta: &Meta, body: Bytes) -> Result<(), Malformed> {
    let Wanted { q, to, action } = wanted(meta)?;
    let registry = &shared.registry;
    let result = match action {
        Action::Send if !registry.fits_framing(&body) => Err(RouteError::TooLarge),
        Action::Send => registry.send_local(&to, &body),
        Action::Close { message, .. } if message && !registry.fits_framing(&body) => {
            Err(RouteError::TooLarge)
        }
        Action::Close { reason, message } => {
            registry.close_local(&to, reason, message.then_some(body))
        }
        Action::Get => {
            get(shared.clone(), meta.o.clone(), q, to);
            return Ok(());
        }
    };
    shared.reply(&meta.o, Meta::answer(q, status_of(result)), Bytes::new());
    Ok(())
}

/// Looks a connection up; its snapshot comes from its own mailbox, so the
/// answer is sent from a task.
fn get(shared: Arc<Shared>, origin: String, q: u64, to: Address) {
    let Address::Conn(id) = to else {
        return shared.reply(&origin, Meta::answer(q, Status::NotFound), Bytes::new());
    };
    tokio::spawn(async move {
        let (meta, body) = match shared.registry.get_view(&id).await {
            Ok(view) => (
                Meta::answer(q, Status::Ok),
                Bytes::from(serde_json::to_vec(&view).unwrap_or_default()),
            ),
            Err(_) => (Meta::answer(q, Status::NotFound), Bytes::new()),
        };
        shared.reply(&origin, meta, body);
    });
}

/// A node starting with this node's id asks whether it is taken: yes,
/// on the NATS reply subject it gave.
pub fn probe(shared: &Shared, reply: Option<Subject>) {
    if let Some(reply) = reply {
        let _ = shared.send(
            reply.to_string(),
            Meta::new(Kind::Answer),
            Bytes::new(),
            Route::Control,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::for_tests;

    fn request(kind: Kind, op: Option<Op>) -> Meta {
        Meta {
            o: "b".into(),
            q: Some(3),
            op,
            ..Meta::new(kind)
        }
    }

    #[test]
    fn control_traffic_counts_as_control() {
        assert_eq!(route_of(Kind::Publish), Route::Publish);
        assert_eq!(route_of(Kind::Login), Route::Login);
        assert_eq!(route_of(Kind::Conn), Route::Connection);
        assert_eq!(route_of(Kind::Count), Route::Control);
        assert_eq!(route_of(Kind::Answer), Route::Control);
    }

    #[test]
    fn a_target_request_is_read_or_refused() {
        let user = |name: &str, op| Meta {
            user: Some(name.into()),
            ..request(Kind::User, Some(op))
        };
        let conn = |op| Meta {
            conn: Some("b.r-1".into()),
            ..request(Kind::Conn, Some(op))
        };
        assert_eq!(
            wanted(&user("u", Op::Send)),
            Ok(Wanted {
                q: 3,
                to: Address::User(Name::from("u")),
                action: Action::Send
            })
        );
        let close = Meta {
            reason: Some("admin".into()),
            msg: true,
            ..conn(Op::Close)
        };
        assert_eq!(
            wanted(&close).map(|w| (w.to, w.action)),
            Ok((
                Address::Conn("b.r-1".into()),
                Action::Close {
                    reason: CloseReason::Admin,
                    message: true
                }
            ))
        );
        assert_eq!(wanted(&conn(Op::Get)).map(|w| w.action), Ok(Action::Get));
        // What cannot be acted on.
        let unknown = Meta {
            reason: Some("expired".into()),
            ..conn(Op::Close)
        };
        assert_eq!(wanted(&unknown), Err("close without a known reason"));
        assert_eq!(
            wanted(&conn(Op::Close)),
            Err("close without a known reason")
        );
        let bad = Err("target request without a valid target");
        assert_eq!(wanted(&user("bad user", Op::Send)), bad);
        assert_eq!(wanted(&request(Kind::Conn, Some(Op::Send))), bad);
        // A user request naming a connection is still a user request.
        let mixed = Meta {
            conn: Some("b.r-1".into()),
            ..request(Kind::User, Some(Op::Send))
        };
        assert_eq!(wanted(&mixed), bad);
        let no_op = Err("target request without request id or op");
        assert_eq!(wanted(&request(Kind::Conn, None)), no_op);
        let no_q = Meta {
            q: None,
            ..conn(Op::Send)
        };
        assert_eq!(wanted(&no_q), no_op);
    }

    #[test]
    fn results_are_answered_by_status() {
        assert_eq!(status_of(Ok(())), Status::Ok);
        assert_eq!(status_of(Err(RouteError::Closing)), Status::Closing);
        assert_eq!(status_of(Err(RouteError::TooLarge)), Status::Refused);
        assert_eq!(status_of(Err(RouteError::NotFound)), Status::NotFound);
        assert_eq!(kick_reason("replaced"), Some(CloseReason::Replaced));
        assert_eq!(kick_reason("shutdown"), Some(CloseReason::Shutdown));
        assert_eq!(kick_reason("nonsense"), None);
    }

    #[test]
    fn a_count_is_taken_once_and_forgotten_after_a_while() {
        let t0 = Instant::now();
        let keep = Duration::from_secs(3);
        let mut counts = Counts::default();
        counts.delivered("b".into(), 1, 5, t0);
        counts.delivered("c".into(), 1, 7, t0);
        counts.delivered("b".into(), 2, 9, t0 + Duration::from_secs(2));
        assert_eq!(counts.take("b", 1), 5);
        assert_eq!(counts.take("b", 1), 0);
        counts.expire(t0 + keep, keep);
        assert_eq!(counts.take("c", 1), 0);
        assert_eq!(counts.take("b", 2), 9);
    }

    #[test]
    fn requests_are_answered_on_the_asking_nodes_subject() {
        let (shared, mut outbox) = for_tests(100, 1 << 20);
        let mut counts = Counts::default();
        counts.delivered("b".into(), 3, 2, Instant::now());
        assert_eq!(
            count(&shared, &mut counts, &request(Kind::Count, None)),
            Ok(())
        );
        let out = outbox.try_recv().expect("a count");
        assert_eq!(out.subject, "gw.n.b");
        assert_eq!(
            (out.meta.q, out.meta.st, out.meta.n),
            (Some(3), Some(Status::Ok), Some(2))
        );
        // No connection here holds it.
        let send = Meta {
            conn: Some("me.r1-9".into()),
            ..request(Kind::Conn, Some(Op::Send))
        };
        assert_eq!(target(&shared, &send, Bytes::from_static(b"hi")), Ok(()));
        let out = outbox.try_recv().expect("an answer");
        assert_eq!(
            (out.subject.as_str(), out.meta.st),
            ("gw.n.b", Some(Status::NotFound))
        );
        // A payload the node's framing cannot carry is refused, not lost.
        assert_eq!(target(&shared, &send, Bytes::from_static(b"a\nb")), Ok(()));
        let out = outbox.try_recv().expect("an answer");
        assert_eq!(out.meta.st, Some(Status::Refused));
        // Malformed: nothing is answered.
        let no_q = Meta {
            q: None,
            ..request(Kind::Count, None)
        };
        assert_eq!(
            count(&shared, &mut counts, &no_q),
            Err("count without request")
        );
        assert!(outbox.try_recv().is_err());
    }
}
