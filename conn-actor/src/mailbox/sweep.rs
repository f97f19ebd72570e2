//! Idle timeouts without a timer per connection.
//!
//! Each worker thread keeps the coarse time of each connection's last
//! frame in the connection's row of its mailbox table (`table.rs`), and one
//! task that sweeps the table four times a second. A connection silent for
//! longer than the timeout is posted [`Mail::TimedOut`], and starts its own
//! close behind what its inbox already holds for it; one that asked for
//! heartbeats (a WebSocket client) is posted [`Mail::Heartbeat`] (a ping)
//! once it is silent for half of it. A connection costs a few bytes of its
//! row, and a frame costs a store.
//!
//! The same sweep lets an idle TLS connection drop its record keys: a
//! connection that built them marks its row ([`warm`]) and is posted
//! [`Mail::Cool`] every tick until a tick passes in which it used none
//! (`transport/records.rs`); it then clears the mark ([`cooled`]). A busy
//! connection keeps its keys and gets four mails a second; an idle one
//! holds no keys within half a second and gets none.

use std::cell::Cell;
use std::time::Duration;

use super::table::{self, Address, IdleMark, Mail};

/// How often the table is swept; the coarse clock's resolution.
const TICK: Duration = Duration::from_millis(250);

thread_local! {
    /// This thread's sweep is running.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
    /// The timeout in ticks, once a connection of this thread is under it.
    static TIMEOUT_TICKS: Cell<Option<u64>> = const { Cell::new(None) };
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn ticks(timeout: Duration) -> u64 {
    timeout.as_millis().div_ceil(TICK.as_millis()) as u64
}

fn ensure_sweeping() {
    if !SWEEPING.replace(true) {
        actix_rt::spawn(sweep_forever());
    }
}

/// Puts a connection under the idle timeout, starting this thread's sweep
/// on first use.
pub(crate) fn register(conn: Address, timeout: Duration, pings: bool) {
    if TIMEOUT_TICKS.get().is_none() {
        TIMEOUT_TICKS.set(Some(ticks(timeout)));
    }
    ensure_sweeping();
    table::with_entry(conn, |entry| {
        entry.idle = IdleMark {
            tracked: true,
            pings,
            pinged: false,
            keys_warm: entry.idle.keys_warm,
            last_tick: NOW.get(),
        }
    });
}

/// Notes that a connection built its TLS record keys: it is posted
/// [`Mail::Cool`] from the next tick on.
pub(crate) fn warm(conn: Address) {
    ensure_sweeping();
    table::with_entry(conn, |entry| entry.idle.keys_warm = true);
}

/// Notes that a connection dropped its TLS record keys.
pub(crate) fn cooled(conn: Address) {
    table::with_entry(conn, |entry| entry.idle.keys_warm = false);
}

/// Notes that a frame arrived.
pub(crate) fn touch(conn: Address) {
    let now = NOW.get();
    table::with_entry(conn, |entry| {
        entry.idle.last_tick = now;
        entry.idle.pinged = false;
    });
}

/// Takes a connection out from under the idle timeout (its close started).
pub(crate) fn remove(conn: Address) {
    table::with_entry(conn, |entry| entry.idle.tracked = false);
}

async fn sweep_forever() {
    let mut interval = actix_rt::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = NOW.get() + 1;
        NOW.set(now);
        sweep(TIMEOUT_TICKS.get(), now);
    }
}

/// Kicks every connection whose last frame is older than the timeout,
/// where one is set. A frame seen during tick `t` may be up to one tick
/// old, so a connection is kicked once a full timeout has surely passed,
/// within two ticks after. And asks each connection holding TLS record
/// keys to drop them if unused.
fn sweep(timeout_ticks: Option<u64>, now: u64) {
    table::for_each(|_, entry| {
        if entry.idle.keys_warm {
            table::push(entry, Mail::Cool);
        }
        let mark = &mut entry.idle;
        let Some(timeout_ticks) = timeout_ticks.filter(|_| mark.tracked) else {
            return;
        };
        let silent = now.saturating_sub(mark.last_tick);
        let ping = mark.pings && !mark.pinged && silent > timeout_ticks / 2;
        mark.pinged |= ping;
        let timed_out = silent > timeout_ticks;
        if timed_out {
            // Once is enough; the connection's close takes it out.
            mark.tracked = false;
        }
        if ping {
            // Halfway: a client that is there answers, and stays.
            table::push(entry, Mail::Heartbeat);
        }
        if timed_out {
            // The connection starts its own close, so that it is marked
            // closing before its kick is queued behind what is on its way.
            table::push(entry, Mail::TimedOut);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cools(conn: Address) -> usize {
        table::take_all(conn, std::task::Waker::noop())
            .iter()
            .filter(|mail| matches!(mail, Mail::Cool))
            .count()
    }

    #[actix_rt::test]
    async fn a_connection_with_warm_keys_is_posted_cool_each_tick_until_it_cooled() {
        let (warm_one, other) = (table::open(), table::open());
        warm(warm_one);
        // No idle timeout on this thread: the sweep runs for the keys alone.
        sweep(None, 1);
        assert_eq!((cools(warm_one), cools(other)), (1, 0));
        sweep(None, 2);
        assert_eq!(cools(warm_one), 1, "again while its keys are held");
        cooled(warm_one);
        sweep(None, 3);
        assert_eq!(cools(warm_one), 0, "none once dropped");
        // The idle timeout's registration keeps the mark.
        warm(warm_one);
        register(warm_one, Duration::from_secs(300), false);
        sweep(Some(1200), 4);
        assert_eq!(cools(warm_one), 1);
        table::close(warm_one);
        table::close(other);
    }

    #[test]
    fn timeouts_round_up_to_whole_ticks() {
        assert_eq!(ticks(Duration::from_secs(1)), 4);
        assert_eq!(ticks(Duration::from_millis(300)), 2);
        assert_eq!(ticks(Duration::from_secs(300)), 1200);
    }
}
