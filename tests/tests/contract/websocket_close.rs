//! Contract sections 5 and 12, the graceful close over WebSocket: for each
//! close reason, every frame queued before it, then the `KICK`/`BYE`/`ERR`
//! message, then a Close frame with the reason's status code, then the end
//! of the TCP connection once the client answers. A client's own Close is
//! answered after what was queued for it; a client still sending during
//! the closing handshake is never reset; one that never answers the Close
//! is let go at `--close-timeout`; a slow consumer is cut off at once,
//! with `KICK slow` and 1013 only if its socket takes them.

use crate::admin_api::api;
use crate::common::{numbered, publish};
use crate::websocket::{start_ws, text};
use gateway_tests::Client;
use gateway_tests::writer::BackgroundWriter;
use gateway_tests::ws::{WsClient, WsEvent, client_frame};
use gateway_tests::{FRAME_TIMEOUT, Gateway};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// Messages queued for the reader before each close.
pub const QUEUED: usize = 200;

/// A WebSocket client subscribed to `topic`, with [`QUEUED`] messages
/// published to it by a client of the client listener before this
/// returns (the publisher has its answer to a later command, so they are
/// in the reader's mailbox).
pub fn loaded_reader(gw: &Gateway, user: &str, topic: &str) -> WsClient {
    let mut reader = gw.ws_connect();
    reader.hello(user);
    reader.sub(topic);
    let mut publisher = gw.connect();
    publisher.send_all((0..QUEUED).map(|i| publish(topic, &numbered(i, 100))));
    publisher.sync();
    reader
}

/// Reads the queued messages in order, then `last`, then the Close with
/// `code`, then the end of the connection after the client's answer.
#[track_caller]
pub fn expect_queue_then_close(reader: &mut WsClient, topic: &str, last: &str, code: u16) {
    for i in 0..QUEUED {
        let expected = format!(
            "MSG {topic} {}",
            String::from_utf8(numbered(i, 100)).expect("ascii")
        );
        assert_eq!(reader.recv(), text(&expected), "message {i} before {last}");
    }
    reader.expect_text(last);
    reader.expect_close(code);
}

