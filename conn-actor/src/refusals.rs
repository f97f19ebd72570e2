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
use std::time::Instant;

use client_token::TokenError;

use crate::names::ConnId;
use crate::throttle::Throttle;

thread_local! {
    /// One info line a second, per worker thread.
    static TOKEN_REFUSALS: RefCell<Throttle> = const { RefCell::new(Throttle::new()) };
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
    match TOKEN_REFUSALS.with_borrow_mut(|limit| limit.allow(Instant::now())) {
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
