//! A log line for a kind of trouble at most once a second, with the count
//! of lines held back since the last one, so that a stream of bad input
//! from outside (refused tokens, malformed cluster messages) cannot flood
//! the log. The clock is passed in.

use std::time::{Duration, Instant};

/// The shortest time between two lines.
const EVERY: Duration = Duration::from_secs(1);

/// One kind of trouble's log lines.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// A throttle that lets the next line through.
    pub const fn new() -> Self {
        Throttle {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may go out at
    /// `now`; `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_held_back() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut throttle = Throttle::new();
        let seen: Vec<Option<u64>> = [0, 1, 500, 999, 1000, 1001, 5000]
            .into_iter()
            .map(|ms| throttle.allow(at(ms)))
            .collect();
        assert_eq!(seen, [Some(0), None, None, None, Some(3), None, Some(1)]);
    }
}
