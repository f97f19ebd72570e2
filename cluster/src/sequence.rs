//! Sequence numbers on receipt: per origin run and subject, the last number
//! seen. A number not above it is a duplicate; a jump past the next is a
//! gap, counted as missed. Plain data, tested on its own.

use std::collections::HashMap;

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New; `missed` messages before it never arrived.
    Accept { missed: u64 },
    /// Seen before.
    Duplicate,
}

/// The last sequence number per (origin, run, subject).
#[derive(Debug, Default)]
pub struct Tracker {
    last: HashMap<(String, String, String), u64>,
}

impl Tracker {
    /// Judges message `seq` from `origin`'s `run` on `subject`. The first
    /// message of a stream sets its baseline.
    pub fn check(&mut self, origin: &str, run: &str, subject: &str, seq: u64) -> Verdict {
        let key = (origin.to_owned(), run.to_owned(), subject.to_owned());
        match self.last.get_mut(&key) {
            None => {
                self.last.insert(key, seq);
                Verdict::Accept { missed: 0 }
            }
            Some(last) if seq <= *last => Verdict::Duplicate,
            Some(last) => {
                let missed = seq - *last - 1;
                *last = seq;
                Verdict::Accept { missed }
            }
        }
    }

    /// Forgets a subject (no longer subscribed: a later subscription
    /// starts a new baseline).
    pub fn forget_subject(&mut self, subject: &str) {
        self.last.retain(|(_, _, s), _| s != subject);
    }

    /// Forgets everything from a node (it left).
    pub fn forget_node(&mut self, origin: &str) {
        self.last.retain(|(o, _, _), _| o != origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_gaps() {
        let mut t = Tracker::default();
        assert_eq!(t.check("a", "r", "s", 5), Verdict::Accept { missed: 0 });
        assert_eq!(t.check("a", "r", "s", 6), Verdict::Accept { missed: 0 });
        assert_eq!(t.check("a", "r", "s", 6), Verdict::Duplicate);
        assert_eq!(t.check("a", "r", "s", 3), Verdict::Duplicate);
        assert_eq!(t.check("a", "r", "s", 10), Verdict::Accept { missed: 3 });
        // Another run, subject or origin is another stream.
        assert_eq!(t.check("a", "r2", "s", 1), Verdict::Accept { missed: 0 });
        assert_eq!(t.check("b", "r", "s", 1), Verdict::Accept { missed: 0 });
        assert_eq!(t.check("a", "r", "s2", 4), Verdict::Accept { missed: 0 });
        t.forget_subject("s");
        assert_eq!(t.check("a", "r", "s", 20), Verdict::Accept { missed: 0 });
        t.forget_node("a");
        assert_eq!(t.check("a", "r", "s2", 1), Verdict::Accept { missed: 0 });
    }
}
