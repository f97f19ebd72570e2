//! One relay per worker thread: the single way into that thread's
//! connections from the registry. Other threads hand it whole jobs (a
//! frame for one connection, a close, or a frame for every subscriber of a
//! topic that this worker runs), and it posts them, on its own thread, to
//! the connections' mailboxes (`mailbox.rs`).
//!
//! Why: a publish to 1000 subscribers spread over two workers is one job
//! per worker, and each subscriber's share of it is a queue push on the
//! thread that runs the subscriber: no allocation, no atomic and no
//! cross-thread wake per delivery.
//!
//! Order: each relay is one FIFO queue, and every job for a connection goes
//! through its worker's relay, so what one producer sends to one connection
//! (deliveries, publishes, the close) keeps its order (contract section 4).
//!
//! Bound: the frames a relay holds come to at most [`MAX_QUEUED_BYTES`].
//! A relay that far behind means its worker cannot keep up with what is
//! sent to its connections, so they are treated as slow consumers: past the
//! bound, a delivery or a fan-out is queued without its frame, as an
//! overflow, and each connection it was for drops the frame (counted as
//! `writes_dropped{slow}`) and is closed with `KICK slow`, in its place in
//! the order. What is left in the queue then is a few words per job.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;

use crate::hub::{ConnHandle, ConnId};
use crate::mailbox::{self, Mail, MailSlot};
use crate::messages::{CloseReason, ConnInfo};

/// The frame bytes one relay may hold; see the module doc.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Members of a publish at or above which a worker copies the frame for
/// itself, so that the reference count of the shared frame is not bounced
/// between cores once per delivery.
const COPY_FRAME_FROM: usize = 8;

/// Work for one worker's connections.
pub(crate) enum Job {
    Deliver(MailSlot, Bytes),
    Close(MailSlot, CloseReason, Option<Bytes>),
    Inspect(MailSlot, oneshot::Sender<ConnInfo>),
    /// `frame` for `members[range]` (all run by this worker) but `skip`.
    Fanout {
        members: Arc<[ConnHandle]>,
        range: Range<usize>,
        frame: Bytes,
        skip: Option<ConnId>,
    },
    /// A delivery or a fan-out that came past [`MAX_QUEUED_BYTES`]: its
    /// targets are slow consumers.
    Overflow(Targets),
}

/// The connections a job was for.
pub(crate) enum Targets {
    One(MailSlot),
    Members {
        members: Arc<[ConnHandle]>,
        range: Range<usize>,
        skip: Option<ConnId>,
    },
}

impl Job {
    /// The frame bytes the job holds.
    fn bytes(&self) -> usize {
        match self {
            Job::Deliver(_, frame) | Job::Fanout { frame, .. } => frame.len(),
            Job::Close(_, _, message) => message.as_ref().map_or(0, Bytes::len),
            Job::Inspect(..) | Job::Overflow(_) => 0,
        }
    }

    /// The same job without its frame, where it has one to drop.
    fn without_frame(self) -> Job {
        match self {
            Job::Deliver(slot, _) => Job::Overflow(Targets::One(slot)),
            Job::Fanout {
                members,
                range,
                skip,
                ..
            } => Job::Overflow(Targets::Members {
                members,
                range,
                skip,
            }),
            other => other,
        }
    }
}

/// The sending side of a worker's relay.
#[derive(Clone)]
pub(crate) struct Relay {
    tx: UnboundedSender<Job>,
    /// The frame bytes in the queue.
    queued: Arc<AtomicUsize>,
    /// Tells relays apart (a pointer could be reused after a runtime ends).
    worker: usize,
}

thread_local! {
    static LOCAL: RefCell<Option<Relay>> = const { RefCell::new(None) };
}

static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

impl Relay {
    /// This thread's relay, started on first use. Must run inside the
    /// worker's actix runtime. A relay whose runtime has ended (tests run
    /// one runtime after another on a thread) is replaced.
    pub(crate) fn current() -> Relay {
        LOCAL.with(|cell| {
            let mut slot = cell.borrow_mut();
            match &*slot {
                Some(relay) if !relay.tx.is_closed() => relay.clone(),
                _ => {
                    let (tx, rx) = unbounded_channel();
                    let queued = Arc::new(AtomicUsize::new(0));
                    actix::spawn(run(rx, queued.clone()));
                    let relay = Relay {
                        tx,
                        queued,
                        worker: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
                    };
                    *slot = Some(relay.clone());
                    relay
                }
            }
        })
    }

    /// Which worker this relay serves.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }

