//! Connection logs (no contract section; ARCHITECTURE, cross-cutting
//! concerns): at debug, every line a connection logs is in its `conn` span,
//! which names the connection id, the peer and, once `HELLO` bound one, the
//! user; a close is logged with its reason. At the default `info`, a
//! connection logs nothing.

use gateway_tests::{Gateway, assert_eventually};
use serde_json::Value;
use std::time::Duration;

/// A gateway logging JSON lines with this `RUST_LOG`.
fn start(filter: &str) -> Gateway {
    Gateway::start_with_env(&["--log-format", "json"], &[("RUST_LOG", filter)])
}

/// Every JSON line on stderr whose message is `message`.
fn lines_saying(gw: &Gateway, message: &str) -> Vec<Value> {
    gw.stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

#[test]
fn a_close_is_logged_at_debug_in_the_connections_span() {
    let gw = start("conn_actor=debug");
    let mut alice = gw.connect();
    let id = alice.hello("alice");
    let peer = alice.local_addr().to_string();
    alice.quit();
    let anonymous = gw.connect();
    let anonymous_peer = anonymous.local_addr().to_string();
    anonymous.reset();

    assert_eventually!(
        lines_saying(&gw, "closed").len() == 2,
        Duration::from_secs(5),
        "two `closed` lines expected in:\n{}",
        gw.stderr()
    );
    let closed = lines_saying(&gw, "closed");
    let of = |peer: &str| {
        closed
            .iter()
            .find(|line| line["span"]["peer"] == peer)
            .unwrap_or_else(|| panic!("no `closed` line in the span of {peer}: {closed:?}"))
    };
    let alice_closed = of(&peer);
    assert_eq!(alice_closed["level"], "DEBUG", "{alice_closed}");
    assert_eq!(alice_closed["reason"], "quit", "{alice_closed}");
    assert_eq!(alice_closed["span"]["name"], "conn", "{alice_closed}");
    assert_eq!(
        alice_closed["span"]["conn_id"],
        id.as_str(),
        "{alice_closed}"
    );
    assert_eq!(alice_closed["span"]["user"], "alice", "{alice_closed}");
    let anonymous_closed = of(&anonymous_peer);
    assert_eq!(anonymous_closed["reason"], "client", "{anonymous_closed}");
    assert!(
        anonymous_closed["span"].get("user").is_none(),
        "no user before HELLO: {anonymous_closed}"
    );
    let closing = lines_saying(&gw, "closing");
    assert!(
        closing
            .iter()
            .any(|line| line["span"]["peer"] == peer.as_str() && line["reason"] == "quit"),
        "the close of {peer} is logged as it starts: {closing:?}"
    );
}

#[test]
fn at_info_a_connection_logs_nothing() {
    let mut gw = start("info");
    let mut c = gw.connect();
    c.hello("quiet");
    c.quit();
    gw.sigterm();
    gw.wait_exit(Duration::from_secs(10));
    let stderr = gw.stderr();
    assert!(
        !stderr.contains("\"conn_id\""),
        "a connection logged at info:\n{stderr}"
    );
}

#[test]
fn at_debug_a_line_names_its_connection_once() {
    let gw = Gateway::start_with_env(&[], &[("RUST_LOG", "debug")]);
    let mut c = gw.connect();
    c.hello("once");
    c.sub("news");
    c.quit();
    assert_eventually!(
        gw.stderr().contains(" closed "),
        Duration::from_secs(5),
        "no `closed` line in:\n{}",
        gw.stderr()
    );
    let stderr = gw.stderr();
    let in_span: Vec<&str> = stderr.lines().filter(|l| l.contains("conn{")).collect();
    assert!(!in_span.is_empty(), "no line in a `conn` span:\n{stderr}");
    for line in in_span {
        assert_eq!(line.matches("conn{").count(), 1, "{line}");
    }
}
