//! A log line for a kind of trouble at most once a second, with the count
//! of lines held back since the last one: a stream of malformed or missed
//! messages cannot flood the log. The clock is passed in.

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
    /// `Some(held back)` when a line may be written now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < EVERY => {
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
    fn a_line_a_second_counting_what_was_held_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut throttle = Throttle::default();
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + ms(10)), None);
        assert_eq!(throttle.allow(t0 + ms(999)), None);
        assert_eq!(throttle.allow(t0 + ms(1000)), Some(2));
        assert_eq!(throttle.allow(t0 + ms(1500)), None);
        assert_eq!(throttle.allow(t0 + ms(3000)), Some(1));
        assert_eq!(throttle.allow(t0 + ms(3000)), None);
    }
}
