//! Section 13 in a cluster: history in a JetStream stream shared by the
//! nodes, with a real `nats-server -js` on free loopback ports. The same
//! offsets on every node; a client of one node recovering what was
//! published on the other; the epoch across node and NATS restarts and a
//! stream made anew; JetStream down (fail closed, then an idempotent retry
//! stored once); a gap on a node's live path repaired in order, or told
//! `LOST`; a stream with other limits refused at start.

use crate::admin_api::{api, assert_error, get_ok};
use crate::cluster::{node, wait_members};
use crate::history::{Lines, admin_publish, ok_sub, positioned};
use gateway_tests::gateway::run_to_exit;
use gateway_tests::nats::{NatsServer, nats_present};
use gateway_tests::proxy::CutProxy;
use gateway_tests::{Event, Gateway, assert_eventually};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const HISTORY: [&str; 2] = ["--history-size", "100"];

/// Nodes `a` and `b` with history on a fresh JetStream server.
fn pair(flags: &[&str]) -> (NatsServer, Gateway, Gateway) {
    let nats = NatsServer::start_jetstream();
    let mut all = Vec::new();
    if !flags.contains(&"--history-size") {
        all.extend(HISTORY);
    }
    all.extend_from_slice(flags);
    let a = node(&nats, "a", &all);
    let b = node(&nats, "b", &all);
    wait_members(&[&a, &b], &["a", "b"]);
    (nats, a, b)
}

fn published(r: &gateway_tests::http::Response) -> (u64, String, u64) {
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    (
        body["offset"].as_u64().expect("an offset"),
        body["epoch"].as_str().expect("an epoch").to_owned(),
        body["delivered_to"].as_u64().expect("delivered_to"),
    )
}

/// The offsets and payloads of the next `n` positioned messages.
fn next_positioned(client: &mut dyn Lines, topic: &str, n: usize) -> Vec<(u64, String)> {
    (0..n).map(|_| positioned(&client.hear(), topic)).collect()
}

#[test]
fn every_node_gives_a_message_the_same_offset_and_a_client_of_b_recovers_what_a_published() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&["--ws-listen", "127.0.0.1:0"]);
    let mut on_a = a.connect();
    let mut on_b = b.ws_connect();
    on_a.say("SUB orders LATEST");
    let (epoch, start, _) = ok_sub(&on_a.hear(), "orders");
    on_b.say("SUB orders LATEST");
    assert_eq!(
        ok_sub(&on_b.hear(), "orders"),
        (epoch.clone(), start, String::new())
    );

    // A client's PUB on a, an admin publish on b: one offset each, the
    // same on both nodes, and the publisher's own copy before its PONG.
    on_a.say("PUB orders one");
    on_a.say("PING");
    let mine = positioned(&on_a.hear(), "orders");
    on_a.expect_line("PONG");
    let (offset, said_epoch, _) = published(&admin_publish(&b, "orders", "two", None));
    assert_eq!(said_epoch, epoch);
    let seen_a = vec![mine.clone(), positioned(&on_a.hear(), "orders")];
    let seen_b = next_positioned(&mut on_b, "orders", 2);
    assert_eq!(seen_a, seen_b, "the nodes disagree on offsets");
    assert_eq!(seen_a[1], (offset, "two".to_owned()));
    assert!(seen_a[0].0 > start && seen_a[1].0 > seen_a[0].0);

    // b's client goes away; three are published on a meanwhile.
    let position = format!("{epoch}:{}", seen_b[1].0);
    drop(on_b);
    let mut missed = Vec::new();
    for text in ["three", "four", "five"] {
        missed.push((
            published(&admin_publish(&a, "orders", text, None)).0,
            text.to_owned(),
        ));
    }
    let mut back = b.connect();
    back.say(&format!("SUB orders {position}"));
    let (_, newest, rest) = ok_sub(&back.hear(), "orders");
    assert_eq!(rest, "RECOVERED 3");
    assert_eq!(newest, missed[2].0);
    assert_eq!(next_positioned(&mut back, "orders", 3), missed);
    // Then live ones, from either node.
    on_a.say("PUB orders six");
    let (six, _) = positioned(&back.hear(), "orders");
    assert!(six > newest);
    // The admin API of either node reads the same history.
    for gw in [&a, &b] {
        let page = get_ok(
            gw,
            &format!("/api/v1/topics/orders/history?since={position}"),
        );
        assert_eq!(page["complete"], true, "{page}");
        assert_eq!(page["offset"], six, "{page}");
        let offsets: Vec<u64> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["offset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(offsets, [missed[0].0, missed[1].0, missed[2].0, six]);
    }
    b.wait_metric_eq("gateway_recoveries_total", &[("result", "recovered")], 1.0);
    b.wait_metric_eq("gateway_recovered_messages_total", &[], 3.0);
    a.wait_metric_eq(
        "gateway_history_appends_total",
        &[("result", "stored")],
        5.0,
    );
}