#[test]
fn each_close_reason_comes_after_the_queue_with_its_status_code() {
    let mut gw = start_ws(&["--close-timeout", "5"]);

    let mut quitter = loaded_reader(&gw, "quitter", "q");
    quitter.send_text("QUIT");
    expect_queue_then_close(&mut quitter, "q", "BYE", 1000);

    let mut kicked = loaded_reader(&gw, "kicked", "k");
    let r = api(
        &gw,
        "POST",
        "/api/v1/users/kicked/close",
        Some(&json!({"message": "maintenance"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    expect_queue_then_close(&mut kicked, "k", "KICK admin maintenance", 4000);

    let mut replaced = loaded_reader(&gw, "twice", "r");
    let mut newer = gw.ws_connect();
    newer.hello("twice");
    expect_queue_then_close(&mut replaced, "r", "KICK replaced", 4000);

    let mut large = loaded_reader(&gw, "large", "l");
    large.send_binary(&vec![b'x'; 70_000]);
    expect_queue_then_close(&mut large, "l", "ERR frame-too-large", 1009);

    for reason in ["quit", "admin", "replaced", "frame_too_large"] {
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", reason)],
            1.0,
        );
    }

    // Last, as the gateway exits once drained.
    let mut drained = loaded_reader(&gw, "drained", "d");
    let r = api(&gw, "POST", "/api/v1/drain", None);
    assert_eq!(r.status, 202, "{}", r.text());
    expect_queue_then_close(&mut drained, "d", "KICK shutdown", 1001);
    newer.expect_text("KICK shutdown");
    newer.expect_close(1001);
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_clients_close_is_answered_after_what_was_queued_for_it() {
    let gw = start_ws(&[]);
    let mut c = gw.ws_connect();
    for i in 0..100 {
        c.send_text(&format!("PING {i}"));
    }
    c.close(4321);
    for i in 0..100 {
        c.expect_text(&format!("PONG {i}"));
    }
    // The server echoes the client's code, then lets the connection go.
    assert_eq!(c.recv(), WsEvent::Close(Some(4321)));
    assert_eq!(c.next_event(FRAME_TIMEOUT), WsEvent::Eof);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "client")],
        1.0,
    );
    // A Close without a code is answered 1000.
    let mut d = gw.ws_connect();
    d.check("PING", "PONG");
    d.socket()
        .write_all(&client_frame(0x88, b""))
        .expect("write a Close");
    assert_eq!(d.recv(), WsEvent::Close(Some(1000)));
}

#[test]
fn a_client_still_sending_during_the_closing_handshake_is_never_reset() {
    let gw = start_ws(&["--close-timeout", "5"]);
    let mut c = gw.ws_connect();
    c.check("PING first", "PONG first");
    // QUIT, then a flood of messages in the same write, then more writes
    // until the client has read the server's Close.
    let mut wire = client_frame(0x81, b"QUIT");
    for i in 0..20_000 {
        wire.extend_from_slice(&client_frame(
            0x81,
            format!("PING after-quit {i}").as_bytes(),
        ));
    }
    let more: Vec<u8> = (0..1000)
        .flat_map(|_| client_frame(0x81, b"PING more"))
        .collect();
    let mut first_write = Some(wire);
    let socket = c.socket().tcp().try_clone().expect("clone the socket");
    let writer = BackgroundWriter::start(socket, Duration::from_secs(4), move || {
        Some(first_write.take().unwrap_or_else(|| more.clone()))
    });
    let bye = c.recv();
    let close = c.recv();
    // Stop between two whole frames, then let the client answer the Close.
    let written = writer.stop();
    let end = c.next_event(FRAME_TIMEOUT);
    assert_eq!(bye, text("BYE"));
    assert_eq!(close, WsEvent::Close(Some(1000)));
    assert_eq!(end, WsEvent::Eof);
    assert!(
        written.is_ok(),
        "writes failed while the server lingered: {written:?}"
    );
}

#[test]
fn a_client_that_never_answers_the_close_is_let_go_at_the_close_timeout() {
    let gw = start_ws(&["--close-timeout", "1"]);
    let mut c = gw.ws_connect();
    c.send_text("QUIT");
    let asked = Instant::now();
    c.expect_text("BYE");
    assert_eq!(c.recv(), WsEvent::Close(Some(1000)));
    // The client neither answers nor closes: the connection stays until
    // the close timeout, then goes.
    gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "let go after {took:?}, before --close-timeout 1"
    );
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "quit")],
        1.0,
    );
}

#[test]
fn a_slow_websocket_consumer_is_cut_off_with_1013_at_most() {
    const SIZE: usize = 60_000;
    let gw = start_ws(&["--max-pending-bytes", "65536"]);
    let mut slow = WsClient::connect_small_rcvbuf(gw.ws_addr(), "/ws", 4096);
    slow.sub("flood");
    let mut publisher: Client = gw.connect();
    publisher.send_all((0..300).map(|i| publish("flood", &numbered(i, SIZE))));
    publisher.sync();
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "slow")],
        1.0,
    );
    // Whole messages in order from the first, then at most `KICK slow`
    // and a Close with 1013, then the end (a reset allowed).
    let mut kicked = false;
    let mut closed = false;
    for (i, event) in slow.read_to_end(FRAME_TIMEOUT).into_iter().enumerate() {
        match event {
            WsEvent::Text(t) if t == "KICK slow" => kicked = true,
            WsEvent::Text(t) => {
                assert!(!kicked, "a message after KICK slow: {t:.40}");
                let expected = format!(
                    "MSG flood {}",
                    String::from_utf8(numbered(i, SIZE)).expect("ascii")
                );
                assert_eq!(t, expected, "message {i}");
            }
            WsEvent::Close(code) => {
                assert!(kicked, "a Close without KICK slow before it");
                assert_eq!(code, Some(1013));
                closed = true;
            }
            WsEvent::Eof | WsEvent::Reset(_) => break,
            other => panic!("after {i} messages: {other:?}"),
        }
    }
    assert!(!closed || kicked);
}
