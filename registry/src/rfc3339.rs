//! RFC 3339 timestamps in UTC (`2024-05-01T12:34:56.789Z`) for the admin
//! API, written by hand from `SystemTime` so the gateway needs no calendar
//! crate. It only formats; it parses nothing and knows no time zones.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; times before 1970 show the epoch.
pub fn format(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
