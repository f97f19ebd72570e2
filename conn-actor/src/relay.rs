//! One relay per worker thread: the single way into that thread's
//! connections from the registry. Other threads hand it whole jobs (a
//! frame for one connection, a close, or a frame for every subscriber of a
//! topic that this worker runs), and it turns them into mailbox messages
//! on its own thread.
//!
//! Why: a publish to 1000 subscribers spread over two workers used to push
//! 1000 messages across threads, each an allocation freed on the other
//! thread, a cross-thread queue push and a wake-up. Through the relay it is
//! one job per worker, and the per-subscriber messages are made, queued
//! and freed on the thread that runs the subscriber.
//!
//! Order: each relay is one FIFO queue, and every job for a connection goes
//! through its worker's relay, so what one producer sends to one connection
//! (deliveries, publishes, the close) keeps its order (contract section 4).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::Addr;
use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::connection::Connection;
use crate::hub::{ConnHandle, ConnId};
use crate::messages::{Close, CloseReason, Deliver};

/// Members of a publish at or above which a worker copies the frame for
/// itself, so that the reference count of the shared frame is not bounced
/// between cores once per delivery.
const COPY_FRAME_FROM: usize = 8;

/// Work for one worker's connections.
pub(crate) enum Job {
    Deliver(Addr<Connection>, Bytes),
    Close(Addr<Connection>, CloseReason, Option<Bytes>),
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

    /// Queues a job; dropped when the worker's runtime has ended, as a
    /// message to a stopped actor is.
    pub(crate) fn send(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

/// The relay's loop: jobs in the order they were queued.
async fn run(mut rx: UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Deliver(addr, frame) => addr.do_send(Deliver(frame)),
            Job::Close(addr, reason, message) => addr.do_send(Close { reason, message }),
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
                for member in members.iter().filter(|m| Some(m.id()) != skip) {
                    member.addr().do_send(Deliver(frame.clone()));
                }
            }
        }
    }
}

/// Queues a close for a connection of this thread behind every job this
/// thread's relay holds: whatever was addressed to the connection before
/// (a publish already handled, say) is queued before the close.
pub(crate) fn close_in_order(addr: Addr<Connection>, reason: CloseReason) {
    Relay::current().send(Job::Close(addr, reason, None));
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
