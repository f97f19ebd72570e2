//! Every subscription of the node, read together, what each message read
//! is, and whether it is acted on. A pass takes all that the client has
//! handed over, on every subscription; the engine then puts it back in
//! each origin's sending order ([`in_sending_order`]), so one producer's
//! messages keep their order across subjects (the runtime has one thread:
//! the client's reader never runs during the pass). A pass polls only the
//! subscriptions woken since the last one, so its cost is the messages
//! read, not the subscriptions held (one topic per user makes those many
//! thousands). A message is acted on once ([`admit`]): not this run's own,
//! not seen before, of a kind its subject carries.
//!
//! Not here: what is done with a message (`engine.rs`, `routing.rs`,
//! `login.rs`, `heartbeat.rs`), and which topics are subscribed
//! (`topics.rs`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use async_nats::{Message, Subscriber};
use futures_util::Stream;

use crate::sequence::{Tracker, Verdict};
use crate::shared::lock;
use crate::wire::{HEADER, Kind, Meta, Subjects};

/// Every subscription of the node, read together: each has an id and a
/// waker of its own, which marks it ready and wakes the engine, so a pass
/// polls only the subscriptions that have something (or have ended).
///
/// Not `SelectAll`/`FuturesUnordered`: those hand back control after a
/// number of polls in a row (32), which would split a pass and with it
/// one origin's messages across passes, out of their sending order.
pub struct Inbox<S = Subscriber> {
    subs: HashMap<u64, Sub<S>>,
    /// Ids of the subscriptions on each subject (one, but nothing forbids
    /// two), so that removing a topic does not scan every subscription.
    by_subject: HashMap<String, Vec<u64>>,
    next_id: u64,
    ready: Arc<Ready>,
}

struct Sub<S> {
    subject: String,
    stream: S,
    wake: Arc<SubWake>,
    /// `wake` as a `Waker`, made once: polling must not allocate.
    waker: Waker,
}

/// What the subscriptions' wakers share with the pass.
#[derive(Default)]
struct Ready {
    /// Subscriptions woken since the last pass took them, each once.
    ids: Mutex<Vec<u64>>,
    /// The engine task's waker, as of the last pass.
    engine: Mutex<Option<Waker>>,
}

/// One subscription's waker.
struct SubWake {
    id: u64,
    /// Already in `Ready::ids`: a subscription woken for every message of
    /// a burst is listed (and polled) once.
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for SubWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            lock(&self.ready.ids).push(self.id);
        }
        // Cloned out of the lock: the engine's waker may run anything.
        let engine = lock(&self.ready.engine).clone();
        if let Some(engine) = engine {
            engine.wake();
        }
    }
}

impl<S> Default for Inbox<S> {
    fn default() -> Self {
        Self {
            subs: HashMap::new(),
            by_subject: HashMap::new(),
            next_id: 0,
            ready: Arc::default(),
        }
    }
}

