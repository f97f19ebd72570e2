//! Contract section 12, the WebSocket listener, with an outside client
//! (tungstenite's client side, and hand-masked frames where a library
//! would not misbehave): the `READY` line, every command, text and binary
//! messages, fragments, the size limit (1009), the refusals before the
//! upgrade (403, 404, 426), pings both ways and the idle kick.
//! Closes and their status codes are in `websocket_close`, mixed
//! transports in `websocket_mixed`.

use gateway_tests::tls::Pki;
use gateway_tests::ws::{WsClient, WsEvent, client_frame, raw_request, read_raw_frame};
use gateway_tests::{FRAME_TIMEOUT, Gateway};
use std::io::Write;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Starts a gateway with a WebSocket listener on a free loopback port.
pub fn start_ws(flags: &[&str]) -> Gateway {
    start_ws_over(None, flags)
}

/// Starts a gateway with a WebSocket listener, `wss` with `pki`'s
/// certificate when one is given: then the gateway's `ws_connect` and
/// `connect` speak TLS.
pub fn start_ws_over(pki: Option<&Pki>, flags: &[&str]) -> Gateway {
    let tls = pki.map(Pki::client_flags).unwrap_or_default();
    let mut all = vec!["--ws-listen", "127.0.0.1:0"];
    all.extend(tls.iter().map(String::as_str));
    all.extend_from_slice(flags);
    let mut gw = Gateway::start(&all);
    if let Some(pki) = pki {
        gw.use_tls(pki.client());
    }
    gw
}

/// A text message.
pub fn text(s: &str) -> WsEvent {
    WsEvent::Text(s.to_owned())
}

/// Asserts `READY` names the WebSocket listener last, as `ws=`.
#[track_caller]
pub fn assert_ready_names_ws(gw: &Gateway) {
    let ready = format!(
        "READY client={} admin={} ws={}",
        gw.client_addr(),
        gw.admin_addr(),
        gw.ws_addr()
    );
    assert_eq!(gw.stdout().lines().next(), Some(ready.as_str()));
}

#[test]
fn the_ready_line_names_the_ws_listener_last() {
    let gw = start_ws(&[]);
    assert_ready_names_ws(&gw);
    assert_ne!(gw.ws_addr().port(), 0, "READY names the real port");
    let plain = Gateway::start(&[]);
    assert!(!plain.stdout().contains("ws="), "{}", plain.stdout());
}

#[test]
fn every_command_works_over_websocket() {
    let gw = start_ws(&["--max-subscriptions", "2"]);
    let mut c = gw.ws_connect();
    c.check("PING", "PONG");
    c.check("PING hello there", "PONG hello there");
    let id = c.hello("ws-alice");
    assert!(!id.is_empty() && !id.contains(' '), "id `{id}`");
    c.check("HELLO ws-alice", "ERR already-identified");
    c.check("SUB news", "OK SUB news");
    c.check("SUB news", "OK SUB news");
    c.check("SUB other", "OK SUB other");
    c.check("SUB third", "ERR too-many-subscriptions");
    c.check("SUB bad topic", "ERR bad-topic");
    c.check("PUB news hello world", "MSG news hello world");
    c.check("PUB news ", "MSG news ");
    c.check("UNSUB news", "OK UNSUB news");
    c.check("UNSUB news", "OK UNSUB news");
    // Nothing comes back for a topic no longer held.
    c.send_text("PUB news unheard");
    c.check("PING sync", "PONG sync");
    c.check("NOPE", "ERR unknown-command");
    c.check("", "ERR unknown-command");
    c.check("PUB", "ERR bad-topic");
    c.check("HELLO bad user", "ERR bad-user");
    // A binary message is a command like a text one.
    c.send_binary(b"PING binary");
    c.expect_text("PONG binary");
    c.send_text("QUIT");
    c.expect_text("BYE");
    c.expect_close(1000);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "quit")],
        1.0,
    );
}

