//! Contract section 10, the cluster over NATS: two or three gateway nodes
//! and a real `nats-server` on free loopback ports. Routes reaching every
//! node, `delivered_to` and `nodes`, `SUB` then an immediate remote `PUB`,
//! WebSocket messages pipelined behind a held answer, one producer's
//! order, one login per user (takeover and concurrent logins), membership,
//! flags, and oversized and malformed messages. The faults (NATS killed
//! and restarted, a node killed) are in `cluster_faults`.

use crate::admin_api::{api, assert_error, get_ok};
use crate::common::{numbered, publish, seq_of};
use gateway_tests::gateway::run_to_exit;
use gateway_tests::nats::{NatsServer, nats_present};
use gateway_tests::poll::eventually;
use gateway_tests::ws::{WsEvent, client_frame};
use gateway_tests::{Client, Event, FRAME_TIMEOUT, Gateway, assert_eventually};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Generous bound for the cluster to settle (membership is by heartbeat).
pub const SETTLE: Duration = Duration::from_secs(8);

/// Starts a node of the cluster on `nats`.
pub fn node(nats: &NatsServer, id: &str, flags: &[&str]) -> Gateway {
    let url = nats.url();
    let mut all = vec!["--nats-url", &url, "--node-id", id];
    all.extend_from_slice(flags);
    Gateway::start(&all)
}

/// The ids `GET /api/v1/cluster` lists.
pub fn members(gw: &Gateway) -> Vec<String> {
    let body = get_ok(gw, "/api/v1/cluster");
    body["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every node lists exactly `ids`.
#[track_caller]
pub fn wait_members(nodes: &[&Gateway], ids: &[&str]) {
    for gw in nodes {
        assert_eventually!(
            members(gw) == ids,
            SETTLE,
            "members {:?}, expected {ids:?}",
            members(gw)
        );
    }
}

/// Two connected nodes `a` and `b` on a fresh server.
pub fn pair(flags: &[&str]) -> (NatsServer, Gateway, Gateway) {
    let nats = NatsServer::start();
    let a = node(&nats, "a", flags);
    let b = node(&nats, "b", flags);
    wait_members(&[&a, &b], &["a", "b"]);
    (nats, a, b)
}

fn message(text: &str) -> Value {
    json!({ "data": text })
}

#[track_caller]
fn expect_push(client: &mut Client, text: &str) {
    client.expect(format!("PUSH {text}"));
}

#[test]
fn a_single_node_describes_itself() {
    let gw = Gateway::start(&["--node-id", "solo"]);
    let body = get_ok(&gw, "/api/v1/cluster");
    assert_eq!(body["node"], "solo");
    assert_eq!(body["nats"], Value::Null);
    assert_eq!(body["nodes"][0]["id"], "solo");
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(1));
    let health = get_ok(&gw, "/healthz");
    assert_eq!(
        health,
        json!({"status": "ok"}),
        "no nats field without a cluster"
    );
}

#[test]
fn bad_cluster_flags_fail_before_ready() {
    for (flags, needle) in [
        (&["--nats-url", "127.0.0.1:4222"][..], "--nats-url"),
        (&["--nats-url", "nats://h"][..], "--nats-url"),
        (&["--nats-url", "http://h:1"][..], "--nats-url"),
        (&["--node-id", "a.b"][..], "--node-id"),
        (&["--node-id", &"x".repeat(33)][..], "--node-id"),
        (
            &["--nats-subject-prefix", "a..b"][..],
            "--nats-subject-prefix",
        ),
        (&["--cluster-timeout", "0"][..], "--cluster-timeout"),
        (&["--nats-pending-bytes", "0"][..], "--nats-pending-bytes"),
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let exited = run_to_exit(&args, &[], Duration::from_secs(10));
        assert!(!exited.status.success(), "{flags:?} was accepted");
        assert!(exited.stdout.is_empty(), "{flags:?}: READY printed");
        let lines: Vec<&str> = exited.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{flags:?}: not one line: {lines:?}");
        assert!(lines[0].contains(needle), "{flags:?}: {}", lines[0]);
    }
}

#[test]
fn membership_health_and_metrics_of_a_pair() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    for gw in [&a, &b] {
        let body = get_ok(gw, "/api/v1/cluster");
        assert_eq!(body["nats"]["connected"], true, "{body}");
        assert!(body["nats"]["server"].as_str().is_some(), "{body}");
        assert_eq!(get_ok(gw, "/healthz")["nats"], "connected");
        // Ready once it has heard from the cluster (at most 3 s after READY).
        assert_eventually!(gw.http_get("/readyz").status == 200, Duration::from_secs(3));
        assert_eq!(get_ok(gw, "/readyz")["nats"], "connected");
        gw.wait_metric_eq("gateway_cluster_nodes", &[], 2.0);
        let m = gw.metrics();
        assert_eq!(m.value("gateway_nats_connected", &[]), 1.0);
        assert_eq!(m.value("gateway_nats_reconnects_total", &[]), 0.0);
        for direction in ["sent", "received"] {
            for route in [
                "publish",
                "broadcast",
                "user",
                "connection",
                "login",
                "control",
            ] {
                let labels = [("direction", direction), ("route", route)];
                assert!(
                    m.get("gateway_cluster_messages_total", &labels).is_some(),
                    "{labels:?} not exported"
                );
            }
        }
        for reason in ["unreachable", "overflow", "too_large"] {
            assert_eq!(
                m.get("gateway_cluster_dropped_total", &[("reason", reason)]),
                Some(0.0)
            );
        }
        assert_eq!(m.get("gateway_cluster_missed_total", &[]), Some(0.0));
        assert!(
            m.get("gateway_cluster_request_duration_seconds_count", &[])
                .is_some()
        );
    }
}