/// The epoch of the stream, as a `SUB LATEST` on `gw` says.
fn epoch_of(gw: &Gateway, topic: &str) -> (String, u64) {
    let mut c = gw.connect();
    c.say(&format!("SUB {topic} LATEST"));
    let (epoch, offset, _) = ok_sub(&c.hear(), topic);
    (epoch, offset)
}

/// A JetStream API request over a raw NATS connection: the answer's
/// payload. Asked again until JetStream answers (just after a NATS
/// restart it may not yet).
fn js_request(nats: &NatsServer, subject: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(answer) = js_request_once(nats, subject) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "JetStream did not answer {subject}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn js_request_once(nats: &NatsServer, subject: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", nats.port())).expect("connect to NATS");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let ops = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.t 1\r\nPUB {subject} _INBOX.t 0\r\n\r\n"
    );
    s.write_all(ops.as_bytes()).expect("write to NATS");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // `MSG _INBOX.t 1 <size>\r\n<payload>\r\n`, after any INFO or PING.
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(at) = text.find("MSG _INBOX.t 1 ")
            && let Some(end) = text[at..].find("\r\n")
        {
            let size: usize = text[at + 15..at + end].trim().parse().ok()?;
            let start = at + end + 2;
            if got.len() >= start + size {
                return Some(String::from_utf8_lossy(&got[start..start + size]).into_owned());
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn the_epoch_lives_in_the_stream_not_in_the_nodes() {
    if !nats_present() {
        return;
    }
    let (mut nats, a, b) = pair(&[]);
    let (epoch, _) = epoch_of(&a, "t");
    published(&admin_publish(&a, "t", "x", None));
    // A node restarted: the same epoch, and the message still held.
    drop(b);
    let b = node(&nats, "b", &HISTORY);
    let (again, offset) = epoch_of(&b, "t");
    assert_eq!(again, epoch);
    assert!(offset > 0);
    // NATS restarted with its store: the same epoch.
    nats.restart();
    assert_eventually!(
        api(
            &a,
            "POST",
            "/api/v1/topics/t/publish",
            Some(&serde_json::json!({"data": "y"}))
        )
        .status
            == 200,
        Duration::from_secs(10)
    );
    assert_eq!(epoch_of(&b, "t").0, epoch);
    // The stream deleted and made anew: a new epoch, and an old position
    // recovers as LOST.
    let deleted = js_request(&nats, "$JS.API.STREAM.DELETE.gateway_history");
    // 10059: gone already, where an earlier try's answer came too late.
    assert!(
        deleted.contains("\"success\":true") || deleted.contains("10059"),
        "{deleted}"
    );
    let r = admin_publish(&a, "t", "z", None);
    let (_, new_epoch, _) = published(&r);
    assert_ne!(new_epoch, epoch);
    let mut c = b.connect();
    c.say(&format!("SUB t {epoch}:{offset}"));
    let (now, _, rest) = ok_sub(&c.hear(), "t");
    assert_eq!((now.as_str(), rest.as_str()), (new_epoch.as_str(), "LOST"));
}

#[test]
fn jetstream_down_fails_closed_and_a_retry_with_its_key_is_stored_once() {
    if !nats_present() {
        return;
    }
    let (mut nats, a, b) = pair(&["--cluster-timeout", "500"]);
    let mut watcher = b.connect();
    watcher.say("SUB orders LATEST");
    ok_sub(&watcher.hear(), "orders");
    let mut plain = a.connect();
    plain.say("SUB chat");
    // Topics without history take no part: --history-topics.
    drop(plain);

    nats.kill();
    assert_eventually!(
        get_ok(&a, "/healthz")["nats"] == "disconnected",
        Duration::from_secs(5)
    );
    let r = admin_publish(&a, "orders", "once", Some("key-1"));
    assert_error(&r, 503, "history_unavailable");
    let mut c = a.connect();
    c.say("PUB orders nope");
    c.expect_line("ERR history-unavailable");
    c.say("SUB orders LATEST");
    c.expect_line("ERR history-unavailable");
    // The refused SUB left the connection unsubscribed: SUB again works
    // once history is back.
    assert!(matches!(
        watcher.next_event(Duration::from_millis(300)),
        Event::Timeout
    ));
    assert_eventually!(
        a.metrics()
            .value("gateway_history_appends_total", &[("result", "failed")])
            >= 2.0,
        Duration::from_secs(5)
    );

    nats.restart();
    let first = eventually_published(&a, "orders", "once", "key-1");
    let again = published(&admin_publish(&a, "orders", "once", Some("key-1")));
    assert_eq!(again.0, first.0, "the retry was stored twice");
    assert_eq!(again.2, 0, "a repeat is delivered to nobody");
    assert_eq!(
        positioned(&watcher.hear(), "orders"),
        (first.0, "once".to_owned())
    );
    assert!(matches!(
        watcher.next_event(Duration::from_millis(300)),
        Event::Timeout
    ));
    a.wait_metric_eq(
        "gateway_history_appends_total",
        &[("result", "duplicate")],
        1.0,
    );
    c.say("SUB orders LATEST");
    ok_sub(&c.hear(), "orders");
}

/// Publishes with `key` until the stream takes it (NATS coming back).
fn eventually_published(gw: &Gateway, topic: &str, data: &str, key: &str) -> (u64, String, u64) {
    let mut last = None;
    for _ in 0..100 {
        let r = admin_publish(gw, topic, data, Some(key));
        if r.status == 200 {
            return published(&r);
        }
        last = Some(r.status);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never stored: last status {last:?}");
}

/// Node `b` reaches NATS through a proxy that a test freezes: what the
/// stream republishes to it meanwhile is lost on the way, and it sees a
/// gap once it is back.
fn pair_behind_proxy(size: &str) -> (NatsServer, CutProxy, Gateway, Gateway) {
    let nats = NatsServer::start_jetstream();
    let flags = ["--history-size", size, "--cluster-timeout", "500"];
    let a = node(&nats, "a", &flags);
    let proxy = CutProxy::start(SocketAddr::from(([127, 0, 0, 1], nats.port())));
    let url = format!("nats://{}", proxy.addr());
    let mut all = vec!["--nats-url", url.as_str(), "--node-id", "b"];
    all.extend_from_slice(&flags);
    let b = Gateway::start(&all);
    wait_members(&[&a, &b], &["a", "b"]);
    (nats, proxy, a, b)
}

/// Freezes `b`'s NATS connection, publishes `texts` on `a`, then cuts it,
/// so that `b` reconnects having missed them.
fn publish_while_cut(proxy: &CutProxy, a: &Gateway, b: &Gateway, texts: &[String]) -> Vec<u64> {
    proxy.freeze();
    let offsets = texts
        .iter()
        .map(|t| published(&admin_publish(a, "feed", t, None)).0)
        .collect();
    proxy.cut();
    assert_eventually!(
        b.metrics().value("gateway_nats_reconnects_total", &[]) >= 1.0
            && get_ok(b, "/healthz")["nats"] == "connected",
        Duration::from_secs(10)
    );
    offsets
}

#[test]
fn a_gap_on_a_nodes_live_path_is_read_back_from_the_stream_in_order() {
    if !nats_present() {
        return;
    }
    let (_nats, proxy, a, b) = pair_behind_proxy("100");
    let mut sub = b.connect();
    sub.say("SUB feed LATEST");
    ok_sub(&sub.hear(), "feed");
    let before = published(&admin_publish(&a, "feed", "m0", None)).0;
    assert_eq!(positioned(&sub.hear(), "feed").0, before);
    let texts: Vec<String> = (1..=5).map(|i| format!("m{i}")).collect();
    let offsets = publish_while_cut(&proxy, &a, &b, &texts);
    // Back on NATS, b reads back what it missed, in order, without waiting
    // for a next message to show the gap.
    let got = next_positioned(&mut sub, "feed", 5);
    let expected: Vec<(u64, String)> = offsets.iter().copied().zip(texts).collect();
    assert_eq!(got, expected);
    let after = published(&admin_publish(&a, "feed", "m6", None)).0;
    assert_eq!(positioned(&sub.hear(), "feed"), (after, "m6".to_owned()));
    b.wait_metric_eq("gateway_history_gaps_total", &[("result", "repaired")], 1.0);
    assert_eq!(
        b.metrics()
            .value("gateway_history_gaps_total", &[("result", "lost")]),
        0.0
    );
}

#[test]
fn a_gap_the_stream_no_longer_holds_is_told_lost_then_messages_go_on() {
    if !nats_present() {
        return;
    }
    let (_nats, proxy, a, b) = pair_behind_proxy("2");
    let mut sub = b.connect();
    sub.say("SUB feed LATEST");
    let (epoch, _, _) = ok_sub(&sub.hear(), "feed");
    let texts: Vec<String> = (1..=6).map(|i| format!("m{i}")).collect();
    let offsets = publish_while_cut(&proxy, &a, &b, &texts);
    let last = published(&admin_publish(&a, "feed", "m7", None)).0;
    // Only the newest two are held: m6 and m7. LOST says where delivery
    // goes on from; what the stream still had follows, then the rest.
    let lost = sub.hear();
    let position = lost
        .strip_prefix("LOST feed ")
        .unwrap_or_else(|| panic!("expected LOST, got {lost}"));
    let (lost_epoch, after) = position.split_once(':').expect("a position");
    assert_eq!(lost_epoch, epoch);
    let after: u64 = after.parse().expect("an offset");
    let rest: Vec<(u64, String)> =
        std::iter::from_fn(|| match sub.next_event(Duration::from_millis(500)) {
            Event::Frame(f) => Some(positioned(&String::from_utf8_lossy(&f), "feed")),
            _ => None,
        })
        .collect();
    assert!(
        rest.iter().all(|(o, _)| *o > after),
        "{rest:?} after {after}"
    );
    assert_eq!(rest.last().map(|m| m.0), Some(last), "{rest:?}");
    assert!(
        rest.windows(2).all(|w| w[0].0 < w[1].0),
        "out of order: {rest:?}"
    );
    assert!(rest.iter().any(|(o, _)| *o == offsets[5]), "{rest:?}");
    b.wait_metric_eq("gateway_history_gaps_total", &[("result", "lost")], 1.0);
}

#[test]
fn a_stream_with_other_limits_is_refused_at_start() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start_jetstream();
    let _a = node(&nats, "a", &HISTORY);
    let url = nats.url();
    let exited = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--nats-url",
            &url,
            "--node-id",
            "b",
            "--history-size",
            "50",
        ],
        &[],
        Duration::from_secs(15),
    );
    assert!(!exited.status.success());
    assert!(exited.stdout.is_empty(), "READY printed");
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("max_msgs_per_subject 100")
            && lines[0].contains("--history-size says 50"),
        "{}",
        lines[0]
    );
}