impl<S: Stream + Unpin> Inbox<S> {
    /// Reads `stream` from the next pass on: a new subscription starts as
    /// woken, since what it was handed before it was first polled woke
    /// nobody.
    pub fn add(&mut self, subject: String, stream: S) {
        let id = self.next_id;
        // Never reused: a removed subscription's waker, still held by its
        // channel, can only name an id that is gone.
        self.next_id += 1;
        let wake = Arc::new(SubWake {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        let waker = Waker::from(wake.clone());
        self.by_subject.entry(subject.clone()).or_default().push(id);
        self.subs.insert(
            id,
            Sub {
                subject,
                stream,
                wake: wake.clone(),
                waker,
            },
        );
        wake.wake_by_ref();
    }

    /// Stops reading every subscription on `subject`, dropping it (which
    /// unsubscribes).
    pub fn remove(&mut self, subject: &str) {
        for id in self.by_subject.remove(subject).unwrap_or_default() {
            // Its id may still be listed as woken: the pass skips ids
            // that are gone.
            self.subs.remove(&id);
        }
    }

    /// Everything the client has handed over, in one pass: every woken
    /// subscription is polled until it has nothing more (which registers
    /// its waker again) or has ended (it is dropped).
    pub fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Vec<S::Item>> {
        {
            let mut engine = lock(&self.ready.engine);
            if !engine.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *engine = Some(cx.waker().clone());
            }
        }
        // Taken before polling: a subscription woken again while the pass
        // runs is listed for the next one, and its wake wakes the engine.
        let woken = std::mem::take(&mut *lock(&self.ready.ids));
        let mut batch = Vec::new();
        for id in woken {
            let Some(sub) = self.subs.get_mut(&id) else {
                continue;
            };
            // Cleared before polling, so that a wake from here on lists
            // it again.
            sub.wake.queued.store(false, Ordering::Release);
            let mut sub_cx = Context::from_waker(&sub.waker);
            let ended = loop {
                match Pin::new(&mut sub.stream).poll_next(&mut sub_cx) {
                    Poll::Ready(Some(message)) => batch.push(message),
                    Poll::Ready(None) => break true,
                    Poll::Pending => break false,
                }
            };
            if ended {
                let subject = sub.subject.clone();
                self.forget(id, &subject);
            }
        }
        match batch.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(batch),
        }
    }

    /// Drops subscription `id` on `subject`.
    fn forget(&mut self, id: u64, subject: &str) {
        self.subs.remove(&id);
        if let Some(ids) = self.by_subject.get_mut(subject) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.by_subject.remove(subject);
            }
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

    mod reading {
        use std::sync::atomic::AtomicUsize;

        use tokio::sync::mpsc;

        use super::*;

        /// A subscription whose polls are counted.
        struct Counted {
            rx: mpsc::UnboundedReceiver<u32>,
            polls: Arc<AtomicUsize>,
        }

        impl Stream for Counted {
            type Item = u32;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
                self.polls.fetch_add(1, Ordering::Relaxed);
                self.rx.poll_recv(cx)
            }
        }

        /// The engine task's waker, counting its wakes.
        #[derive(Default)]
        struct Engine(AtomicUsize);

        impl Wake for Engine {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }

        struct Subs {
            inbox: Inbox<Counted>,
            senders: Vec<mpsc::UnboundedSender<u32>>,
            polls: Vec<Arc<AtomicUsize>>,
            engine: Arc<Engine>,
            waker: Waker,
        }

        impl Subs {
            /// `n` subscriptions on subjects `s0`, `s1`, ...
            fn new(n: usize) -> Self {
                let engine = Arc::new(Engine::default());
                let mut subs = Subs {
                    inbox: Inbox::default(),
                    senders: Vec::new(),
                    polls: Vec::new(),
                    waker: Waker::from(engine.clone()),
                    engine,
                };
                for i in 0..n {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let polls = Arc::new(AtomicUsize::new(0));
                    let stream = Counted {
                        rx,
                        polls: polls.clone(),
                    };
                    subs.inbox.add(format!("s{i}"), stream);
                    subs.senders.push(tx);
                    subs.polls.push(polls);
                }
                subs
            }

            fn send(&self, sub: usize, value: u32) {
                self.senders[sub].send(value).expect("the inbox holds it");
            }

            /// One pass, its messages sorted (the order across
            /// subscriptions is the engine's to restore).
            fn pass(&mut self) -> Option<Vec<u32>> {
                let mut cx = Context::from_waker(&self.waker);
                match self.inbox.poll_batch(&mut cx) {
                    Poll::Ready(mut batch) => {
                        batch.sort_unstable();
                        Some(batch)
                    }
                    Poll::Pending => None,
                }
            }

            fn polls(&self) -> Vec<usize> {
                self.polls
                    .iter()
                    .map(|p| p.load(Ordering::Relaxed))
                    .collect()
            }

            fn engine_wakes(&self) -> usize {
                self.engine.0.load(Ordering::Relaxed)
            }
        }