#[test]
fn every_route_reaches_the_other_node() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    let mut on_b = b.connect();
    let b_id = on_b.hello("bob");
    assert!(
        b_id.starts_with("b."),
        "cluster ids start with the node id: {b_id}"
    );
    assert!(b_id.len() <= 64 && !b_id.contains(' '), "{b_id}");
    on_b.sub("news");
    let mut on_a = a.connect();
    let a_id = on_a.hello("alice");
    assert!(a_id.starts_with("a."), "{a_id}");
    on_a.sub("news");

    // A client's PUB reaches the other node; the publisher gets its copy.
    on_a.send(publish("news", b"one two"));
    on_a.expect("MSG news one two");
    on_b.expect("MSG news one two");

    // Admin publish: every subscriber on every node, counted.
    let r = api(
        &a,
        "POST",
        "/api/v1/topics/news/publish",
        Some(&message("p")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"delivered_to": 2, "nodes": {"answered": 2, "expected": 2}})
    );
    on_a.expect("MSG news p");
    on_b.expect("MSG news p");

    // Broadcast: every open connection on every node.
    let r = api(&b, "POST", "/api/v1/broadcast", Some(&message("all")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"delivered_to": 2, "nodes": {"answered": 2, "expected": 2}})
    );
    expect_push(&mut on_a, "all");
    expect_push(&mut on_b, "all");

    // User and connection routes through the other node's admin API.
    let r = api(&a, "POST", "/api/v1/users/bob/send", Some(&message("u")));
    assert_eq!(r.status, 202, "{}", r.text());
    expect_push(&mut on_b, "u");
    let path = format!("/api/v1/connections/{b_id}/send");
    let r = api(&a, "POST", &path, Some(&message("c")));
    assert_eq!(r.status, 202, "{}", r.text());
    expect_push(&mut on_b, "c");
    let conn = get_ok(&a, &format!("/api/v1/connections/{b_id}"));
    assert_eq!(conn["id"], b_id.as_str());
    assert_eq!(conn["user"], "bob");
    assert_eq!(conn["topics"], json!(["news"]));
    assert_eq!(conn["state"], "open");

    // Unknown targets: 404 from every node.
    let r = api(&a, "POST", "/api/v1/users/nobody/send", Some(&message("x")));
    assert_error(&r, 404, "not_found");
    let gone = format!("b.{}", &b_id[2..]).replace('-', "-9");
    for path in [
        format!("/api/v1/connections/{gone}"),
        "/api/v1/connections/zz.1-1".to_owned(),
    ] {
        assert_error(&api(&a, "GET", &path, None), 404, "not_found");
    }

    // A close through the other node: the KICK after what was queued.
    let close = json!({"message": "bye now"});
    let r = api(&a, "POST", "/api/v1/users/bob/close", Some(&close));
    assert_eq!(r.status, 202, "{}", r.text());
    let r = api(&a, "POST", &path, Some(&message("late")));
    assert_error(&r, 409, "closing");
    on_b.expect("KICK admin bye now");
    on_b.expect_eof();
    drop(on_b);
    assert_eventually!(
        api(&a, "GET", &format!("/api/v1/connections/{b_id}"), None).status == 404,
        SETTLE
    );
    let conn_close = format!("/api/v1/connections/{a_id}/close");
    assert_eq!(api(&b, "POST", &conn_close, None).status, 202);
    on_a.expect("KICK admin");

    let m = a.metrics();
    for route in ["publish", "user", "connection"] {
        assert!(
            m.value(
                "gateway_cluster_messages_total",
                &[("direction", "sent"), ("route", route)]
            ) > 0.0,
            "nothing sent on route {route}"
        );
    }
}

