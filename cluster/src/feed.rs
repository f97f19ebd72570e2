//! The history feed: how a node delivers the messages of topics with
//! history, in offset order, without a hole it does not tell of.
//!
//! The stream republishes each stored message on `<prefix>.hfeed.<topic>`
//! with its sequence (`Nats-Sequence`) and the previous sequence on its
//! subject (`Nats-Last-Sequence`). A node hears a topic's feed while it
//! has local subscribers to it, and keeps, per topic, the last offset it
//! delivered ([`Sequencer`]):
//! - a message whose previous offset is the last delivered follows on:
//!   delivered;
//! - one at or below the last was delivered already: dropped;
//! - one whose previous offset is above the last shows a gap (a message
//!   lost between the stream and this node: a NATS reconnect, a slow
//!   consumer): the missing messages are read back from the stream and
//!   delivered first, in order; where the stream no longer holds them all,
//!   positioned subscribers get `LOST <topic> <position>` and the gap is
//!   counted `lost`.
//!
//! After a NATS reconnect every heard topic reads back at once what it
//! missed while away, rather than waiting for its next message to show
//! the gap.
//!
//! Starting to hear a topic: the feed subscription first, then the newest
//! offset read from the stream; what the feed brought meanwhile at or
//! below it is dropped, and the `SUB`s waiting are answered only then, so
//! that a positioned subscription made after it gets every later message.
//!
//! Runs on the NATS thread, one task; reads of the stream run beside it
//! and report back, while that topic's feed waits in its queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_nats::{Client, Message};
use bytes::Bytes;
use conn_actor::Name;
use gateway_history::Position;
use gateway_history::stream::{Entry, MARKER_HEADER};
use gateway_metrics::GapResult;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::shared::Shared;
use crate::stored::{ClusterHistory, FeedCmd};

/// The most messages one gap repair reads back.
const REPAIR_MAX: usize = 10_000;
/// Feed messages a topic holds while its start or a repair is under way;
/// past it the rest are dropped and found again as a gap.
const QUEUE_MAX: usize = 65_536;

/// One message of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMsg {
    pub offset: u64,
    /// The previous offset on its topic (0: none held before it).
    pub prev: u64,
    pub payload: Bytes,
    /// A delete marker: advances the topic, delivers nothing.
    pub marker: bool,
}

impl FeedMsg {
    /// Reads the stream's republish headers; `None` if they are missing.
    pub fn parse(message: &Message) -> Option<FeedMsg> {
        let headers = message.headers.as_ref()?;
        let number = |name: &str| -> Option<u64> { headers.get(name)?.as_str().parse().ok() };
        Some(FeedMsg {
            offset: number("Nats-Sequence")?,
            prev: number("Nats-Last-Sequence").unwrap_or(0),
            payload: message.payload.clone(),
            marker: headers.get(MARKER_HEADER).is_some(),
        })
    }
}

/// What to do with a feed message, given the topic's last offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered already (or from before the topic was heard).
    Drop,
    /// Follows on.
    Deliver,
    /// Messages between the last and this one are missing.
    Gap,
}

pub fn step(last: u64, msg: &FeedMsg) -> Step {
    if msg.offset <= last {
        Step::Drop
    } else if msg.prev <= last {
        Step::Deliver
    } else {
        Step::Gap
    }
}

enum Phase {
    /// The newest offset is being read; the `SUB`s wait.
    Starting(Vec<oneshot::Sender<()>>),
    Ready,
    /// Missing messages are being read back.
    Repairing,
}

/// One heard topic.
struct Sequencer {
    phase: Phase,
    last: u64,
    /// Feed messages held while starting or repairing.
    queue: VecDeque<FeedMsg>,
    /// Waiting for an offset to be delivered here.
    waiters: Vec<(u64, oneshot::Sender<usize>)>,
    /// Tells a start or repair result from an older hearing of the topic.
    generation: u64,
    /// Started over in a new stream: `LOST` once the newest is known.
    lost_on_start: bool,
    subscription: JoinHandle<()>,
}

/// What a read back from the stream found after a topic's last offset.
struct Repair {
    complete: bool,
    messages: Vec<Entry>,
    newest: u64,
}

enum Done {
    Started {
        topic: Name,
        generation: u64,
        newest: Option<u64>,
    },
    Repaired {
        topic: Name,
        generation: u64,
        read: Option<Repair>,
    },
}

