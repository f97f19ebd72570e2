//! `--max-connections`: how many connections may be open at once, counted
//! exactly across every thread that accepts. A slot is taken before a
//! connection starts and given back when its socket closes.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Open-connection slots.
#[derive(Debug)]
pub struct Admission {
    open: AtomicUsize,
    max: usize,
}

impl Admission {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a slot; `false` when all are taken.
    pub fn try_admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_again_after_release() {
        let slots = Admission::new(2);
        assert!(slots.try_admit());
        assert!(slots.try_admit());
        assert!(!slots.try_admit());
        slots.release();
        assert!(slots.try_admit());
        assert!(!slots.try_admit());
    }
}
