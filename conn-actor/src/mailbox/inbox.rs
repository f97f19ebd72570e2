//! Each worker thread's inbox: the one way into that thread's connections
//! from anywhere else, and the [`ConnHandle`] that addresses it. Other
//! threads hand the inbox whole jobs (a frame for one connection, a close,
//! a snapshot to take, or a frame for every subscriber of a topic that this
//! worker runs), and its task posts them, on its own thread and in the
//! order they came, to the connections' rows of the table (`table.rs`).
//!
//! Bound: the frames an inbox holds come to at most [`MAX_QUEUED_BYTES`].
//! An inbox that far behind means its worker cannot keep up with what is
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

use super::table::{self, Address, Mail};
use crate::messages::{CloseReason, ConnInfo};
use crate::names::ConnId;

/// The frame bytes one inbox may hold; see the module doc.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Members of a publish at or above which a worker copies the frame for
/// itself, so that the reference count of the shared frame is not bounced
/// between cores once per delivery.
const COPY_FRAME_FROM: usize = 8;

/// Work for one worker's connections.
pub(crate) enum Job {
    Deliver(Address, Bytes),
    Close(Address, CloseReason, Option<Bytes>),
    Inspect(Address, oneshot::Sender<ConnInfo>),
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
    /// Answered once every job queued before it is posted.
    Marker(oneshot::Sender<()>),
}

/// The connections a job was for.
pub(crate) enum Targets {
    One(Address),
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
            Job::Inspect(..) | Job::Overflow(_) | Job::Marker(_) => 0,
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

/// The sending side of a worker's inbox.
#[derive(Clone)]
pub(crate) struct Inbox {
    tx: UnboundedSender<Job>,
    /// The frame bytes in the queue.
    queued: Arc<AtomicUsize>,
    /// Tells inboxs apart (a pointer could be reused after a runtime ends).
    worker: usize,
}

thread_local! {
    static LOCAL: RefCell<Option<Inbox>> = const { RefCell::new(None) };
}

static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

impl Inbox {
    /// This thread's inbox, started on first use. Must run inside the
    /// worker's actix runtime. An inbox whose runtime has ended (tests run
    /// one runtime after another on a thread) is replaced.
    pub(crate) fn current() -> Inbox {
        LOCAL.with(|cell| {
            let mut slot = cell.borrow_mut();
            match &*slot {
                Some(inbox) if !inbox.tx.is_closed() => inbox.clone(),
                _ => {
                    let (tx, rx) = unbounded_channel();
                    let queued = Arc::new(AtomicUsize::new(0));
                    actix::spawn(run(rx, queued.clone()));
                    // The table's flusher runs beside the inbox that posts
                    // to it, on every worker.
                    actix::spawn(table::flusher());
                    let inbox = Inbox {
                        tx,
                        queued,
                        worker: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
                    };
                    *slot = Some(inbox.clone());
                    inbox
                }
            }
        })
    }

    /// Which worker this inbox serves.
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

/// The inbox's loop: jobs in the order they were queued.
async fn run(mut rx: UnboundedReceiver<Job>, queued: Arc<AtomicUsize>) {
    while let Some(job) = rx.recv().await {
        queued.fetch_sub(job.bytes(), Ordering::Relaxed);
        match job {
            Job::Deliver(slot, frame) => {
                table::post(slot, Mail::Deliver(frame));
            }
            Job::Close(slot, reason, message) => {
                table::post(slot, Mail::Close { reason, message });
            }
            Job::Inspect(slot, reply) => {
                table::post(slot, Mail::Inspect(reply));
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
                table::deliver_all(slots.map(ConnHandle::address), &frame);
            }
            Job::Overflow(Targets::One(slot)) => {
                table::post(slot, Mail::Overflow);
            }
            Job::Marker(done) => {
                let _ = done.send(());
            }
            Job::Overflow(Targets::Members {
                members,
                range,
                skip,
            }) => {
                for member in members[range].iter().filter(|m| Some(m.id()) != skip) {
                    table::post(member.address(), Mail::Overflow);
                }
            }
        }
    }
}

/// Completes once everything queued to this worker's connections before
/// the call is in their rows of the table: what another thread delivered
/// before it said so (a cluster's feed, before a held `PUB` is let go) is
/// then taken ahead of the connection's next frame. Call on a worker.
pub(crate) fn behind_queued() -> impl std::future::Future<Output = ()> {
    let (done, posted) = oneshot::channel();
    Inbox::current().send(Job::Marker(done));
    async move {
        let _ = posted.await;
    }
}

/// The one way to reach a connection from another actor or thread: the
/// address of its mailbox. Deliveries, closes and inspections go into the
/// inbox of the worker thread that runs the connection, in the order they
/// were made, and from there into its row of the table. A handle is a few
/// words with nothing of its own on the heap: the registry keeps several
/// per connection.
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    address: Address,
    inbox: Inbox,
}

impl ConnHandle {
    /// A handle for a connection started on the current worker thread.
    pub(crate) fn new(id: ConnId, address: Address) -> Self {
        Self {
            id,
            address,
            inbox: Inbox::current(),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The worker thread that runs the connection: [`crate::fan_out`] wants
    /// each worker's connections listed together.
    pub fn worker(&self) -> usize {
        self.inbox.worker()
    }

    pub(crate) fn address(&self) -> Address {
        self.address
    }

    fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Queues a frame body (unframed: the connection frames it for its own
    /// transport) behind everything queued before. Returns `false` when
    /// the connection's worker is gone; a connection that closes before
    /// the frame reaches it drops it, as it drops anything sent after a
    /// close.
    pub fn deliver(&self, frame: Bytes) -> bool {
        self.inbox.send(Job::Deliver(self.address, frame))
    }

    /// Queues a graceful close behind everything queued before.
    pub fn close(&self, reason: CloseReason, message: Option<Bytes>) {
        self.inbox.send(Job::Close(self.address, reason, message));
    }

    /// A snapshot of the connection, taken behind everything queued
    /// before; `None` once it is gone.
    pub async fn inspect(&self) -> Option<ConnInfo> {
        let (reply, answer) = oneshot::channel();
        self.inbox.send(Job::Inspect(self.address, reply));
        answer.await.ok()
    }
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle").field("id", &self.id).finish()
    }
}

/// Queues a close for a connection of this thread behind every job this
/// thread's inbox holds: whatever was addressed to the connection before
/// (a publish already handled, say) is queued before the close.
pub(crate) fn close_in_order(slot: Address, reason: CloseReason) {
    Inbox::current().send(Job::Close(slot, reason, None));
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
        members[start].inbox().send(Job::Fanout {
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

    /// An inbox whose loop is not running, and its queue, to look into.
    fn stalled() -> (Inbox, UnboundedReceiver<Job>) {
        let (tx, rx) = unbounded_channel();
        let inbox = Inbox {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            worker: usize::MAX,
        };
        (inbox, rx)
    }

    #[test]
    fn past_its_bound_an_inbox_queues_deliveries_without_their_frames() {
        let (inbox, mut rx) = stalled();
        let slot = table::open();
        let frame = Bytes::from(vec![b'x'; 1024 * 1024]);
        let fits = MAX_QUEUED_BYTES / frame.len();
        for _ in 0..fits + 10 {
            assert!(inbox.send(Job::Deliver(slot, frame.clone())));
        }
        // A close keeps its place and its message whatever the bound.
        assert!(inbox.send(Job::Close(
            slot,
            CloseReason::Admin,
            Some(frame.slice(..10))
        )));
        assert_eq!(
            inbox.queued.load(Ordering::Relaxed),
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
        table::close(slot);
    }
}
