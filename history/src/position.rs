//! Epochs and positions as clients write them: `<epoch>:<offset>`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Names one history: 1 to 32 bytes of `A-Z a-z 0-9 _ -`. It changes
/// whenever the history it names is lost, so offsets of another epoch say
/// nothing about this one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

/// An epoch that is empty, too long or holds another byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an epoch is 1 to 32 bytes of A-Z a-z 0-9 _ -")]
pub struct InvalidEpoch;

impl Epoch {
    /// The longest epoch.
    pub const MAX_LEN: usize = 32;

    /// A fresh epoch for a history that starts now, made from `seed` (the
    /// process's start time and id will do: it must not repeat across
    /// runs).
    pub fn fresh(seed: u128) -> Epoch {
        // 22 base-62 digits hold any u128; fewer for a smaller seed.
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut n = seed;
        let mut text = Vec::new();
        loop {
            text.push(DIGITS[(n % 62) as usize]);
            n /= 62;
            if n == 0 {
                break;
            }
        }
        text.reverse();
        Epoch(String::from_utf8_lossy(&text).into())
    }

    /// The epoch as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Epoch {
    type Err = InvalidEpoch;

    fn from_str(text: &str) -> Result<Epoch, InvalidEpoch> {
        let ok = (1..=Epoch::MAX_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Epoch(text.into()))
        } else {
            Err(InvalidEpoch)
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place in one history: after the message at `offset` (0 is before the
/// first message).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The history the offset belongs to.
    pub epoch: Epoch,
    /// The offset of the last message seen.
    pub offset: u64,
}

/// A position that does not parse: not `<epoch>:<offset>`, a bad epoch, or
/// an offset that is not a decimal `u64`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position is <epoch>:<offset>")]
pub struct InvalidPosition;

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Position, InvalidPosition> {
        let (epoch, offset) = text.split_once(':').ok_or(InvalidPosition)?;
        let digits = !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit());
        if !digits {
            // `u64::from_str` would take a `+`.
            return Err(InvalidPosition);
        }
        Ok(Position {
            epoch: epoch.parse().map_err(|_| InvalidPosition)?,
            offset: offset.parse().map_err(|_| InvalidPosition)?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        for text in [
            "a:0",
            "Zq_9-x:18446744073709551615",
            &format!("{}:7", "e".repeat(32)),
        ] {
            let position: Position = text.parse().expect(text);
            assert_eq!(position.to_string(), text);
        }
    }

    #[test]
    fn bad_positions_are_refused() {
        for text in [
            "",
            ":1",
            "e:",
            "e",
            "e:+1",
            "e:-1",
            "e:1.0",
            "e: 1",
            "e:18446744073709551616",
            "e.x:1",
            "e:1:2",
            &format!("{}:1", "e".repeat(33)),
        ] {
            assert_eq!(text.parse::<Position>(), Err(InvalidPosition), "{text:?}");
        }
    }

    #[test]
    fn fresh_epochs_are_valid_and_differ() {
        let seeds = [0, 1, 61, 62, u64::MAX as u128, u128::MAX];
        let epochs: Vec<Epoch> = seeds.iter().map(|&s| Epoch::fresh(s)).collect();
        for epoch in &epochs {
            assert_eq!(epoch.as_str().parse::<Epoch>().as_ref(), Ok(epoch));
        }
        for (i, a) in epochs.iter().enumerate() {
            for b in &epochs[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
