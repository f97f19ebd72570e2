//! RFC 3339 timestamps in UTC (`2024-05-01T12:34:56.789Z`) for the admin
//! API, formatted by `time`. It only formats; it parses nothing and knows no
//! time zones.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Milliseconds always written, and `Z`: `time`'s `Rfc3339` would trim the
/// fraction to what is needed and write nanoseconds.
const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; times before 1970 show the epoch.
pub fn format(time: SystemTime) -> String {
    OffsetDateTime::from(time.max(UNIX_EPOCH))
        .format(FORMAT)
        // Only a year past 9999 fails to format, centuries after any connection opens.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(secs: u64, millis: u64, expected: &str) {
        let time = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        assert_eq!(format(time), expected, "{secs}s {millis}ms");
    }

    #[test]
    fn formats_utc() {
        check(0, 0, "1970-01-01T00:00:00.000Z");
        check(86_399, 999, "1970-01-01T23:59:59.999Z");
        check(951_782_400, 0, "2000-02-29T00:00:00.000Z");
        check(951_868_800, 5, "2000-03-01T00:00:00.005Z");
        check(1_700_000_000, 123, "2023-11-14T22:13:20.123Z");
        check(4_107_542_400, 0, "2100-03-01T00:00:00.000Z");
        check(1_709_251_199, 0, "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        let time = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(format(time), "1970-01-01T00:00:00.000Z");
    }
}