#[test]
fn a_sub_hears_a_remote_pub_sent_right_after_ok_sub() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    let mut subscriber = b.connect();
    let mut publisher = a.connect();
    for round in 0..20 {
        let topic = format!("fresh.{round}");
        subscriber.sub(&topic);
        publisher.send(publish(&topic, b"now"));
        subscriber.expect(format!("MSG {topic} now"));
    }
}

#[test]
fn websocket_messages_behind_a_held_answer_are_acted_on_in_order() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&["--ws-listen", "127.0.0.1:0"]);
    let mut publisher = b.connect();
    let mut ws = a.ws_connect();
    // The HELLO and the SUB are each answered only once the other node
    // has heard of them; what follows them in the same write waits, and
    // is then acted on in order.
    let mut wire = client_frame(0x81, b"HELLO ws-held");
    for frame in ["SUB held.topic", "PING behind"] {
        wire.extend_from_slice(&client_frame(0x81, frame.as_bytes()));
    }
    ws.socket()
        .write_all(&wire)
        .expect("write the pipelined messages");
    let hello = ws.recv();
    assert!(
        matches!(&hello, WsEvent::Text(t) if t.starts_with("OK HELLO ")),
        "{hello:?}"
    );
    ws.expect_text("OK SUB held.topic");
    ws.expect_text("PONG behind");
    // The other node knew of the subscription before it was answered.
    publisher.send(publish("held.topic", b"from b"));
    ws.expect_text("MSG held.topic from b");
    ws.check("PING after", "PONG after");
}

#[test]
fn one_producer_keeps_its_order_across_nodes_and_topics() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    let mut subscriber = b.connect();
    subscriber.sub("odd");
    subscriber.sub("even");
    let mut publisher = a.connect();
    publisher.sync();
    const N: usize = 2000;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let topic = if i % 2 == 0 { "even" } else { "odd" };
            publish(topic, &numbered(i, 32))
        })
        .collect();
    publisher.send_all(&frames);
    for i in 0..N {
        let frame = subscriber.recv();
        let payload = frame.splitn(3, |&c| c == b' ').nth(2).unwrap_or_default();
        assert_eq!(seq_of(payload), Some(i), "message {i} out of order");
    }
}

#[test]
fn a_login_on_another_node_takes_the_user_over() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    let mut old = a.connect();
    old.hello("carol");
    old.sub("feed");
    // Frames queued for the old connection before the takeover.
    let mut publisher = a.connect();
    for i in 0..50 {
        publisher.send(publish("feed", format!("m{i}").as_bytes()));
    }
    publisher.sync();
    let mut new = b.connect();
    new.hello("carol");
    // Right after OK HELLO, a user send reaches only the new connection.
    let r = api(
        &a,
        "POST",
        "/api/v1/users/carol/send",
        Some(&message("to-new")),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    expect_push(&mut new, "to-new");
    for i in 0..50 {
        old.expect(format!("MSG feed m{i}"));
    }
    old.expect("KICK replaced");
    old.expect_eof();
}

#[test]
fn concurrent_logins_end_with_one_holder_everywhere() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[]);
    for round in 0..20 {
        let user = format!("racer{round}");
        let mut on_a = a.connect();
        let mut on_b = b.connect();
        on_a.send(format!("HELLO {user}"));
        on_b.send(format!("HELLO {user}"));
        let (ok_a, ok_b) = (on_a.recv(), on_b.recv());
        assert!(
            ok_a.starts_with(b"OK HELLO "),
            "{}",
            gateway_tests::show(&ok_a)
        );
        assert!(
            ok_b.starts_with(b"OK HELLO "),
            "{}",
            gateway_tests::show(&ok_b)
        );
        // Exactly one is kicked, within the cluster timeout.
        let kicked = |c: &mut Client, wait: Duration| match c.next_event(wait) {
            Event::Frame(f) if f == b"KICK replaced" => true,
            Event::Timeout => false,
            other => panic!("round {round}: unexpected {other:?}"),
        };
        let short = Duration::from_millis(10);
        let first = eventually(Duration::from_secs(2), || {
            if kicked(&mut on_a, short) {
                Some(true)
            } else if kicked(&mut on_b, short) {
                Some(false)
            } else {
                None
            }
        });
        let kicked_a = first.unwrap_or_else(|| panic!("round {round}: nobody was kicked"));
        let other = if kicked_a { &mut on_b } else { &mut on_a };
        assert!(
            !kicked(other, Duration::from_millis(200)),
            "round {round}: both were kicked"
        );
        let winner = if kicked_a { &mut on_b } else { &mut on_a };
        // The same holder as seen from both nodes.
        for (gw, text) in [(&a, "via-a"), (&b, "via-b")] {
            let path = format!("/api/v1/users/{user}/send");
            let r = api(gw, "POST", &path, Some(&message(text)));
            assert_eq!(r.status, 202, "round {round}: {}", r.text());
            expect_push(winner, text);
        }
    }
}

