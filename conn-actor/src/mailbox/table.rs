//! Each worker thread's table of its connections' mailboxes: one row per
//! connection, holding its queue of [`Mail`] and the sweep's bookkeeping
//! (the idle timeout, and whether its TLS record keys are built).
//!
//! Only the thread's own inbox task, its idle sweep, its flusher and its
//! connections touch the table: posting is a queue push and, into an empty
//! queue, one wake, with no allocation and no atomic. An
//! [`Address`] names a row by its index and a generation, so mail posted to
//! a connection that has closed (and whose row another connection took) is
//! dropped, as mail to a stopped actor is; and it carries the table it
//! belongs to, so an address that strayed to another worker's thread can
//! never reach another client's row there: it is refused.
//!
//! A delivery into an empty queue does not wake its connection: it puts
//! the row at the back of the worker's **flush list**, and the worker's
//! flusher task ([`flusher`]) wakes the listed connections a few at a time,
//! each batch behind whatever else the worker has to run. Why: the frames
//! a client gets in one `send` are the publishes that reach its row while
//! it waits its turn, and the kernel's cost is per `send`, three quarters
//! of the CPU of a fan-out (docs/benchmarks.md, "Does the efficiency hold
//! for other load generators"). Waiting on the list, a row gathers the
//! publishes the worker reads meanwhile, at no cost per publish (a row
//! already listed is not woken again), and the worker keeps reading its
//! publishers between batches rather than after every subscriber has
//! written. Every other mail (a close, an inspection, the sweep's) into an
//! empty queue wakes the connection at once, as a delivery does on a worker
//! with no flusher; behind listed deliveries it waits with them for the
//! flusher, as it would be taken after them anyway.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::messages::{CloseReason, ConnInfo};

/// Slots reserved when mail arrives in an empty queue, so that a burst
/// does not grow the queue one doubling at a time.
const FIRST_MAIL: usize = 16;
/// Slots per chunk of the table: the table grows a chunk at a time, so
/// it never holds more than one chunk of unused slots and never copies.
const CHUNK: usize = 256;
/// Listed connections the flusher wakes per turn: enough that its own
/// turns are a small share of the worker's, few enough that what the
/// worker reads meanwhile is handled before the next batch writes.
const FLUSH_BATCH: usize = 16;
/// Mail a listed row holds before its connection is woken without
/// waiting for the flusher: a row's queue stays short whatever the list's
/// length.
const MOST_LISTED: usize = 64;

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
    /// The client has been silent for `--idle-timeout`: close (`KICK
    /// idle`) behind what is already on its way.
    TimedOut,
    /// The worker's sweep, every tick to a connection whose TLS record
    /// keys are built: drop them if the last tick did not use them.
    Cool,
    /// Send a snapshot of the connection (contract section 7, CONN).
    Inspect(oneshot::Sender<ConnInfo>),
    /// A frame for the connection was dropped on the way: its worker's
    /// inbox was past its bound. The connection is a slow consumer.
    Overflow,
}

/// A connection's place in its thread's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address {
    /// Which thread's table: never used on another thread's.
    table: u32,
    index: u32,
    generation: u32,
}

/// A connection's idle bookkeeping, kept in its row of the worker's
/// mailbox table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdleMark {
    /// Under the idle timeout (until its close starts).
    pub(crate) tracked: bool,
    /// Pinged halfway through a silence (a WebSocket client).
    pub(crate) pings: bool,
    /// Pinged during the current silence.
    pub(crate) pinged: bool,
    /// Holds TLS record keys: posted [`Mail::Cool`] every tick until they
    /// are dropped (`transport/records.rs`).
    pub(crate) keys_warm: bool,
    pub(crate) last_tick: u64,
}

/// One connection's row: its mailbox and its idle-timeout bookkeeping.
#[derive(Default)]
pub(crate) struct Entry {
    /// Bumped when the slot is freed, so stale slots miss.
    generation: u32,
    open: bool,
    /// Where the idle sweep keeps this connection (`sweep.rs`).
    pub(crate) idle: IdleMark,
    queue: VecDeque<Mail>,
    /// On the flush list: the flusher will wake the connection if its
    /// queue still holds mail then.
    listed: bool,
    /// The connection's task, woken when mail arrives in an empty queue.
    waker: Option<Waker>,
}

impl Entry {
    fn wake(&self) {
        if let Some(waker) = &self.waker {
            // Schedules the connection's task; it runs after this one.
            waker.wake_by_ref();
        }
    }
}

struct Table {
    /// Tells this thread's table apart from every other thread's.
    id: u32,
    chunks: Vec<Box<[Entry]>>,
    /// Slots below this have been handed out at least once.
    used: u32,
    free: Vec<u32>,
    /// Rows holding deliveries their connections have not been woken for,
    /// oldest first; an address may have closed since (it then misses).
    flush: VecDeque<Address>,
    /// The worker's flusher task, once it has run: until then a delivery
    /// wakes its connection itself.
    flusher: Option<Waker>,
}