#[test]
fn the_server_sends_text_when_utf8_and_binary_otherwise() {
    let gw = start_ws(&[]);
    let mut c = gw.ws_connect();
    c.sub("bytes");
    let mut tcp = gw.connect();
    tcp.sub("bytes");
    c.send_binary(b"PUB bytes \xff\xfe\x00raw");
    assert_eq!(
        c.recv(),
        WsEvent::Binary(b"MSG bytes \xff\xfe\x00raw".to_vec())
    );
    tcp.expect(b"MSG bytes \xff\xfe\x00raw");
    c.send_binary("PUB bytes h\u{e9}llo".as_bytes());
    assert_eq!(c.recv(), text("MSG bytes h\u{e9}llo"));
    tcp.expect("MSG bytes h\u{e9}llo".as_bytes());
    // A payload cut inside a UTF-8 sequence is not UTF-8.
    tcp.send(b"PUB bytes \xe2\x82");
    assert_eq!(c.recv(), WsEvent::Binary(b"MSG bytes \xe2\x82".to_vec()));
    c.send_binary(b"PING \x80");
    assert_eq!(c.recv(), WsEvent::Binary(b"PONG \x80".to_vec()));
}

#[test]
fn fragments_make_one_message_that_counts_whole() {
    let gw = start_ws(&["--max-frame-bytes", "32"]);
    let mut c = gw.ws_connect();
    c.sub("frag");
    c.send_fragmented(true, &[b"PUB frag ", b"", b"hello ", b"world"]);
    c.expect_text("MSG frag hello world");
    c.send_fragmented(false, &[b"PING ", b"\xff"]);
    assert_eq!(c.recv(), WsEvent::Binary(b"PONG \xff".to_vec()));
    // A ping between the fragments of a message is answered at once.
    c.send_frame(Frame::message(
        &b"PING "[..],
        OpCode::Data(Data::Text),
        false,
    ));
    c.ping(b"between");
    assert_eq!(
        c.next_event(FRAME_TIMEOUT),
        WsEvent::Pong(b"between".to_vec())
    );
    c.send_frame(Frame::message(
        &b"mid"[..],
        OpCode::Data(Data::Continue),
        true,
    ));
    c.expect_text("PONG mid");
    let exact = format!("PING {}", "x".repeat(27));
    assert_eq!(exact.len(), 32);
    let (head, tail) = exact.as_bytes().split_at(10);
    c.send_fragmented(true, &[head, tail]);
    c.expect_text(&exact.replacen("PING", "PONG", 1));
    // Each fragment is under the limit; the message is one byte over it.
    let over = format!("PING {}", "y".repeat(28));
    let (head, tail) = over.as_bytes().split_at(16);
    c.send_fragmented(true, &[head, tail]);
    c.expect_text("ERR frame-too-large");
    c.expect_close(1009);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "frame_too_large")],
        1.0,
    );
}

#[test]
fn an_oversized_message_gets_err_frame_too_large_then_1009() {
    let gw = start_ws(&["--max-frame-bytes", "1024"]);
    let mut c = gw.ws_connect();
    c.check("PING before", "PONG before");
    c.send_binary(&[b'x'; 1025]);
    c.expect_text("ERR frame-too-large");
    c.expect_close(1009);
    // A header announcing a gigabyte is refused before any of it is sent.
    let mut d = gw.ws_connect();
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    d.socket().write_all(&header).expect("write the header");
    d.expect_text("ERR frame-too-large");
    d.expect_close(1009);
    // Its Close answer was taken for the announced payload: the
    // connection ends with the client's EOF.
    drop(d);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "frame_too_large")],
        2.0,
    );
}

