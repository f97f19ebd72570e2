//! The connection's mailbox: the one ordered path for every write and every
//! close addressed to a connection from outside its own turn.
//!
//! A connection is an actix actor, but not addressed through actix's
//! per-actor channel. Everything for it (a `MSG` of a publish, an admin
//! `PUSH`, a kick, an inspection, its own close behind what is already on
//! its way) takes one route:
//!
//! 1. a [`ConnHandle`] (the connection's address, held by the registry)
//!    hands a job to the **inbox** of the worker thread that runs the
//!    connection (`inbox.rs`): one FIFO channel per worker, the only hop
//!    between threads;
//! 2. the inbox's task, on the worker's own thread, posts the job to the
//!    connection's row of that thread's **table** (`table.rs`): a FIFO queue
//!    of [`Mail`] per connection, and a wake of the connection's task when
//!    the queue was empty (for a delivery, through the worker's flush
//!    list, which wakes listed connections a batch at a time so that their
//!    deliveries gather);
//! 3. the connection takes its whole queue at the start of its next turn,
//!    in order, into its output queue (`OutQueue`), which its driver
//!    writes.
//!
//! Two FIFO queues in a row keep what one producer sends to one connection
//! in order, whatever thread it comes from, and a close in the same queues
//! is written after everything queued before it. A close the connection
//! starts itself (a `QUIT`, an EOF, an expired token, the idle timeout,
//! which the **sweep** of `sweep.rs` asks for by mail) goes through its
//! worker's inbox too, behind whatever the inbox still holds for it
//! (`inbox::close_in_order`).
//!
//! Why not actix's per-actor mailbox: a publish to 1000 subscribers spread
//! over two workers is one job per worker here, and each subscriber's share
//! is a queue push on its own thread, with no allocation, no atomic and no
//! cross-thread wake per delivery; an actix message costs two allocations,
//! a lock-free queue push and a cross-thread wake for each subscriber, and
//! each actix address two more allocations per copy. Measured, the change
//! to this path took CPU per fan-out delivery and idle memory per
//! connection down (docs/benchmarks.md, "What changed the figures").
//!
//! What it bounds: an inbox holds at most `inbox::MAX_QUEUED_BYTES` of
//! frames (past that its connections are slow consumers); a row holds 64
//! mails and what its inbox posts in one turn (at 64 it wakes its
//! connection without waiting for the flush list); the output queue after
//! it holds at most `--max-pending-bytes`.

mod inbox;
mod sweep;
mod table;

pub use inbox::{ConnHandle, fan_out};
pub(crate) use inbox::{behind_queued, close_in_order};
pub(crate) use sweep::{
    cooled as keys_cooled, register as watch_idle, remove as unwatch_idle, touch as note_activity,
    warm as keys_warm,
};
pub(crate) use table::{Address, Mail, close, open, take_all};
