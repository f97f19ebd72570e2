//! Contract sections 11 and 12 together, `wss`: with `--tls-cert` the
//! WebSocket listener speaks TLS (1.3 and 1.2) and nothing else, and `READY`
//! still names it. Over it, every command, admin pushes and publishes
//! crossing to TLS line clients; SIGHUP serves new `wss` clients the new
//! certificate. The close suite runs over `wss` as over `ws`, one body for
//! both, in `websocket_close`; refusals over `wss` are in
//! `websocket_refusals`, tokens in `tokens`.

use crate::admin_api::{api, get_ok};
use crate::websocket::{assert_ready_names_ws, start_ws_over};
use gateway_tests::tls::Pki;
use gateway_tests::ws::{WsClient, WsEvent};
use gateway_tests::{FRAME_TIMEOUT, Gateway};
use serde_json::json;

const FAILURES: &str = "gateway_tls_handshake_failures_total";

fn wss_gateway(pki: &Pki, flags: &[&str]) -> Gateway {
    start_ws_over(Some(pki), flags)
}

#[test]
fn ready_names_the_wss_listener_which_speaks_only_tls() {
    let pki = Pki::new("wss ready CA");
    let gw = wss_gateway(&pki, &[]);
    assert_ready_names_ws(&gw);
    // A plain-text upgrade on the wss port is a failed handshake, never a
    // connection.
    let plain = WsClient::connect_with(gw.ws_addr(), "/ws", &[]);
    assert!(plain.is_err(), "a plain ws:// client was upgraded on wss");
    gw.wait_metric_eq(FAILURES, &[], 1.0);
    assert_eq!(gw.metric("gateway_connections_accepted_total", &[]), 0.0);
    let mut c = gw.ws_connect();
    c.check("PING over wss", "PONG over wss");
    gw.wait_metric_eq("gateway_connections_accepted_total", &[], 1.0);
}

#[test]
fn every_command_and_admin_push_over_wss_1_3_and_1_2() {
    let pki = Pki::new("wss commands CA");
    let gw = wss_gateway(&pki, &[]);
    let versions: [&[&'static rustls::SupportedProtocolVersion]; 2] =
        [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];
    for (round, versions) in versions.into_iter().enumerate() {
        let tls = pki.client_with(versions);
        let user = format!("wss-{round}");
        let mut ws = WsClient::connect_tls(gw.ws_addr(), "/ws", &tls);
        let id = ws.hello(&user);
        ws.sub("news");
        ws.check("PUB news over wss", "MSG news over wss");
        ws.check("PING x y", "PONG x y");
        ws.send_binary(b"PING \xff");
        assert_eq!(ws.recv(), WsEvent::Binary(b"PONG \xff".to_vec()));
        ws.ping(b"heartbeat");
        assert_eq!(
            ws.next_event(FRAME_TIMEOUT),
            WsEvent::Pong(b"heartbeat".to_vec())
        );

        // A TLS line client on the client listener, same topic.
        let mut line = gw.connect();
        line.sub("news");
        line.send("PUB news from a line client");
        line.expect("MSG news from a line client");
        ws.expect_text("MSG news from a line client");

        let r = api(
            &gw,
            "POST",
            &format!("/api/v1/users/{user}/send"),
            Some(&json!({"data": "pushed over wss"})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        ws.expect_text("PUSH pushed over wss");
        let r = api(
            &gw,
            "POST",
            "/api/v1/broadcast",
            Some(&json!({"data": "to everyone"})),
        );
        assert_eq!(r.json()["delivered_to"], 2, "{}", r.text());
        ws.expect_text("PUSH to everyone");
        line.expect("PUSH to everyone");
        let conn = get_ok(&gw, &format!("/api/v1/connections/{id}"));
        assert_eq!(conn["transport"], "ws", "{conn}");
        assert_eq!(conn["user"], user.as_str(), "{conn}");

        ws.send_text("QUIT");
        ws.expect_text("BYE");
        // The Close frame, then close_notify and the TCP EOF.
        ws.expect_close(1000);
        line.quit();
    }
    gw.wait_metric_eq(
        "gateway_connections_by_transport",
        &[("transport", "ws")],
        0.0,
    );
    gw.wait_metric_eq("gateway_connections_accepted_total", &[], 4.0);
    assert_eq!(gw.metric(FAILURES, &[]), 0.0);
}

#[test]
fn sighup_gives_new_wss_clients_the_new_certificate_and_open_ones_keep_theirs() {
    let old = Pki::new("wss old CA");
    let new = Pki::new("wss new CA");
    let gw = wss_gateway(&old, &[]);
    let mut open = gw.ws_connect();
    open.hello("before-reload");
    old.install(&new);
    gw.signal("HUP");
    let trusts = |pki: &Pki| pki.client().connect(gw.ws_addr()).is_ok();
    let reloaded = gateway_tests::poll::eventually(FRAME_TIMEOUT, || trusts(&new).then_some(()));
    assert!(reloaded.is_some(), "no new certificate on wss after SIGHUP");
    assert!(!trusts(&old), "the old certificate is still served on wss");
    let mut fresh = WsClient::connect_tls(gw.ws_addr(), "/ws", &new.client());
    fresh.check("PING new", "PONG new");
    open.check("PING still here", "PONG still here");
}