pub struct Feed {
    shared: Arc<Shared>,
    client: Client,
    topics: HashMap<Name, Sequencer>,
    generation: u64,
    arrived: mpsc::UnboundedSender<(Name, u64, Message)>,
    done: mpsc::UnboundedSender<Done>,
}

fn history(shared: &Shared) -> &ClusterHistory {
    // The feed runs only where history is on.
    match &shared.history {
        Some(history) => history,
        None => unreachable!("the history feed runs only with history on"),
    }
}

impl Feed {
    pub async fn run(
        shared: Arc<Shared>,
        client: Client,
        mut cmds: mpsc::UnboundedReceiver<FeedCmd>,
    ) {
        let (arrived, mut arrivals) = mpsc::unbounded_channel();
        let (done, mut dones) = mpsc::unbounded_channel();
        let mut feed = Feed {
            shared,
            client,
            topics: HashMap::new(),
            generation: 0,
            arrived,
            done,
        };
        let mut refresh = tokio::time::interval(std::time::Duration::from_secs(2));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(cmd) = cmds.recv() => feed.command(cmd),
                Some((topic, generation, message)) = arrivals.recv() => {
                    feed.arrival(topic, generation, &message)
                }
                Some(done) = dones.recv() => feed.finished(done),
                _ = refresh.tick() => {
                    let shared = feed.shared.clone();
                    tokio::spawn(async move {
                        let _ = history(&shared).refresh().await;
                    });
                }
            }
        }
    }

    fn command(&mut self, cmd: FeedCmd) {
        match cmd {
            FeedCmd::Interest { topic, done } => self.interest(topic, done),
            FeedCmd::MaybeUnwanted { topic } => {
                if !self.shared.registry.has_subscribers(&topic)
                    && let Some(seq) = self.topics.remove(&topic)
                {
                    seq.subscription.abort();
                    for (_, waiter) in seq.waiters {
                        let _ = waiter.send(0);
                    }
                }
            }
            FeedCmd::Delivered {
                topic,
                offset,
                done,
            } => match self.topics.get_mut(&topic) {
                Some(seq) if seq.last < offset => seq.waiters.push((offset, done)),
                _ => {
                    let _ = done.send(0);
                }
            },
            FeedCmd::EpochChanged => {
                let topics: Vec<Name> = self.topics.keys().cloned().collect();
                for topic in topics {
                    self.restart(topic);
                }
            }
            FeedCmd::Connected => {
                // What the stream republished while NATS was away never
                // came: every heard topic reads back what it missed.
                let ready: Vec<Name> = self
                    .topics
                    .iter()
                    .filter(|(_, seq)| matches!(seq.phase, Phase::Ready))
                    .map(|(topic, _)| topic.clone())
                    .collect();
                for topic in ready {
                    if let Some(seq) = self.topics.get_mut(&topic) {
                        seq.phase = Phase::Repairing;
                    }
                    self.repair(topic);
                }
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    if let Err(err) = history(&shared).ensure().await {
                        tracing::warn!(error = %err, "history stream not ready");
                    }
                });
            }
        }
    }

    fn interest(&mut self, topic: Name, done: oneshot::Sender<()>) {
        if let Some(seq) = self.topics.get_mut(&topic) {
            match &mut seq.phase {
                Phase::Starting(waiters) => waiters.push(done),
                _ => {
                    let _ = done.send(());
                }
            }
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let Ok(store) = history(&self.shared).store() else {
            // NATS never reached: the SUB is refused by its read.
            let _ = done.send(());
            return;
        };
        let subject = store.feed_subject(&topic);
        let (client, arrived, finished) =
            (self.client.clone(), self.arrived.clone(), self.done.clone());
        let shared = self.shared.clone();
        let name = topic.clone();
        let subscription = tokio::spawn(async move {
            let mut sub = match client.subscribe(subject.clone()).await {
                Ok(sub) => sub,
                Err(err) => {
                    tracing::warn!(%subject, error = %err, "cannot hear a history feed");
                    let _ = finished.send(Done::Started {
                        topic: name,
                        generation,
                        newest: None,
                    });
                    return;
                }
            };
            // The server has the subscription once a round trip behind it
            // is answered: then read the newest offset.
            let _ = client.flush().await;
            let newest = match history(&shared).store() {
                Ok(store) => match store.newest(&name).await {
                    Ok((epoch, offset)) => {
                        history(&shared).note_epoch(&epoch);
                        Some(offset)
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let _ = finished.send(Done::Started {
                topic: name.clone(),
                generation,
                newest,
            });
            use futures_util::StreamExt as _;
            while let Some(message) = sub.next().await {
                if arrived.send((name.clone(), generation, message)).is_err() {
                    break;
                }
            }
        });
        self.topics.insert(
            topic,
            Sequencer {
                phase: Phase::Starting(vec![done]),
                last: 0,
                queue: VecDeque::new(),
                waiters: Vec::new(),
                generation,
                lost_on_start: false,
                subscription,
            },
        );
    }

    /// Starts a heard topic over in a new stream: its newest offset is
    /// read again, and its positioned subscribers are told `LOST` then.
    fn restart(&mut self, topic: Name) {
        let Some(seq) = self.topics.get_mut(&topic) else {
            return;
        };
        let waiters = match std::mem::replace(&mut seq.phase, Phase::Ready) {
            Phase::Starting(waiters) => waiters,
            _ => Vec::new(),
        };
        seq.phase = Phase::Starting(waiters);
        seq.lost_on_start = true;
        // Offsets waited for belong to the old stream: the new one may
        // never reach them, so their waiters are answered now.
        for (_, waiter) in seq.waiters.drain(..) {
            let _ = waiter.send(0);
        }
        let generation = seq.generation;
        let shared = self.shared.clone();
        let finished = self.done.clone();
        tokio::spawn(async move {
            let newest = match history(&shared).store() {
                Ok(store) => store.newest(&topic).await.ok().map(|(_, offset)| offset),
                Err(_) => None,
            };
            let _ = finished.send(Done::Started {
                topic,
                generation,
                newest,
            });
        });
    }

    fn arrival(&mut self, topic: Name, generation: u64, message: &Message) {
        let Some(msg) = FeedMsg::parse(message) else {
            self.shared.metrics.malformed.inc();
            return;
        };
        let Some(seq) = self.topics.get_mut(&topic) else {
            return;
        };
        if seq.generation != generation {
            return;
        }
        match seq.phase {
            Phase::Ready => self.follow(&topic, msg),
            Phase::Starting(_) | Phase::Repairing => {
                if seq.queue.len() < QUEUE_MAX {
                    seq.queue.push_back(msg);
                }
            }
        }
    }

    /// Acts on one message of a topic that is ready.
    fn follow(&mut self, topic: &Name, msg: FeedMsg) {
        let Some(seq) = self.topics.get_mut(topic) else {
            return;
        };
        match step(seq.last, &msg) {
            Step::Drop => {}
            Step::Deliver => {
                let count = if msg.marker {
                    0
                } else {
                    self.shared
                        .registry
                        .deliver_stored(topic, msg.offset, &msg.payload)
                };
                seq.last = msg.offset;
                release(seq, count);
            }
            Step::Gap => {
                seq.phase = Phase::Repairing;
                seq.queue.push_front(msg);
                self.repair(topic.clone());
            }
        }
    }

    /// Reads back the messages between the topic's last and the first
    /// queued one.
    fn repair(&mut self, topic: Name) {
        let Some(seq) = self.topics.get(&topic) else {
            return;
        };
        let (after, generation) = (seq.last, seq.generation);
        let shared = self.shared.clone();
        let finished = self.done.clone();
        tokio::spawn(async move {
            let read = match history(&shared).store() {
                Ok(store) => store
                    .read_after(&topic, after, REPAIR_MAX, false)
                    .await
                    .ok()
                    .map(|read| Repair {
                        complete: read.complete,
                        messages: read.messages,
                        newest: read.newest,
                    }),
                Err(_) => None,
            };
            let _ = finished.send(Done::Repaired {
                topic,
                generation,
                read,
            });
        });
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Started {
                topic,
                generation,
                newest,
            } => {
                let Some(seq) = self.topics.get_mut(&topic) else {
                    return;
                };
                if seq.generation != generation {
                    return;
                }
                // Unknown (the stream did not answer): the first message
                // that comes is trusted to follow on.
                seq.last = match newest {
                    Some(newest) => newest,
                    None => seq.queue.front().map_or(0, |m| m.prev),
                };
                if let Phase::Starting(waiters) = std::mem::replace(&mut seq.phase, Phase::Ready) {
                    for waiter in waiters {
                        let _ = waiter.send(());
                    }
                }
                if std::mem::take(&mut seq.lost_on_start)
                    && let Some(epoch) = history(&self.shared).epoch()
                {
                    let offset = seq.last;
                    self.shared
                        .registry
                        .deliver_lost(&topic, &Position { epoch, offset });
                }
                self.drain(&topic);
            }
            Done::Repaired {
                topic,
                generation,
                read,
            } => self.repaired(topic, generation, read),
        }
    }

    /// A read back from the stream ended: the messages between the
    /// topic's last offset and the first queued one (or, after a
    /// reconnect, the newest) are delivered in order; what the stream no
    /// longer holds is told `LOST` to the positioned subscribers.
    fn repaired(&mut self, topic: Name, generation: u64, read: Option<Repair>) {
        let shared = self.shared.clone();
        let Some(seq) = self.topics.get_mut(&topic) else {
            return;
        };
        if seq.generation != generation {
            return;
        }
        let next = seq.queue.front().cloned();
        let Some(read) = read else {
            // The stream did not answer. A queued message proves a gap:
            // tell it; with none, nothing is known to be missing, and the
            // next message will show any gap again.
            if let Some(next) = &next {
                lost(&shared, &topic, next.prev, seq.last, next.offset);
                seq.last = seq.last.max(next.prev);
            }
            seq.phase = Phase::Ready;
            self.drain(&topic);
            return;
        };
        let bound = next.as_ref().map_or(u64::MAX, |m| m.offset);
        let missing: Vec<Entry> = read
            .messages
            .into_iter()
            .filter(|m| m.offset > seq.last && m.offset < bound)
            .collect();
        let behind = !missing.is_empty() || next.is_some() || read.newest > seq.last;
        if behind {
            if read.complete {
                shared
                    .registry
                    .metrics()
                    .history_gaps
                    .inc(GapResult::Repaired);
            } else {
                let resumes_after = match (missing.first(), &next) {
                    (Some(first), _) => first.offset - 1,
                    (None, Some(next)) => next.prev,
                    (None, None) => read.newest,
                };
                lost(&shared, &topic, resumes_after, seq.last, bound);
            }
        }
        let mut count = 0;
        for entry in missing {
            count = shared
                .registry
                .deliver_stored(&topic, entry.offset, &entry.payload);
            seq.last = entry.offset;
        }
        // What follows the gap is trusted to follow on now.
        if let Some(next) = &next {
            seq.last = seq.last.max(next.prev);
        } else if !read.complete {
            seq.last = seq.last.max(read.newest);
        }
        release(seq, count);
        seq.phase = Phase::Ready;
        self.drain(&topic);
    }

    /// Acts on the queued messages of a topic that is ready again, until
    /// the queue is empty or another gap starts a repair.
    fn drain(&mut self, topic: &Name) {
        loop {
            let Some(seq) = self.topics.get_mut(topic) else {
                return;
            };
            if !matches!(seq.phase, Phase::Ready) {
                return;
            }
            let Some(msg) = seq.queue.pop_front() else {
                return;
            };
            self.follow(topic, msg);
        }
    }
}

/// Answers those waiting for an offset now delivered, with how many
/// subscribers the last delivery reached.
fn release(seq: &mut Sequencer, count: usize) {
    let last = seq.last;
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut seq.waiters)
        .into_iter()
        .partition(|(wanted, _)| *wanted <= last);
    seq.waiters = waiting;
    for (_, waiter) in ready {
        let _ = waiter.send(count);
    }
}

/// A gap the stream could not fill: positioned subscribers are told where
/// delivery goes on from, and it is counted.
fn lost(shared: &Shared, topic: &str, resumes_after: u64, last: u64, before: u64) {
    shared.registry.metrics().history_gaps.inc(GapResult::Lost);
    if let Some(epoch) = history(shared).epoch() {
        shared.registry.deliver_lost(
            topic,
            &Position {
                epoch,
                offset: resumes_after,
            },
        );
    }
    tracing::warn!(%topic, after = last, before,
        "history gap could not be repaired: positioned subscribers told LOST");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: u64, prev: u64) -> FeedMsg {
        FeedMsg {
            offset,
            prev,
            payload: Bytes::new(),
            marker: false,
        }
    }

    #[test]
    fn a_message_follows_on_is_old_or_shows_a_gap() {
        assert_eq!(step(5, &msg(9, 5)), Step::Deliver);
        // Its previous one was delivered before a later start's newest.
        assert_eq!(step(5, &msg(9, 3)), Step::Deliver);
        assert_eq!(step(5, &msg(5, 4)), Step::Drop);
        assert_eq!(step(5, &msg(4, 1)), Step::Drop);
        assert_eq!(step(5, &msg(9, 7)), Step::Gap);
        assert_eq!(step(0, &msg(1, 0)), Step::Deliver);
    }
}