        #[test]
        fn a_pass_polls_only_the_subscriptions_woken() {
            let mut subs = Subs::new(1000);
            // New subscriptions start as woken: each polled once, empty.
            assert_eq!(subs.pass(), None);
            assert!(subs.polls().iter().all(|&p| p == 1));
            assert_eq!(subs.pass(), None, "nothing woken, nothing read");
            assert!(subs.polls().iter().all(|&p| p == 1), "nothing polled");
            subs.send(7, 70);
            subs.send(7, 71);
            subs.send(900, 9000);
            assert_eq!(subs.pass(), Some(vec![70, 71, 9000]));
            let polls = subs.polls();
            // Two messages and the poll that found none; one and that.
            assert_eq!((polls[7], polls[900]), (4, 3));
            let others = polls
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != 7 && i != 900);
            assert!(others.clone().all(|(_, &p)| p == 1), "{polls:?}");
        }

        #[test]
        fn a_pass_takes_everything_handed_over_before_it() {
            let mut subs = Subs::new(5);
            for round in 0..3 {
                let mut expected = Vec::new();
                for sub in 0..5 {
                    for i in 0..=sub {
                        let value = (round * 100 + sub * 10 + i) as u32;
                        subs.send(sub, value);
                        expected.push(value);
                    }
                }
                assert_eq!(subs.pass(), Some(expected), "round {round}");
                assert_eq!(subs.pass(), None, "nothing left after round {round}");
            }
            // Polled once per message and once more, empty, per round:
            // listed once per pass however many messages woke it.
            assert_eq!(subs.polls(), [3 * 2, 3 * 3, 3 * 4, 3 * 5, 3 * 6]);
        }

        #[test]
        fn a_wake_after_a_pass_wakes_the_engine() {
            let mut subs = Subs::new(3);
            assert_eq!(subs.pass(), None);
            assert_eq!(subs.engine_wakes(), 0);
            subs.send(1, 1);
            assert_eq!(subs.engine_wakes(), 1);
            // Not polled yet: the next message wakes nobody new (the
            // channel's waker was taken by the first), and both are read.
            subs.send(1, 2);
            subs.send(2, 3);
            assert_eq!(subs.engine_wakes(), 2);
            assert_eq!(subs.pass(), Some(vec![1, 2, 3]));
            subs.send(0, 4);
            assert_eq!(subs.engine_wakes(), 3);
        }

        #[test]
        fn a_subscription_that_ends_is_dropped() {
            let mut subs = Subs::new(3);
            assert_eq!(subs.pass(), None);
            subs.send(1, 10);
            drop(std::mem::replace(
                &mut subs.senders[1],
                mpsc::unbounded_channel().0,
            ));
            // What came before its end is still read.
            assert_eq!(subs.pass(), Some(vec![10]));
            assert_eq!(subs.inbox.subs.len(), 2);
            assert!(!subs.inbox.by_subject.contains_key("s1"));
            subs.send(2, 20);
            assert_eq!(subs.pass(), Some(vec![20]));
            assert_eq!(subs.polls()[1], 3, "not polled after its end");
        }

        #[test]
        fn a_removed_subscription_is_not_read() {
            let mut subs = Subs::new(3);
            assert_eq!(subs.pass(), None);
            // Woken, then removed before the pass: skipped.
            subs.send(0, 1);
            subs.inbox.remove("s0");
            subs.send(1, 2);
            assert_eq!(subs.pass(), Some(vec![2]));
            assert_eq!(subs.polls()[0], 1);
            assert!(subs.senders[0].is_closed(), "dropped, so unsubscribed");
            subs.inbox.remove("no such subject");
            // A subject added again after its removal is read again.
            let (tx, rx) = mpsc::unbounded_channel();
            let polls = Arc::new(AtomicUsize::new(0));
            subs.inbox.add("s0".into(), Counted { rx, polls });
            tx.send(5).expect("the inbox holds it");
            subs.send(2, 6);
            assert_eq!(subs.pass(), Some(vec![5, 6]));
            assert_eq!(subs.inbox.subs.len(), 3);
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
