//! The operator's line for a refused client token: at info, with the
//! reason's class (`expired`, `bad_signature`, `wrong_sub`, `malformed`,
//! ...), the connection, its peer and the user it claimed, never the token.
//!
//! A client can send bad tokens as fast as it can connect, so the line is
//! rate-limited: at most one a second on each worker thread, carrying the
//! number of refusals held back since the previous one (`suppressed`). The
//! ones held back are still logged at debug, and every refusal counts in
//! `gateway_connections_closed_total{reason="unauthorized"}`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client_token::TokenError;

use crate::names::ConnId;

/// One info line per this long, per worker thread.
const EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static TOKEN_REFUSALS: RefCell<RateLimit> = const { RefCell::new(RateLimit::new()) };
}

/// Logs the refusal of `user`'s token on connection `id`.
pub(crate) fn token_refused(
    span: &tracing::Span,
    id: ConnId,
    peer: SocketAddr,
    user: &str,
    err: TokenError,
) {
    let reason = err.class();
    match TOKEN_REFUSALS.with_borrow_mut(|limit| limit.admit(Instant::now())) {
        // Outside the connection's span: at info there is none, and at
        // debug the line already names the connection.
        Some(suppressed) => tracing::info!(
            parent: None,
            conn_id = %id,
            %peer,
            %user,
            reason,
            suppressed,
            "client token refused"
        ),
        None => tracing::debug!(parent: span, %user, reason, "client token refused"),
    }
}

/// Lets one line through every [`EVERY`], counting those it holds back.
#[derive(Debug)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    const fn new() -> Self {
        RateLimit {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may go out at
    /// `now`; `None` when this one is held back.
    fn admit(&mut self, now: Instant) -> Option<u64> {
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
        let mut limit = RateLimit::new();
        let seen: Vec<Option<u64>> = [0, 1, 500, 999, 1000, 1001, 5000]
            .into_iter()
            .map(|ms| limit.admit(at(ms)))
            .collect();
        assert_eq!(seen, [Some(0), None, None, None, Some(3), None, Some(1)]);
    }
}