impl Table {
    fn slot(&mut self, index: u32) -> &mut Entry {
        let index = index as usize;
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }

    fn entry(&mut self, slot: Address) -> Option<&mut Entry> {
        if slot.table != self.id || slot.index >= self.used {
            // An address of another thread's table names nothing here.
            return None;
        }
        Some(self.slot(slot.index)).filter(|e| e.open && e.generation == slot.generation)
    }

    /// Queues a delivery of `frame()`, made only for a row that is still
    /// there; its connection is woken through the flush list (see the
    /// module doc). Returns `false` when the connection is gone.
    fn deliver(&mut self, slot: Address, frame: impl FnOnce() -> Bytes) -> bool {
        let has_flusher = self.flusher.is_some();
        let Some(entry) = self.entry(slot) else {
            return false;
        };
        if entry.queue.capacity() == 0 {
            entry.queue.reserve(FIRST_MAIL);
        }
        entry.queue.push_back(Mail::Deliver(frame()));
        let queued = entry.queue.len();
        if entry.listed {
            if queued == MOST_LISTED {
                entry.wake();
            }
            return true;
        }
        if queued > 1 {
            // The connection was woken for what is already queued.
            return true;
        }
        if !has_flusher {
            entry.wake();
            return true;
        }
        entry.listed = true;
        self.flush.push_back(slot);
        if self.flush.len() == 1
            && let Some(flusher) = &self.flusher
        {
            flusher.wake_by_ref();
        }
        true
    }
}

static NEXT_TABLE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        id: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
        chunks: Vec::new(),
        used: 0,
        free: Vec::new(),
        flush: VecDeque::new(),
        flusher: None,
    });
}

/// A mailbox for a connection starting on this thread.
pub(crate) fn open() -> Address {
    TABLE.with_borrow_mut(|table| {
        let index = table.free.pop().unwrap_or_else(|| {
            if table.used as usize == table.chunks.len() * CHUNK {
                table
                    .chunks
                    .push((0..CHUNK).map(|_| Entry::default()).collect());
            }
            table.used += 1;
            table.used - 1
        });
        let entry = table.slot(index);
        entry.open = true;
        let generation = entry.generation;
        Address {
            table: table.id,
            index,
            generation,
        }
    })
}

/// Queues `mail` (anything but a delivery, which goes through
/// [`post`]) into `entry`, waking its connection if the queue was empty.
/// A queue that was not empty has a wake on its way, or a place on the
/// flush list.
pub(crate) fn push(entry: &mut Entry, mail: Mail) {
    if entry.queue.capacity() == 0 {
        entry.queue.reserve(FIRST_MAIL);
    }
    entry.queue.push_back(mail);
    if entry.queue.len() == 1 {
        entry.wake();
    }
}

/// Posts `mail` behind what the connection has not taken yet; returns
/// `false` (and drops it) when the connection is gone.
pub(crate) fn post(slot: Address, mail: Mail) -> bool {
    TABLE.with_borrow_mut(|table| match mail {
        Mail::Deliver(frame) => table.deliver(slot, || frame),
        mail => match table.entry(slot) {
            Some(entry) => {
                push(entry, mail);
                true
            }
            None => false,
        },
    })
}

/// Posts a delivery of `frame` to every slot in `slots`, in one visit to
/// the table: a fan-out's share of one worker.
pub(crate) fn deliver_all(slots: impl Iterator<Item = Address>, frame: &Bytes) {
    TABLE.with_borrow_mut(|table| {
        for slot in slots {
            table.deliver(slot, || frame.clone());
        }
    });
}

/// Wakes the next [`FLUSH_BATCH`] listed connections that still have mail
/// waiting, and records `flusher` as the task to wake when the list fills
/// again. Returns whether more are listed.
fn flush_batch(flusher: &Waker) -> bool {
    TABLE.with_borrow_mut(|table| {
        if !table.flusher.as_ref().is_some_and(|w| w.will_wake(flusher)) {
            table.flusher = Some(flusher.clone());
        }
        for _ in 0..FLUSH_BATCH {
            let Some(slot) = table.flush.pop_front() else {
                return false;
            };
            if let Some(entry) = table.entry(slot) {
                entry.listed = false;
                if !entry.queue.is_empty() {
                    entry.wake();
                }
            }
        }
        !table.flush.is_empty()
    })
}

