//! Contract sections 1, 9, 11 and 12, over `ws` and over `wss`: a
//! WebSocket client past `--max-connections` or `--max-connections-per-ip`
//! is closed at once, without a TLS handshake or an upgrade (a handshake
//! under way already holds a place); during a drain it is upgraded and gets
//! `ERR draining` as a message and Close 1001, then the end of the
//! connection (over TLS after `close_notify`). Either way it counts as
//! rejected, never as accepted.

use crate::admin_api::api;
use crate::websocket::start_ws_over;
use gateway_tests::FRAME_TIMEOUT;
use gateway_tests::tls::Pki;
use gateway_tests::ws::{WsClient, read_raw_frame};
use std::net::IpAddr;
use std::time::Duration;

const REJECTED: &str = "gateway_connections_rejected_total";
const ACCEPTED: &str = "gateway_connections_accepted_total";

/// Plain `ws`, then `wss` with a CA of its own.
fn each_listener(name: &str) -> [Option<Pki>; 2] {
    [None, Some(Pki::new(name))]
}

/// Expects `message`, the Close with `code`, then the end of the
/// connection after the client's answer.
#[track_caller]
fn expect_refusal(c: &mut WsClient, message: &str, code: u16) {
    c.expect_text(message);
    c.expect_close(code);
}

fn describe(pki: Option<&Pki>) -> &'static str {
    if pki.is_some() { "wss" } else { "ws" }
}

/// Expects the client from `source` to be closed before its handshake or
/// upgrade completes.
#[track_caller]
fn expect_closed_at_once(addr: std::net::SocketAddr, source: IpAddr, pki: Option<&Pki>) {
    let tls = pki.map(Pki::client);
    match WsClient::try_connect_from(addr, source, tls.as_ref()) {
        Ok(_) => panic!("upgraded past the limit"),
        Err(err) => assert!(!err.contains("HTTP"), "answered, not closed: {err}"),
    }
}

#[test]
fn past_max_connections_a_websocket_client_is_closed_without_a_handshake() {
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    for pki in each_listener("full CA") {
        let over = describe(pki.as_ref());
        let gw = start_ws_over(pki.as_ref(), &["--max-connections", "1"]);
        let mut a = gw.ws_connect();
        a.check("PING a", "PONG a");

        expect_closed_at_once(gw.ws_addr(), here, pki.as_ref());
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value(REJECTED, &[("reason", "full")]),
            1.0,
            "{over}"
        );
        assert_eq!(metrics.value(ACCEPTED, &[]), 1.0, "{over}");
        assert_eq!(
            metrics.value("gateway_connections_by_transport", &[("transport", "ws")]),
            1.0,
            "{over}"
        );

        // A freed place is usable again.
        a.send_text("QUIT");
        a.expect_text("BYE");
        a.expect_close(1000);
        drop(a);
        gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
        let mut b = gw.ws_connect();
        b.check("PING b", "PONG b");
        assert_eq!(gw.metric(REJECTED, &[("reason", "full")]), 1.0, "{over}");
    }
}

#[test]
fn past_the_per_ip_limit_a_websocket_client_is_closed_without_a_handshake() {
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let there: IpAddr = "127.0.0.2".parse().unwrap();
    for pki in each_listener("per-ip CA") {
        let over = describe(pki.as_ref());
        let gw = start_ws_over(pki.as_ref(), &["--max-connections-per-ip", "1"]);
        let tls = pki.as_ref().map(Pki::client);
        let mut a = WsClient::connect_from(gw.ws_addr(), here, tls.as_ref());
        a.check("PING a", "PONG a");
        expect_closed_at_once(gw.ws_addr(), here, pki.as_ref());
        let mut other = WsClient::connect_from(gw.ws_addr(), there, tls.as_ref());
        other.check("PING other", "PONG other");
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value(REJECTED, &[("reason", "per_ip")]),
            1.0,
            "{over}"
        );
        assert_eq!(
            metrics.value(REJECTED, &[("reason", "full")]),
            0.0,
            "{over}"
        );
        assert_eq!(metrics.value(ACCEPTED, &[]), 2.0, "{over}");
    }
}

#[test]
fn during_a_drain_a_websocket_client_gets_err_draining_then_1001() {
    for pki in each_listener("drain CA") {
        let over = describe(pki.as_ref());
        let mut gw = start_ws_over(
            pki.as_ref(),
            &["--close-timeout", "3", "--shutdown-timeout", "5"],
        );
        // A client that reads its kick but never answers the Close keeps
        // the drain going until --close-timeout.
        let mut holder = gw.ws_connect();
        holder.hello("holder");
        let r = api(&gw, "POST", "/api/v1/drain", None);
        assert_eq!(r.status, 202, "{}", r.text());
        let kick = read_raw_frame(holder.socket(), FRAME_TIMEOUT);
        assert_eq!(kick, Some((0x81, b"KICK shutdown".to_vec())), "{over}");
        let close = read_raw_frame(holder.socket(), FRAME_TIMEOUT);
        assert_eq!(
            close,
            Some((0x88, 1001u16.to_be_bytes().to_vec())),
            "{over}"
        );

        let mut late = gw.ws_connect();
        expect_refusal(&mut late, "ERR draining", 1001);
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value(REJECTED, &[("reason", "draining")]),
            1.0,
            "{over}"
        );
        assert_eq!(metrics.value(ACCEPTED, &[]), 1.0, "{over}");
        drop(holder);
        let status = gw.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{over}: {status:?}");
    }
}