/// Stops a publisher thread however the reader ends, a failed assertion
/// included, so that the scope can end.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn recovery_on_one_node_while_the_other_publishes_without_pause_has_no_hole_and_no_duplicate() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&[
        "--history-size",
        "100000",
        "--history-recover-max",
        "100000",
    ]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let publisher = scope.spawn(|| {
            let mut c = a.connect();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 5_000 {
                c.send(format!("PUB flow {n}"));
                n += 1;
                if n.is_multiple_of(50) {
                    c.sync();
                }
            }
            c.sync();
            n
        });
        let mut reader = b.connect();
        reader.say("SUB flow LATEST");
        let (epoch, _, _) = ok_sub(&reader.hear(), "flow");
        let mut expected = None;
        let mut last_offset = 0;
        let check = |line: String, expected: &mut Option<u64>, last_offset: &mut u64| {
            let (offset, payload) = positioned(&line, "flow");
            let n: u64 = payload.parse().expect("a number");
            assert!(offset > *last_offset, "offsets went back");
            if let Some(want) = *expected {
                assert_eq!(n, want, "a hole or a duplicate");
            }
            *expected = Some(n + 1);
            *last_offset = offset;
        };
        for _ in 0..5 {
            for _ in 0..30 {
                check(reader.hear(), &mut expected, &mut last_offset);
            }
            drop(reader);
            std::thread::sleep(Duration::from_millis(20));
            reader = b.connect();
            reader.say(&format!("SUB flow {epoch}:{last_offset}"));
            let (_, _, rest) = ok_sub(&reader.hear(), "flow");
            assert!(rest.starts_with("RECOVERED "), "{rest}");
        }
        drop(stopping);
        let sent = publisher.join().expect("publisher");
        let want = sent - expected.expect("some messages");
        for _ in 0..want {
            check(reader.hear(), &mut expected, &mut last_offset);
        }
    });
}

