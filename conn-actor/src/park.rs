//! What a worker does when it runs out of work, before it blocks.
//!
//! A worker that has nothing left to run sleeps in `epoll_wait` until a
//! socket is ready. When the client that feeds it shares its core, that
//! sleep costs CPU: the first byte the client writes wakes the worker,
//! which preempts the client and reads that one frame, answers it, runs
//! dry and sleeps again, so that every frame costs a read, a send and a
//! wake-up. [`before_park`] first gives the core to whatever else is
//! ready to run on it (`sched_yield`): a co-located client finishes
//! writing, and the worker then reads all it wrote at once. With nothing
//! else ready on the core the yield returns at once, so an idle machine's
//! lone client waits for nothing; no clock is involved.
//!
//! What it can cost: a thread that is ready on the same core but does not
//! feed this worker (a CPU-bound neighbour) keeps the core until its time
//! slice ends, milliseconds, while a client's next frame waits. So a
//! yield that kept the worker away for longer than 500 µs (`LONG_AWAY`)
//! and was followed by at most one read of client input before the next
//! park did not pay for itself; after two of those in a row
//! (`WASTED_IN_A_ROW`) the worker stops yielding for a second
//! (`BACK_OFF`): two such delays a second at most, where a busy gateway,
//! whose yields gather many frames, keeps yielding. The figures behind it
//! are in docs/benchmarks.md, "Yielding before a worker sleeps".

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A yield that kept the worker away longer than this is judged by what it
/// gathered: a time slice that was not the client's.
const LONG_AWAY: Duration = Duration::from_micros(500);
/// How long a worker stops yielding after long yields that gathered
/// nothing.
const BACK_OFF: Duration = Duration::from_secs(1);
/// Reads of client input after a long yield that say it was not wasted.
const PAYING_READS: u32 = 2;
/// Wasted long yields in a row that pause yielding: one alone may be a
/// client that happened to feed the worker's neighbours that time.
const WASTED_IN_A_ROW: u8 = 2;

thread_local! {
    /// Reads that found client input since this worker last parked.
    static READS: Cell<u32> = const { Cell::new(0) };
    static POLICY: Cell<Policy> = const { Cell::new(Policy::new()) };
}

/// Counts one read that found client input (any transport).
pub(crate) fn note_read() {
    READS.set(READS.get().saturating_add(1));
}

/// Runs where a worker is about to block for lack of work (the runtime's
/// `on_thread_park` hook): yields the core first, unless yielding has
/// lately not paid (module docs).
pub fn before_park() {
    let reads = READS.replace(0);
    let mut policy = POLICY.get();
    let now = Instant::now();
    if policy.should_yield(now, reads) {
        std::thread::yield_now();
        policy.yielded(now.elapsed());
    }
    POLICY.set(policy);
}

/// Whether a worker yields before it parks, from how its last yield went.
#[derive(Clone, Copy, Debug)]
struct Policy {
    /// The last yield kept the worker away longer than [`LONG_AWAY`].
    last_long: bool,
    /// Long yields in a row that gathered fewer than [`PAYING_READS`].
    wasted: u8,
    /// No yield before this.
    paused_until: Option<Instant>,
}

impl Policy {
    const fn new() -> Self {
        Self {
            last_long: false,
            wasted: 0,
            paused_until: None,
        }
    }

    /// Decides at a park, given the reads of client input since the last.
    fn should_yield(&mut self, now: Instant, reads: u32) -> bool {
        if std::mem::take(&mut self.last_long) {
            if reads >= PAYING_READS {
                self.wasted = 0;
            } else {
                self.wasted += 1;
                if self.wasted == WASTED_IN_A_ROW {
                    self.wasted = 0;
                    self.paused_until = Some(now + BACK_OFF);
                }
            }
        }
        match self.paused_until {
            Some(until) if now < until => false,
            _ => {
                self.paused_until = None;
                true
            }
        }
    }

    /// Records how long a yield kept the worker away.
    fn yielded(&mut self, away: Duration) {
        self.last_long = away > LONG_AWAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_micros(20);
    const LONG: Duration = Duration::from_millis(4);

    /// A fresh policy, at its first park (which yields), and that park's
    /// time.
    fn first_yield() -> (Policy, Instant) {
        let mut policy = Policy::new();
        let now = Instant::now();
        assert!(policy.should_yield(now, 0), "a fresh worker yields");
        (policy, now)
    }

    #[test]
    fn yields_while_yields_are_short_whatever_they_gather() {
        let mut policy = Policy::new();
        let now = Instant::now();
        for reads in [0, 1, 0, 5] {
            assert!(policy.should_yield(now, reads));
            policy.yielded(SHORT);
        }
    }

    #[test]
    fn keeps_yielding_while_long_yields_gather_reads() {
        let (mut policy, now) = first_yield();
        for _ in 0..10 {
            policy.yielded(LONG);
            assert!(policy.should_yield(now, PAYING_READS));
        }
    }

    #[test]
    fn one_wasted_long_yield_alone_does_not_pause() {
        let (mut policy, now) = first_yield();
        for _ in 0..10 {
            // Wasted, then paying: never two wasted in a row.
            policy.yielded(LONG);
            assert!(policy.should_yield(now, 1));
            policy.yielded(LONG);
            assert!(policy.should_yield(now, PAYING_READS));
        }
    }

    #[test]
    fn long_yields_followed_by_one_read_pause_yielding_for_the_back_off() {
        let (mut policy, start) = first_yield();
        // The one frame of a lone client waited out a neighbour's slice,
        // twice in a row.
        policy.yielded(LONG);
        assert!(policy.should_yield(start, 1));
        policy.yielded(LONG);
        assert!(!policy.should_yield(start, 1));
        let later = start + BACK_OFF / 2;
        assert!(!policy.should_yield(later, 50), "still paused");
        let after = start + BACK_OFF + Duration::from_millis(1);
        assert!(
            policy.should_yield(after, 0),
            "yields again after the pause"
        );
        // Judged afresh: one more wasted long yield does not pause it.
        policy.yielded(LONG);
        assert!(policy.should_yield(after, 1));
    }

    #[test]
    fn before_park_counts_reads_per_park() {
        note_read();
        note_read();
        before_park();
        assert_eq!(READS.get(), 0, "the count starts again at each park");
    }
}
