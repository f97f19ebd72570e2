//! Each worker thread's table of its connections' mailboxes.
//!
//! Whatever reaches a connection from outside its own turn (a delivery, a
//! close, a ping to send, a snapshot asked for) is posted here, on the
//! connection's own thread, by the worker's relay (or the idle sweep), and
//! taken by the connection at the start of its next turn, in the order it
//! was posted. Posting is a queue push and, into an empty queue, one wake of
//! the connection's task: no allocation and no atomic per message, where an
//! actix message costs two allocations, a lock-free queue push and a
//! cross-thread wake each. Other threads never touch this table: they go
//! through the relay, whose queue is the one cross-thread hop.
//!
//! A slot is named by its index and a generation, so mail posted to a
//! connection that has closed (and whose slot another connection took) is
//! dropped, as mail to a stopped actor is.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::messages::{CloseReason, ConnInfo};

/// Queue capacity a connection keeps between bursts; a larger one is freed
/// once drained, so an idle connection holds no mail memory.
const KEEP_MAIL: usize = 16;

/// Something for a connection to act on in its next turn.
pub(crate) enum Mail {
    /// Write a message (`MSG` or `PUSH`) body, unframed.
    Deliver(Bytes),
    /// Close gracefully behind everything posted before.
    Close {
        reason: CloseReason,
        /// The text after `KICK <reason>`, for closes the admin API asks for.
        message: Option<Bytes>,
    },
    /// The client has been silent for half of `--idle-timeout`: ping it
    /// (a WebSocket client; a TCP client is never sent this).
    Heartbeat,
    /// Send a snapshot of the connection (contract section 7, CONN).
    Inspect(oneshot::Sender<ConnInfo>),
}

/// A connection's place in its thread's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailSlot {
    index: u32,
    generation: u32,
}

#[derive(Default)]
struct Entry {
    /// Bumped when the slot is freed, so stale slots miss.
    generation: u32,
    open: bool,
    queue: VecDeque<Mail>,
    /// The connection's task, woken when mail arrives in an empty queue.
    waker: Option<Waker>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl Table {
    fn entry(&mut self, slot: MailSlot) -> Option<&mut Entry> {
        self.entries
            .get_mut(slot.index as usize)
            .filter(|e| e.open && e.generation == slot.generation)
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// A mailbox for a connection starting on this thread.
pub(crate) fn open() -> MailSlot {
    TABLE.with_borrow_mut(|table| {
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                table.entries.push(Entry::default());
                // A thread runs far fewer than 2^32 connections at once.
                (table.entries.len() - 1) as u32
            }
        };
        let entry = &mut table.entries[index as usize];
        entry.open = true;
        MailSlot {
            index,
            generation: entry.generation,
        }
    })
}

/// Posts `mail` behind what the connection has not taken yet; returns
/// `false` (and drops it) when the connection is gone.
pub(crate) fn post(slot: MailSlot, mail: Mail) -> bool {
    TABLE.with_borrow_mut(|table| {
        let Some(entry) = table.entry(slot) else {
            return false;
        };
        entry.queue.push_back(mail);
        if entry.queue.len() == 1
            && let Some(waker) = &entry.waker
        {
            // Schedules the connection's task; it runs after this one.
            waker.wake_by_ref();
        }
        true
    })
}

/// The next mail for the connection, or `None` once its queue is empty.
/// `waker` is the connection's task, woken by the next post.
pub(crate) fn take(slot: MailSlot, waker: &Waker) -> Option<Mail> {
    TABLE.with_borrow_mut(|table| {
        let entry = table.entry(slot)?;
        if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            entry.waker = Some(waker.clone());
        }
        let mail = entry.queue.pop_front();
        if mail.is_none() && entry.queue.capacity() > KEEP_MAIL {
            entry.queue = VecDeque::new();
        }
        mail
    })
}

/// Frees the slot: mail still queued, or posted later, is dropped.
pub(crate) fn close(slot: MailSlot) {
    let dropped = TABLE.with_borrow_mut(|table| {
        let entry = table.entry(slot)?;
        entry.open = false;
        entry.generation = entry.generation.wrapping_add(1);
        entry.waker = None;
        let dropped = std::mem::take(&mut entry.queue);
        table.free.push(slot.index);
        Some(dropped)
    });
    // Dropped outside the borrow: an `Inspect`'s reply channel wakes its
    // waiter as it drops.
    drop(dropped);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn body(mail: Option<Mail>) -> Option<Bytes> {
        match mail {
            Some(Mail::Deliver(body)) => Some(body),
            _ => None,
        }
    }

    #[test]
    fn mail_is_taken_in_order_and_wakes_once_per_empty_queue() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let slot = open();
        assert!(take(slot, &waker).is_none());
        assert!(post(slot, Mail::Deliver(Bytes::from_static(b"a"))));
        assert!(post(slot, Mail::Deliver(Bytes::from_static(b"b"))));
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(body(take(slot, &waker)).as_deref(), Some(&b"a"[..]));
        assert_eq!(body(take(slot, &waker)).as_deref(), Some(&b"b"[..]));
        assert!(take(slot, &waker).is_none());
        assert!(post(slot, Mail::Deliver(Bytes::from_static(b"c"))));
        assert_eq!(counter.0.load(Ordering::Relaxed), 2);
        close(slot);
    }

    #[test]
    fn a_closed_slot_drops_mail_even_once_reused() {
        let waker = Waker::noop();
        let old = open();
        close(old);
        let new = open();
        assert_ne!(old, new, "a reused slot has a new generation");
        assert!(!post(old, Mail::Heartbeat));
        assert!(post(new, Mail::Deliver(Bytes::from_static(b"x"))));
        assert!(take(old, waker).is_none());
        assert_eq!(body(take(new, waker)).as_deref(), Some(&b"x"[..]));
        close(new);
    }

    #[test]
    fn a_pending_inspection_is_answered_none_when_the_slot_closes() {
        let slot = open();
        let (tx, mut rx) = oneshot::channel();
        assert!(post(slot, Mail::Inspect(tx)));
        close(slot);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
