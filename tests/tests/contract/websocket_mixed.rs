//! Contract section 12, a WebSocket client is a connection like any other:
//! publishes cross between TCP (both framings) and WebSocket, admin pushes
//! reach both, a login on one transport replaces a login on the other,
//! and the admin API and metrics tell the transports apart.

use crate::admin_api::{api, get_ok};
use crate::common::{msg, publish, start};
use crate::websocket::{start_ws, text};
use gateway_tests::Framing;
use gateway_tests::ws::WsEvent;
use serde_json::json;

#[test]
fn publishes_cross_between_tcp_and_websocket() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--ws-listen", "127.0.0.1:0"]);
        let mut ws = gw.ws_connect();
        ws.sub("mixed");
        let mut tcp = gw.connect();
        tcp.sub("mixed");
        tcp.send(publish("mixed", b"from tcp"));
        tcp.expect(msg("mixed", b"from tcp"));
        ws.expect_text("MSG mixed from tcp");
        ws.send_text("PUB mixed from ws");
        ws.expect_text("MSG mixed from ws");
        tcp.expect(msg("mixed", b"from ws"));
    }
}

#[test]
fn a_websocket_payload_that_lines_cannot_carry_is_refused_under_lines() {
    let gw = start(Framing::Lines, &["--ws-listen", "127.0.0.1:0"]);
    let mut tcp = gw.connect();
    tcp.sub("mixed");
    let mut ws = gw.ws_connect();
    ws.sub("mixed");
    for payload in ["two\nlines", "cut short\r"] {
        ws.send_text(&format!("PUB mixed {payload}"));
        ws.expect_text("ERR invalid-payload");
    }
    // Nothing of the refused publishes reached the TCP subscriber: the next
    // frame it reads is the next publish, and the WebSocket client is open.
    ws.send_text("PUB mixed one line");
    ws.expect_text("MSG mixed one line");
    tcp.expect(msg("mixed", b"one line"));
}

#[test]
fn under_length_framing_a_websocket_payload_may_hold_a_newline() {
    let gw = start(Framing::Length, &["--ws-listen", "127.0.0.1:0"]);
    let mut tcp = gw.connect();
    tcp.sub("mixed");
    let mut ws = gw.ws_connect();
    ws.sub("mixed");
    ws.send_text("PUB mixed two\nlines");
    ws.expect_text("MSG mixed two\nlines");
    tcp.expect(msg("mixed", b"two\nlines"));
}

#[test]
fn admin_pushes_reach_both_transports() {
    let gw = start_ws(&[]);
    let mut ws = gw.ws_connect();
    let ws_id = ws.hello("ws-user");
    ws.sub("t");
    let mut tcp = gw.connect();
    let tcp_id = tcp.hello("tcp-user");
    tcp.sub("t");

    let r = api(
        &gw,
        "POST",
        "/api/v1/broadcast",
        Some(&json!({"data": "to everyone"})),
    );
    assert_eq!(r.json()["delivered_to"], 2, "{}", r.text());
    ws.expect_text("PUSH to everyone");
    tcp.expect("PUSH to everyone");

    let r = api(
        &gw,
        "POST",
        "/api/v1/topics/t/publish",
        Some(&json!({"data": "on t"})),
    );
    assert_eq!(r.json()["delivered_to"], 2, "{}", r.text());
    ws.expect_text("MSG t on t");
    tcp.expect(msg("t", b"on t"));

    let r = api(
        &gw,
        "POST",
        "/api/v1/users/ws-user/send",
        Some(&json!({"data": "just you"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    ws.expect_text("PUSH just you");
    // Bytes that are not UTF-8 arrive as a binary message.
    let path = format!("/api/v1/connections/{ws_id}/send");
    let r = api(&gw, "POST", &path, Some(&json!({"data_base64": "/w=="})));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(ws.recv(), WsEvent::Binary(b"PUSH \xff".to_vec()));
    tcp.check("PING", "PONG");

    let one = get_ok(&gw, &format!("/api/v1/connections/{ws_id}"));
    assert_eq!(one["transport"], "ws", "{one}");
    assert_eq!(one["user"], "ws-user", "{one}");
    let one = get_ok(&gw, &format!("/api/v1/connections/{tcp_id}"));
    assert_eq!(one["transport"], "tcp", "{one}");
    let list = get_ok(&gw, "/api/v1/connections");
    let transports: Vec<&str> = list["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["transport"].as_str())
        .collect();
    assert_eq!(transports.len(), 2, "{list}");
    assert!(
        transports.contains(&"ws") && transports.contains(&"tcp"),
        "{list}"
    );

    gw.wait_metric_eq(
        "gateway_connections_by_transport",
        &[("transport", "ws")],
        1.0,
    );
    gw.wait_metric_eq(
        "gateway_connections_by_transport",
        &[("transport", "tcp")],
        1.0,
    );
    ws.send_text("QUIT");
    ws.expect_text("BYE");
    ws.expect_close(1000);
    gw.wait_metric_eq(
        "gateway_connections_by_transport",
        &[("transport", "ws")],
        0.0,
    );
    gw.wait_metric_eq(
        "gateway_connections_by_transport",
        &[("transport", "tcp")],
        1.0,
    );
}

#[test]
fn the_transport_gauge_is_exported_from_start_up() {
    let gw = start_ws(&[]);
    for transport in ["tcp", "ws"] {
        assert_eq!(
            gw.metric(
                "gateway_connections_by_transport",
                &[("transport", transport)]
            ),
            0.0
        );
    }
}

#[test]
fn a_login_on_one_transport_replaces_a_login_on_the_other() {
    let gw = start_ws(&["--close-timeout", "5"]);
    let mut tcp = gw.connect();
    tcp.hello("roaming");
    tcp.sub("r");
    let mut publisher = gw.connect();
    publisher.send(publish("r", b"queued for tcp"));
    publisher.sync();
    let mut ws = gw.ws_connect();
    let id = ws.hello("roaming");
    tcp.expect(msg("r", b"queued for tcp"));
    tcp.expect("KICK replaced");
    tcp.expect_eof();
    // Its EOF ends the lingering read.
    drop(tcp);
    let r = api(
        &gw,
        "POST",
        "/api/v1/users/roaming/send",
        Some(&json!({"data": "found you"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    ws.expect_text("PUSH found you");

    // And back: a TCP login replaces the WebSocket one.
    let mut again = gw.connect();
    let newer = again.hello("roaming");
    assert_ne!(id, newer);
    assert_eq!(ws.recv(), text("KICK replaced"));
    ws.expect_close(4000);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "replaced")],
        2.0,
    );
}