/// The worker's flusher: wakes listed connections a batch per turn, going
/// to the back of the worker's run queue between batches, for as long as
/// the worker runs. Spawned with the worker's inbox.
pub(crate) async fn flusher() {
    /// Hands deliveries back to direct wakes when the flusher ends with
    /// its runtime (tests run one runtime after another on a thread).
    struct Gone;
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = TABLE.try_with(|table| {
                if let Ok(mut table) = table.try_borrow_mut() {
                    table.flusher = None;
                }
            });
        }
    }
    let _gone = Gone;
    std::future::poll_fn(|cx: &mut std::task::Context<'_>| {
        if flush_batch(cx.waker()) {
            cx.waker().wake_by_ref();
        }
        std::task::Poll::<()>::Pending
    })
    .await
}

/// Everything posted to the connection since it last looked, oldest
/// first; the queue's storage goes with it, so a connection between bursts
/// holds none. `waker` is the connection's task, woken by the next post.
pub(crate) fn take_all(slot: Address, waker: &Waker) -> VecDeque<Mail> {
    TABLE.with_borrow_mut(|table| {
        let Some(entry) = table.entry(slot) else {
            return VecDeque::new();
        };
        if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            entry.waker = Some(waker.clone());
        }
        std::mem::take(&mut entry.queue)
    })
}

/// Runs `f` on the connection's row, if it is still open.
pub(crate) fn with_entry<R>(slot: Address, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
    TABLE.with_borrow_mut(|table| table.entry(slot).map(f))
}

/// Runs `f` on every open row of this thread, with its slot.
pub(crate) fn for_each(mut f: impl FnMut(Address, &mut Entry)) {
    TABLE.with_borrow_mut(|table| {
        let used = table.used as usize;
        let id = table.id;
        for (index, entry) in table
            .chunks
            .iter_mut()
            .flat_map(|c| c.iter_mut())
            .take(used)
            .enumerate()
        {
            if entry.open {
                let slot = Address {
                    table: id,
                    index: index as u32,
                    generation: entry.generation,
                };
                f(slot, entry);
            }
        }
    });
}

