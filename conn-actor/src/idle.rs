//! Idle timeouts without a timer per connection.
//!
//! Each worker thread keeps one table of its connections with the coarse
//! time of their last frame, and one task that sweeps it four times a
//! second, sending a close for `idle` (through the thread's relay, behind
//! what it already holds for them) to those silent for longer than the
//! timeout, and a heartbeat (a WebSocket ping) to those that asked for one
//! once they are silent for half of it. A connection costs one table slot, and a frame costs a store.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::mailbox::{self, Mail, MailSlot};
use crate::messages::CloseReason;

/// How often the table is swept; the coarse clock's resolution.
const TICK: Duration = Duration::from_millis(250);

/// A connection's place in its thread's table.
#[derive(Debug)]
pub(crate) struct IdleSlot(usize);

struct Entry {
    conn: MailSlot,
    last_tick: u64,
    /// Pinged halfway through a silence (a WebSocket client).
    pings: bool,
    /// Pinged during the current silence.
    pinged: bool,
}

struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    timeout_ticks: u64,
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn ticks(timeout: Duration) -> u64 {
    timeout.as_millis().div_ceil(TICK.as_millis()) as u64
}

/// Adds a connection to this thread's table, starting the sweep on first use.
pub(crate) fn register(conn: MailSlot, timeout: Duration, pings: bool) -> IdleSlot {
    TABLE.with_borrow_mut(|table| {
        let table = table.get_or_insert_with(|| {
            actix_rt::spawn(sweep_forever());
            Table {
                entries: Vec::new(),
                free: Vec::new(),
                timeout_ticks: ticks(timeout),
            }
        });
        let entry = Some(Entry {
            conn,
            last_tick: NOW.get(),
            pings,
            pinged: false,
        });
        match table.free.pop() {
            Some(index) => {
                table.entries[index] = entry;
                IdleSlot(index)
            }
            None => {
                table.entries.push(entry);
                IdleSlot(table.entries.len() - 1)
            }
        }
    })
}

/// Notes that a frame arrived.
pub(crate) fn touch(slot: &IdleSlot) {
    let now = NOW.get();
    TABLE.with_borrow_mut(|table| {
        if let Some(Some(entry)) = table.as_mut().and_then(|t| t.entries.get_mut(slot.0)) {
            entry.last_tick = now;
            entry.pinged = false;
        }
    });
}

/// Removes a connection from the table.
pub(crate) fn remove(slot: IdleSlot) {
    TABLE.with_borrow_mut(|table| {
        if let Some(table) = table.as_mut()
            && let Some(entry) = table.entries.get_mut(slot.0)
        {
            *entry = None;
            table.free.push(slot.0);
        }
    });
}

async fn sweep_forever() {
    let mut interval = actix_rt::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = NOW.get() + 1;
        NOW.set(now);
        TABLE.with_borrow_mut(|table| {
            if let Some(table) = table.as_mut() {
                sweep(table, now);
            }
        });
    }
}

/// Kicks every connection whose last frame is older than the timeout. A
/// frame seen during tick `t` may be up to one tick old, so a connection is
/// kicked once a full timeout has surely passed, within two ticks after.
fn sweep(table: &mut Table, now: u64) {
    for entry in table.entries.iter_mut().flatten() {
        let silent = now.saturating_sub(entry.last_tick);
        if entry.pings && !entry.pinged && silent > table.timeout_ticks / 2 {
            // Halfway: a client that is there answers, and stays.
            mailbox::post(entry.conn, Mail::Heartbeat);
            entry.pinged = true;
        }
        if silent > table.timeout_ticks {
            crate::relay::close_in_order(entry.conn, CloseReason::Idle);
            // Once is enough; the connection removes its slot as it closes.
            entry.last_tick = u64::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_ticks() {
        assert_eq!(ticks(Duration::from_secs(1)), 4);
        assert_eq!(ticks(Duration::from_millis(300)), 2);
        assert_eq!(ticks(Duration::from_secs(300)), 1200);
    }
}
