//! Contract sections 5 and 12, the graceful close over WebSocket, one body
//! for `ws` and for `wss` (section 11): for each close reason, every frame
//! queued before it, then the `KICK`/`BYE`/`ERR` message, then a Close frame
//! with the reason's status code, then the end of the TCP connection once
//! the client answers (over TLS, `close_notify` and the TCP EOF). A client's
//! own Close is answered after what was queued for it; a client still
//! sending during the closing handshake is never reset; one that never
//! answers the Close is let go at `--close-timeout`; a slow consumer is cut
//! off at once, with `KICK slow` and 1013 only if its socket takes them.

use crate::admin_api::api;
use crate::common::{numbered, publish};
use crate::websocket::{start_ws, start_ws_over, text};
use gateway_tests::Client;
use gateway_tests::writer::{Duplex, read_while_writing};
use gateway_tests::ws::{WsClient, WsEvent, client_frame};
use gateway_tests::{FRAME_TIMEOUT, Gateway};
use serde_json::json;
use std::time::{Duration, Instant};

const CLOSED: &str = "gateway_connections_closed_total";

/// Messages queued for the reader before each close.
const QUEUED: usize = 200;

/// A WebSocket client subscribed to `topic`, with [`QUEUED`] messages
/// published to it by a client of the client listener before this
/// returns (the publisher has its answer to a later command, so they are
/// in the reader's mailbox).
fn loaded_reader(gw: &Gateway, user: &str, topic: &str) -> WsClient {
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
fn expect_queue_then_close(reader: &mut WsClient, topic: &str, last: &str, code: u16) {
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

over_plain_and_tls! { ws, wss;
    fn each_close_reason_comes_after_the_queue_with_its_status_code(pki) {
        let mut gw = start_ws_over(pki, &["--close-timeout", "5"]);

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
            gw.wait_metric_eq(CLOSED, &[("reason", reason)], 1.0);
        }
        // The four publishers, which ended with their EOF (over TLS without
        // close_notify).
        gw.wait_metric_eq(CLOSED, &[("reason", "client")], 4.0);

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
}

over_plain_and_tls! { ws, wss;
    fn a_clients_close_is_answered_after_what_was_queued_for_it(pki) {
        let gw = start_ws_over(pki, &[]);
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
        gw.wait_metric_eq(CLOSED, &[("reason", "client")], 1.0);
        // A Close without a code is answered 1000.
        let mut d = gw.ws_connect();
        d.check("PING", "PONG");
        d.write_raw(&client_frame(0x88, b"")).expect("write a Close");
        assert_eq!(d.recv(), WsEvent::Close(Some(1000)));
    }
}

over_plain_and_tls! { ws, wss;
    fn a_client_still_sending_during_the_closing_handshake_is_never_reset(pki) {
        let gw = start_ws_over(pki, &["--close-timeout", "5"]);
        let mut c = gw.ws_connect();
        c.check("PING first", "PONG first");
        // QUIT, then a flood of messages in the same write, then more
        // writes until the client has read the server's Close.
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
        let (mut events, written) = read_while_writing(&mut c, wire, more, Duration::from_secs(4));
        // Writing stopped between two whole frames: the client's answer to
        // the Close ends the linger, and the server's end follows (over TLS,
        // close_notify and the TCP EOF).
        events.push(c.next_event(FRAME_TIMEOUT));
        assert_eq!(
            events,
            vec![text("BYE"), WsEvent::Close(Some(1000)), WsEvent::Eof]
        );
        assert!(
            written.is_ok(),
            "writes failed while the server lingered: {written:?}"
        );
        gw.wait_metric_eq(CLOSED, &[("reason", "quit")], 1.0);
        assert_eq!(gw.metric("gateway_close_flush_timeouts_total", &[]), 0.0);
    }
}

over_plain_and_tls! { ws, wss;
    fn a_client_that_never_answers_the_close_is_let_go_at_the_close_timeout(pki) {
        let gw = start_ws_over(pki, &["--close-timeout", "1"]);
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
        gw.wait_metric_eq(CLOSED, &[("reason", "quit")], 1.0);
    }
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
    gw.wait_metric_eq(CLOSED, &[("reason", "slow")], 1.0);
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