#[test]
fn a_duplicate_node_id_is_refused() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start();
    let first = node(&nats, "twin", &[]);
    wait_members(&[&first], &["twin"]);
    let url = nats.url();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--nats-url",
        &url,
        "--node-id",
        "twin",
    ];
    let exited = run_to_exit(&args, &[], Duration::from_secs(15));
    assert!(!exited.status.success());
    assert!(exited.stdout.is_empty(), "READY printed: {}", exited.stdout);
    // The error is the last line, and one line.
    let last = exited.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("twin") && last.contains("already held"),
        "{}",
        exited.stderr
    );
    // The first node is untouched.
    assert_eq!(members(&first), ["twin"]);
}

#[test]
fn an_oversized_message_never_crosses_and_the_node_stays_connected() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start_with_config("max_payload: 4096\n");
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut local = a.connect();
    local.sub("big");
    let mut remote = b.connect();
    remote.sub("big");
    let large = "x".repeat(6000);
    let r = api(
        &a,
        "POST",
        "/api/v1/topics/big/publish",
        Some(&message(&large)),
    );
    assert_error(&r, 413, "payload_too_large");
    let r = api(&a, "POST", "/api/v1/broadcast", Some(&message(&large)));
    assert_error(&r, 413, "payload_too_large");
    // A client's PUB still reaches local subscribers; the copy for other
    // nodes is dropped and counted.
    local.send(publish("big", large.as_bytes()));
    local.expect(format!("MSG big {large}"));
    a.wait_metric(
        "gateway_cluster_dropped_total",
        &[("reason", "too_large")],
        SETTLE,
        "at least 3",
        |v| v >= 3.0,
    );
    // Still connected: a small message crosses.
    local.send(publish("big", b"small"));
    local.expect("MSG big small");
    remote.expect("MSG big small");
    assert_eq!(a.metric("gateway_nats_connected", &[]), 1.0);
    assert_eq!(a.metric("gateway_nats_reconnects_total", &[]), 0.0);
}

/// A raw NATS client: enough protocol to publish what a gateway would
/// never send.
fn raw_publish(nats: &NatsServer, ops: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", nats.port())).expect("connect to nats");
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("read timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut info = String::new();
    reader.read_line(&mut info).expect("INFO");
    assert!(info.starts_with("INFO "), "{info}");
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\n")
        .expect("CONNECT");
    stream.write_all(ops).expect("ops");
    stream.write_all(b"PING\r\n").expect("PING");
    let mut pong = String::new();
    reader.read_line(&mut pong).expect("PONG");
    assert_eq!(pong.trim(), "PONG");
    let mut rest = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    let _ = reader.read_to_end(&mut rest);
}

#[test]
fn malformed_and_foreign_messages_are_dropped_and_counted() {
    if !nats_present() {
        return;
    }
    let (nats, a, _b) = pair(&[]);
    let mut subscriber = a.connect();
    subscriber.sub("t");
    let foreign = r#"{"v":2,"o":"x","r":"r","s":1,"g":1,"k":"publish"}"#;
    let split = r#"{"v":1,"o":"x","r":"r","s":1,"g":1,"k":"publish"}"#;
    let mut ops = Vec::new();
    let mut hpub = |subject: &str, header: &str, body: &[u8]| {
        let headers = format!("NATS/1.0\r\nGw: {header}\r\n\r\n");
        ops.extend_from_slice(
            format!(
                "HPUB {subject} {} {}\r\n",
                headers.len(),
                headers.len() + body.len()
            )
            .as_bytes(),
        );
        ops.extend_from_slice(headers.as_bytes());
        ops.extend_from_slice(body);
        ops.extend_from_slice(b"\r\n");
    };
    hpub("gateway.t.t", foreign, b"from the future");
    hpub("gateway.all", "garbage", b"");
    // A payload that would split a lines frame: never reaches a client.
    hpub("gateway.t.t", split, b"evil\nMSG t forged");
    ops.extend_from_slice(b"PUB gateway.t.t 5\r\nplain\r\nPUB gateway.all 3\r\n\xff\xfe\x00\r\n");
    raw_publish(&nats, &ops);
    a.wait_metric(
        "gateway_cluster_malformed_total",
        &[],
        SETTLE,
        "at least 5",
        |v| v >= 5.0,
    );
    // Nothing reached the subscriber, and the node still serves.
    subscriber.sync();
    subscriber.send(publish("t", b"fine"));
    subscriber.expect("MSG t fine");
    assert_eq!(a.metric("gateway_nats_connected", &[]), 1.0);
}
