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
}

/// The sending side of a worker's relay.
#[derive(Clone)]
pub(crate) struct Relay {
    tx: UnboundedSender<Job>,
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
                    actix::spawn(run(rx));
                    let relay = Relay {
                        tx,
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

    /// Queues a job; dropped when the worker's runtime has ended, as
    /// mail to a closed connection is. Returns whether it was queued.
    pub(crate) fn send(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

/// The relay's loop: jobs in the order they were queued.
async fn run(mut rx: UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
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