#[test]
fn more_missed_than_recover_max_is_lost_and_the_admin_api_pages_through_them() {
    if !nats_present() {
        return;
    }
    let (_nats, a, b) = pair(&["--history-recover-max", "2"]);
    let (epoch, start) = epoch_of(&b, "t");
    let offsets: Vec<u64> = ["x", "y", "z"]
        .iter()
        .map(|d| published(&admin_publish(&a, "t", d, None)).0)
        .collect();
    let mut c = b.connect();
    c.say(&format!("SUB t {epoch}:{start}"));
    assert_eq!(
        ok_sub(&c.hear(), "t"),
        (epoch.clone(), offsets[2], "LOST".to_owned())
    );
    // Within the bound: recovered.
    let mut d = b.connect();
    d.say(&format!("SUB t {epoch}:{}", offsets[0]));
    assert_eq!(
        ok_sub(&d.hear(), "t"),
        (epoch.clone(), offsets[2], "RECOVERED 2".to_owned())
    );
    let page = get_ok(
        &b,
        &format!("/api/v1/topics/t/history?since={epoch}:{start}&limit=2"),
    );
    assert_eq!(page["complete"], true, "{page}");
    assert_eq!(page["offset"], offsets[2], "{page}");
    assert_eq!(page["messages"][0]["data"], "x", "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2), "{page}");
    b.wait_metric_eq("gateway_recoveries_total", &[("result", "lost")], 1.0);
}
