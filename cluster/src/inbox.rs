//! Every subscription of the node, read together, what each message read
//! is, and whether it is acted on. A pass takes all that the client has
//! handed over, on every subscription; the engine then puts it back in
//! each origin's sending order ([`in_sending_order`]), so one producer's
//! messages keep their order across subjects (the runtime has one thread:
//! the client's reader never runs during the pass). A message is acted on
//! once ([`admit`]): not this run's own, not seen before, of a kind its
//! subject carries.
//!
//! Not here: what is done with a message (`engine.rs`, `routing.rs`,
//! `login.rs`, `heartbeat.rs`), and which topics are subscribed
//! (`topics.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::{Message, Subscriber};
use futures_util::Stream;

use crate::sequence::{Tracker, Verdict};
use crate::wire::{HEADER, Kind, Meta, Subjects};

/// Every subscription of the node, read together.
#[derive(Default)]
pub struct Inbox {
    subs: Vec<(String, Subscriber)>,
}

impl Inbox {
    pub fn add(&mut self, subject: String, sub: Subscriber) {
        self.subs.push((subject, sub));
    }

    pub fn remove(&mut self, subject: &str) {
        self.subs.retain(|(s, _)| s != subject);
    }

    /// Everything the client has handed over, in one pass.
    pub fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Vec<Message>> {
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

/// What a message read is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// NATS's "no responders" for request `q` sent to `node`: nobody
    /// subscribes to that node's subject, so it is not there.
    Absent { q: u64, node: String },
    /// A cluster message.
    Message(Box<Meta>),
    /// Anything else, and why.
    Malformed(&'static str),
}

/// Judges a message of this node's run `run` by its subject, whether NATS
/// marked it "no responders", and its `Gw` header.
pub fn arrival(
    subjects: &Subjects,
    node: &str,
    run: &str,
    subject: &str,
    no_responders: bool,
    header: Option<&str>,
) -> Arrival {
    // Nodes answer on their own subjects, never on a reply subject: only
    // NATS speaks there.
    if let Some((q, node)) = subjects.reply_of(node, run, subject) {
        return match no_responders {
            true => Arrival::Absent { q, node },
            false => Arrival::Malformed("a message on a reply subject"),
        };
    }
    match header.and_then(Meta::decode) {
        Some(meta) => Arrival::Message(Box::new(meta)),
        None => Arrival::Malformed("no readable Gw header of version 1"),
    }
}

/// What [`arrival`] needs of a message.
pub fn arrival_of(subjects: &Subjects, node: &str, run: &str, message: &Message) -> Arrival {
    let header = message.headers.as_ref().and_then(|h| h.get(HEADER));
    arrival(
        subjects,
        node,
        run,
        &message.subject,
        message.status == Some(async_nats::StatusCode::NO_RESPONDERS),
        header.map(|value| value.as_str()),
    )
}

/// Sorts a pass by origin, run and the origin's overall sequence number:
/// one origin's messages in its sending order, whatever their subjects.
pub fn in_sending_order<T>(messages: &mut [(Meta, T)]) {
    messages.sort_by(|(a, _), (b, _)| (&a.o, &a.r, a.g).cmp(&(&b.o, &b.r, b.g)));
}

/// Whether a cluster message is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// This run's own message.
    Own,
    /// Seen before.
    Duplicate,
    /// New, but of a kind its subject does not carry: malformed. `missed`
    /// as for [`Admission::Accept`].
    WrongSubject { missed: u64 },
    /// To act on; `missed` messages of its stream before it never came.
    Accept { missed: u64 },
}

/// Judges a message `meta` on `subject` (`on_topic`: a topic's subject) for
/// node `node`'s run `run`, keeping each stream's last number in `tracker`.
pub fn admit(
    node: &str,
    run: &str,
    meta: &Meta,
    subject: &str,
    on_topic: bool,
    tracker: &mut Tracker,
) -> Admission {
    if meta.o == node && meta.r == run {
        return Admission::Own;
    }
    let missed = match tracker.check(&meta.o, &meta.r, subject, meta.s) {
        Verdict::Duplicate => return Admission::Duplicate,
        Verdict::Accept { missed } => missed,
    };
    // Topic messages on topic subjects, everything else elsewhere.
    match (meta.k == Kind::Publish) == on_topic {
        true => Admission::Accept { missed },
        false => Admission::WrongSubject { missed },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(origin: &str, run: &str, g: u64) -> Meta {
        Meta {
            o: origin.into(),
            r: run.into(),
            s: 1,
            g,
            ..Meta::new(Kind::Publish)
        }
    }

    #[test]
    fn a_reply_subject_carries_only_no_responders() {
        let s = Subjects::new("gw");
        let reply = s.reply("me", "r1", 7, "b");
        let check = |subject: &str, no_responders, header: Option<&str>, expected: Arrival| {
            assert_eq!(
                arrival(&s, "me", "r1", subject, no_responders, header),
                expected,
                "{subject} {header:?}"
            );
        };
        let absent = Arrival::Absent {
            q: 7,
            node: "b".into(),
        };
        check(&reply, true, None, absent);
        check(
            &reply,
            false,
            Some(&meta("b", "r", 1).encode()),
            Arrival::Malformed("a message on a reply subject"),
        );
        let header = meta("b", "r", 1).encode();
        check(
            "gw.all",
            false,
            Some(&header),
            Arrival::Message(Box::new(meta("b", "r", 1))),
        );
        let unread = Arrival::Malformed("no readable Gw header of version 1");
        check("gw.all", false, None, unread.clone());
        check("gw.all", false, Some("{}"), unread.clone());
        // Another run's reply subject is not this run's: judged as any.
        check(&s.reply("me", "r0", 7, "b"), true, None, unread);
    }

    #[test]
    fn a_message_is_acted_on_once_and_only_on_its_kind_of_subject() {
        use Admission::*;
        use Kind::{Broadcast, Heartbeat, Publish};
        // (origin, run, sequence number, kind, subject, expected), in turn.
        let cases = [
            ("me", "r1", 1, Publish, "gw.t.x", Own),
            // Another run of this node's id is another node (a twin).
            ("me", "r0", 1, Heartbeat, "gw.all", Accept { missed: 0 }),
            ("b", "r", 1, Publish, "gw.t.x", Accept { missed: 0 }),
            ("b", "r", 1, Publish, "gw.t.x", Duplicate),
            ("b", "r", 4, Publish, "gw.t.x", Accept { missed: 2 }),
            // Wrong subject: malformed, but its number still counts.
            ("b", "r", 6, Broadcast, "gw.t.x", WrongSubject { missed: 1 }),
            ("b", "r", 6, Publish, "gw.t.x", Duplicate),
            ("b", "r", 1, Publish, "gw.all", WrongSubject { missed: 0 }),
        ];
        let mut tracker = Tracker::default();
        for (origin, run, s, k, subject, expected) in cases {
            let meta = Meta {
                s,
                k,
                ..meta(origin, run, s)
            };
            let on_topic = subject.starts_with("gw.t.");
            let got = admit("me", "r1", &meta, subject, on_topic, &mut tracker);
            assert_eq!(got, expected, "{meta:?} on {subject}");
        }
    }

    #[test]
    fn a_pass_is_put_back_in_each_origins_sending_order() {
        let mut pass = vec![
            (meta("b", "r", 3), "b3"),
            (meta("a", "r", 2), "a2"),
            (meta("b", "r", 1), "b1"),
            (meta("a", "q", 9), "aq9"),
            (meta("a", "r", 1), "a1"),
            (meta("b", "r", 2), "b2"),
        ];
        in_sending_order(&mut pass);
        let order: Vec<&str> = pass.iter().map(|(_, name)| *name).collect();
        assert_eq!(order, ["aq9", "a1", "a2", "b1", "b2", "b3"]);
    }
}