/// Frees the slot: mail still queued, or posted later, is dropped.
pub(crate) fn close(slot: Address) {
    let dropped = TABLE.with_borrow_mut(|table| {
        let entry = table.entry(slot)?;
        entry.open = false;
        entry.generation = entry.generation.wrapping_add(1);
        entry.waker = None;
        entry.listed = false;
        entry.idle = IdleMark::default();
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

    fn bodies(mail: VecDeque<Mail>) -> Vec<Bytes> {
        mail.into_iter()
            .filter_map(|m| match m {
                Mail::Deliver(body) => Some(body),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mail_is_taken_in_order_and_wakes_once_per_empty_queue() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let slot = open();
        assert!(take_all(slot, &waker).is_empty());
        assert!(post(slot, Mail::Deliver(Bytes::from_static(b"a"))));
        deliver_all([slot].into_iter(), &Bytes::from_static(b"b"));
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert_eq!(bodies(take_all(slot, &waker)), [&b"a"[..], &b"b"[..]]);
        assert!(take_all(slot, &waker).is_empty());
        assert!(post(slot, Mail::Deliver(Bytes::from_static(b"c"))));
        assert_eq!(counter.0.load(Ordering::Relaxed), 2);
        close(slot);
    }

    /// A connection's row with a counting waker, its task having looked
    /// once (as a connection's first turn does).
    fn watched() -> (Address, Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let slot = open();
        assert!(take_all(slot, &waker).is_empty());
        (slot, counter, waker)
    }

    fn wakes(counter: &CountingWaker) -> usize {
        counter.0.load(Ordering::Relaxed)
    }

    /// A flusher for this thread's table, registered as the flusher's
    /// first turn registers it (nothing is listed yet).
    fn registered_flusher() -> (Waker, Arc<CountingWaker>) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        assert!(!flush_batch(&waker), "nothing listed yet");
        (waker, counter)
    }

    /// Unregisters this thread's flusher and drops what is listed, as the
    /// flusher's end does.
    fn no_flusher() {
        TABLE.with_borrow_mut(|table| {
            table.flusher = None;
            table.flush.clear();
        });
    }

    #[test]
    fn deliveries_wake_the_flusher_once_and_their_connection_in_its_turn() {
        let (flusher_waker, flusher) = registered_flusher();
        let (slot, conn, waker) = watched();
        let frame = Bytes::from_static(b"m");
        for _ in 0..5 {
            assert!(post(slot, Mail::Deliver(frame.clone())));
        }
        assert_eq!(wakes(&conn), 0, "a delivery waits for the flusher");
        assert_eq!(wakes(&flusher), 1, "the list filled once");
        assert!(!flush_batch(&flusher_waker));
        assert_eq!(wakes(&conn), 1);
        assert_eq!(take_all(slot, &waker).len(), 5);
        // Taken before the flusher's turn: the connection is not woken
        // for nothing.
        post(slot, Mail::Deliver(frame.clone()));
        assert_eq!(take_all(slot, &waker).len(), 1);
        assert!(!flush_batch(&flusher_waker));
        assert_eq!(wakes(&conn), 1);
        assert_eq!(wakes(&flusher), 2);
        // Anything else wakes the connection at once.
        post(slot, Mail::Heartbeat);
        assert_eq!(wakes(&conn), 2);
        close(slot);
        no_flusher();
    }

    #[test]
    fn the_flusher_wakes_a_batch_per_turn_in_the_order_listed() {
        let (flusher, _) = registered_flusher();
        let rows: Vec<_> = (0..FLUSH_BATCH * 2 + 1).map(|_| watched()).collect();
        let (slots, counters): (Vec<Address>, Vec<Arc<CountingWaker>>) =
            rows.iter().map(|(s, c, _)| (*s, c.clone())).unzip();
        deliver_all(slots.iter().copied(), &Bytes::from_static(b"m"));
        let woken = || counters.iter().filter(|c| wakes(c) == 1).count();
        assert_eq!(woken(), 0);
        assert!(flush_batch(&flusher));
        assert_eq!(woken(), FLUSH_BATCH);
        assert!(counters[..FLUSH_BATCH].iter().all(|c| wakes(c) == 1));
        assert!(flush_batch(&flusher));
        assert!(!flush_batch(&flusher), "the last one was the last listed");
        assert_eq!(woken(), slots.len());
        for slot in slots {
            close(slot);
        }
        no_flusher();
    }

    #[test]
    fn a_listed_row_wakes_its_connection_itself_once_it_holds_enough() {
        // Registered: the table holds its own clone of the waker.
        registered_flusher();
        let (slot, conn, waker) = watched();
        for n in 1..=MOST_LISTED * 2 {
            post(slot, Mail::Deliver(Bytes::from_static(b"m")));
            let expected = usize::from(n >= MOST_LISTED);
            assert_eq!(wakes(&conn), expected, "after {n} deliveries");
        }
        assert_eq!(take_all(slot, &waker).len(), MOST_LISTED * 2);
        close(slot);
        no_flusher();
    }

    #[test]
    fn a_row_closed_while_listed_is_skipped_and_its_reuse_not_woken() {
        let (flusher, _) = registered_flusher();
        let (old, old_conn, _) = watched();
        post(
            old,
            Mail::Deliver(Bytes::from_static(b"for the old client")),
        );
        close(old);
        let (new, new_conn, waker) = watched();
        assert_eq!(new.index, old.index, "the slot is reused");
        assert!(!flush_batch(&flusher));
        assert_eq!(wakes(&old_conn) + wakes(&new_conn), 0);
        assert!(take_all(new, &waker).is_empty());
        // The reused row is listed afresh for its own deliveries.
        post(new, Mail::Deliver(Bytes::from_static(b"for the new one")));
        assert!(!flush_batch(&flusher));
        assert_eq!(wakes(&new_conn), 1);
        assert_eq!(bodies(take_all(new, &waker)), [&b"for the new one"[..]]);
        close(new);
        no_flusher();
    }

    #[test]
    fn a_row_stays_at_the_size_architecture_md_gives_it() {
        // Every connection holds one, idle or not (ARCHITECTURE.md, "Idle
        // memory").
        assert_eq!(std::mem::size_of::<Entry>(), 72);
    }

    #[test]
    fn an_address_taken_to_another_thread_reaches_no_row_there() {
        let waker = Waker::noop();
        let here = open();
        let stray = std::thread::spawn(open).join().expect("another thread");
        // Row for row the same place, in another thread's table.
        assert_eq!(
            (stray.index, stray.generation),
            (here.index, here.generation)
        );
        assert!(!post(
            stray,
            Mail::Deliver(Bytes::from_static(b"not yours"))
        ));
        deliver_all([stray].into_iter(), &Bytes::from_static(b"nor this"));
        assert!(with_entry(stray, |_| ()).is_none());
        close(stray);
        assert!(
            take_all(here, waker).is_empty(),
            "another client's row was reached"
        );
        close(here);
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
        assert!(take_all(old, waker).is_empty());
        assert_eq!(bodies(take_all(new, waker)), [&b"x"[..]]);
        close(new);
    }

    #[test]
    fn the_table_grows_by_chunks_and_walks_only_open_rows() {
        let slots: Vec<Address> = (0..CHUNK + 3).map(|_| open()).collect();
        close(slots[1]);
        let mut seen = Vec::new();
        for_each(|slot, _| seen.push(slot));
        assert!(!seen.contains(&slots[1]));
        for slot in slots.iter().filter(|s| **s != slots[1]) {
            assert!(seen.contains(slot), "{slot:?}");
            close(*slot);
        }
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
