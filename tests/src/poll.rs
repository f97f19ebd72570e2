//! Bounded polling instead of sleeping: a condition is checked every few
//! milliseconds until it holds or a deadline passes, and then the test fails
//! with a message. Nothing here waits without a bound.

use std::time::{Duration, Instant};

/// How often a poll checks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Asserts that a condition becomes true within a timeout, polling it.
///
/// `assert_eventually!(cond, Duration::from_secs(2))` or with a message as
/// for `panic!` after the timeout.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!(
            $cond,
            $timeout,
            "condition `{}` still false after {:?}",
            stringify!($cond),
            $timeout
        )
    };
    ($cond:expr, $timeout:expr, $($arg:tt)+) => {{
        let timeout: std::time::Duration = $timeout;
        if $crate::poll::eventually(timeout, || if $cond { Some(()) } else { None }).is_none() {
            panic!($($arg)+);
        }
    }};
}