    /// Queues a job, without its frame past [`MAX_QUEUED_BYTES`]; dropped
    /// when the worker's runtime has ended, as mail to a closed connection
    /// is. Returns whether it was queued.
    pub(crate) fn send(&self, job: Job) -> bool {
        let bytes = job.bytes();
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        let job = if before + bytes > MAX_QUEUED_BYTES && bytes > 0 {
            let job = job.without_frame();
            // Whatever is still counted (a close's message) stays counted.
            self.queued
                .fetch_sub(bytes - job.bytes(), Ordering::Relaxed);
            job
        } else {
            job
        };
        let bytes = job.bytes();
        match self.tx.send(job) {
            Ok(()) => true,
            Err(_) => {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The relay's loop: jobs in the order they were queued.
async fn run(mut rx: UnboundedReceiver<Job>, queued: Arc<AtomicUsize>) {
    while let Some(job) = rx.recv().await {
        queued.fetch_sub(job.bytes(), Ordering::Relaxed);
        match job {
            Job::Deliver(slot, frame) => {
                mailbox::post(slot, Mail::Deliver(frame));
            }
            Job::Close(slot, reason, message) => {
                mailbox::post(slot, Mail::Close { reason, message });
            }
            Job::Inspect(slot, reply) => {
                mailbox::post(slot, Mail::Inspect(reply));
            }
            Job::Fanout {
                members,
                range,
                frame,
                skip,
            } => {
                let members = &members[range];
                let frame = if members.len() >= COPY_FRAME_FROM {
                    Bytes::copy_from_slice(&frame)
                } else {
                    frame
                };
                let slots = members.iter().filter(|m| Some(m.id()) != skip);
                mailbox::deliver_all(slots.map(ConnHandle::slot), &frame);
            }
            Job::Overflow(Targets::One(slot)) => {
                mailbox::post(slot, Mail::Overflow);
            }
            Job::Overflow(Targets::Members {
                members,
                range,
                skip,
            }) => {
                for member in members[range].iter().filter(|m| Some(m.id()) != skip) {
                    mailbox::post(member.slot(), Mail::Overflow);
                }
            }
        }
    }
}

/// Queues a close for a connection of this thread behind every job this
/// thread's relay holds: whatever was addressed to the connection before
/// (a publish already handled, say) is queued before the close.
pub(crate) fn close_in_order(slot: MailSlot, reason: CloseReason) {
    Relay::current().send(Job::Close(slot, reason, None));
}

/// Queues `frame` for every connection in `members` but `skip`: one job per
/// worker. `members` must list each worker's connections together (see
/// [`ConnHandle::worker`]). Returns how many members the publish reached,
/// `skip` included.
pub fn fan_out(members: &Arc<[ConnHandle]>, frame: &Bytes, skip: Option<ConnId>) -> usize {
    let mut start = 0;
    while start < members.len() {
        let worker = members[start].worker();
        let end = members[start..]
            .iter()
            .position(|m| m.worker() != worker)
            .map_or(members.len(), |n| start + n);
        members[start].relay().send(Job::Fanout {
            members: members.clone(),
            range: start..end,
            frame: frame.clone(),
            skip,
        });
        start = end;
    }
    members.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay whose loop is not running, and its queue, to look into.
    fn stalled() -> (Relay, UnboundedReceiver<Job>) {
        let (tx, rx) = unbounded_channel();
        let relay = Relay {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            worker: usize::MAX,
        };
        (relay, rx)
    }

    #[test]
    fn past_its_bound_a_relay_queues_deliveries_without_their_frames() {
        let (relay, mut rx) = stalled();
        let slot = mailbox::open();
        let frame = Bytes::from(vec![b'x'; 1024 * 1024]);
        let fits = MAX_QUEUED_BYTES / frame.len();
        for _ in 0..fits + 10 {
            assert!(relay.send(Job::Deliver(slot, frame.clone())));
        }
        // A close keeps its place and its message whatever the bound.
        assert!(relay.send(Job::Close(
            slot,
            CloseReason::Admin,
            Some(frame.slice(..10))
        )));
        assert_eq!(
            relay.queued.load(Ordering::Relaxed),
            fits * frame.len() + 10
        );
        let mut kinds = Vec::new();
        while let Ok(job) = rx.try_recv() {
            kinds.push(match job {
                Job::Deliver(..) => "deliver",
                Job::Overflow(Targets::One(_)) => "overflow",
                Job::Close(..) => "close",
                _ => "other",
            });
        }
        let expected: Vec<&str> = std::iter::repeat_n("deliver", fits)
            .chain(std::iter::repeat_n("overflow", 10))
            .chain(["close"])
            .collect();
        assert_eq!(kinds, expected);
        mailbox::close(slot);
    }
}