#[test]
fn requests_that_do_not_upgrade_are_refused_before_the_upgrade() {
    let gw = start_ws(&[
        "--ws-allowed-origins",
        "https://app.example.com, http://127.0.0.1:8080",
    ]);
    let addr = gw.ws_addr();
    let refused =
        |path: &str, headers: &[(&str, &str)]| WsClient::connect_with(addr, path, headers).err();
    assert_eq!(
        refused("/ws", &[("Origin", "https://evil.example.com")]).as_deref(),
        Some("HTTP 403")
    );
    assert_eq!(refused("/other", &[]).as_deref(), Some("HTTP 404"));
    assert_eq!(refused("/", &[]).as_deref(), Some("HTTP 404"));
    // Allowed origins, and no origin at all (not a browser), upgrade.
    for headers in [
        &[("Origin", "https://app.example.com")][..],
        &[("Origin", "http://127.0.0.1:8080")][..],
        &[][..],
    ] {
        let mut c = WsClient::connect_with(addr, "/ws?client=test", headers)
            .unwrap_or_else(|e| panic!("{headers:?}: {e}"));
        c.check("PING", "PONG");
    }
    // A plain HTTP request is told the path speaks WebSocket.
    let plain = raw_request(addr, b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(plain.status, 426, "{}", plain.text());
    assert_eq!(plain.header("upgrade"), Some("websocket"));
    let other = raw_request(addr, b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(other.status, 404, "{}", other.text());
    let post = raw_request(
        addr,
        b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405, "{}", post.text());
    // A client speaking the line protocol to the WebSocket port.
    let lines = raw_request(addr, b"HELLO alice\r\n\r\n");
    assert_eq!(lines.status, 400, "{}", lines.text());
    // Only the three upgrades became client connections.
    gw.wait_metric_eq("gateway_connections_accepted_total", &[], 3.0);
    gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
}

#[test]
fn ws_path_moves_the_upgrade() {
    let gw = start_ws(&["--ws-path", "/live/updates"]);
    let mut c = WsClient::connect(gw.ws_addr(), "/live/updates");
    c.check("PING", "PONG");
    assert_eq!(
        WsClient::connect_with(gw.ws_addr(), "/ws", &[])
            .err()
            .as_deref(),
        Some("HTTP 404")
    );
}

#[test]
fn pings_are_answered_and_a_silent_client_is_pinged_and_kept_while_it_answers() {
    let gw = start_ws(&["--idle-timeout", "1"]);
    let mut c = gw.ws_connect();
    c.ping(b"are you there");
    assert_eq!(
        c.next_event(FRAME_TIMEOUT),
        WsEvent::Pong(b"are you there".to_vec())
    );
    // The client says nothing; it answers the server's pings (tungstenite
    // does on each read), which counts as activity: after three idle
    // timeouts it is still open.
    let until = Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match c.next_event(left) {
            WsEvent::Ping(_) => pings += 1,
            WsEvent::Timeout => break,
            other => panic!("after {pings} pings: {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 3 s with --idle-timeout 1");
    c.check("PING still here", "PONG still here");
    assert_eq!(
        gw.metric("gateway_connections_closed_total", &[("reason", "idle")]),
        0.0
    );
}

#[test]
fn a_client_that_answers_nothing_is_pinged_then_kicked_idle_with_4000() {
    let gw = start_ws(&["--idle-timeout", "1", "--close-timeout", "1"]);
    let mut c = gw.ws_connect();
    c.hello("sleepy");
    let silent_since = Instant::now();
    // Straight from the socket, so that nothing is answered.
    let mut frames = Vec::new();
    while let Some(frame) = read_raw_frame(c.socket(), Duration::from_secs(5)) {
        let close = frame.0 == 0x88;
        frames.push(frame);
        if close {
            break;
        }
    }
    let took = silent_since.elapsed();
    let [.., ping, kick, close] = frames.as_slice() else {
        panic!("frames: {frames:?}");
    };
    assert_eq!(ping.0, 0x89, "a ping before the kick: {frames:?}");
    assert_eq!(kick, &(0x81, b"KICK idle".to_vec()));
    assert_eq!(close, &(0x88, 4000u16.to_be_bytes().to_vec()));
    assert!(took >= Duration::from_millis(900), "kicked after {took:?}");
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "idle")],
        1.0,
    );
}

#[test]
fn a_protocol_error_closes_with_1002() {
    let gw = start_ws(&[]);
    let mut c = gw.ws_connect();
    c.check("PING", "PONG");
    // An unmasked frame: a client must mask every frame.
    c.socket()
        .write_all(&[0x81, 4, b'P', b'I', b'N', b'G'])
        .expect("write");
    c.expect_close(1002);
    let mut d = gw.ws_connect();
    // Text that is not UTF-8.
    d.socket()
        .write_all(&client_frame(0x81, b"PING \xff"))
        .expect("write");
    d.expect_close(1007);
    // Nothing after a broken frame can be trusted: each ends with the
    // client's EOF, counted as an error.
    drop((c, d));
    gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "error")],
        2.0,
    );
}
