//! Section 13 on a single node: history and recovery. Positions and
//! `LATEST`, positioned `MSG <topic>@<offset>`, recovery of exactly the
//! missed messages then live ones (also while a publisher never pauses),
//! `LOST` for another epoch, size, age, bytes, `--history-recover-max` and
//! a delete, the errors, a restart's new epoch, idempotent admin publishes,
//! the admin history routes, the metrics and a token's `topics` claim; in
//! both framings and over WebSocket. With history off, section 3 holds.

use crate::admin_api::{api, assert_error};
use crate::common::start;
use gateway_tests::ws::{WsClient, WsEvent};
use gateway_tests::{Client, Framing, Gateway, http};
use serde_json::json;
use std::time::Duration;

/// A client of either transport, as text lines.
pub(crate) trait Lines {
    fn say(&mut self, frame: &str);
    fn hear(&mut self) -> String;
    fn expect_line(&mut self, expected: &str) {
        assert_eq!(self.hear(), expected);
    }
}

impl Lines for Client {
    fn say(&mut self, frame: &str) {
        self.send(frame);
    }
    fn hear(&mut self) -> String {
        String::from_utf8_lossy(&self.recv()).into_owned()
    }
}

impl Lines for WsClient {
    fn say(&mut self, frame: &str) {
        self.send_text(frame);
    }
    fn hear(&mut self) -> String {
        match self.recv() {
            WsEvent::Text(text) => text,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A gateway with history (size 100 unless `flags` say otherwise) and a
/// WebSocket listener.
fn with_history(framing: Framing, flags: &[&str]) -> Gateway {
    let mut all = vec!["--ws-listen", "127.0.0.1:0"];
    if !flags.contains(&"--history-size") {
        all.extend(["--history-size", "100"]);
    }
    all.extend_from_slice(flags);
    start(framing, &all)
}

/// Each way of being a client: TCP in both framings, and WebSocket.
fn each_client(flags: &[&str], test: impl Fn(&Gateway, &mut dyn FnMut() -> Box<dyn Lines>)) {
    for framing in Framing::ALL {
        let gw = with_history(framing, flags);
        test(&gw, &mut || Box::new(gw.connect()));
    }
    let gw = with_history(Framing::Lines, flags);
    test(&gw, &mut || Box::new(gw.ws_connect()));
}

/// `OK SUB <topic> <epoch>:<offset>[ rest]`: the epoch, the offset and the
/// rest.
pub(crate) fn ok_sub(line: &str, topic: &str) -> (String, u64, String) {
    let rest = line
        .strip_prefix(&format!("OK SUB {topic} "))
        .unwrap_or_else(|| panic!("not an OK SUB {topic}: {line}"));
    let (position, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let (epoch, offset) = position.split_once(':').expect("a position");
    (
        epoch.to_owned(),
        offset.parse().expect("an offset"),
        tail.to_owned(),
    )
}

/// `MSG <topic>@<offset> <payload>`: the offset and the payload.
pub(crate) fn positioned(line: &str, topic: &str) -> (u64, String) {
    let rest = line
        .strip_prefix(&format!("MSG {topic}@"))
        .unwrap_or_else(|| panic!("not a positioned MSG on {topic}: {line}"));
    let (offset, payload) = rest.split_once(' ').expect("a payload");
    (offset.parse().expect("an offset"), payload.to_owned())
}

/// A publish through the admin API, with an optional idempotency key.
pub(crate) fn admin_publish(
    gw: &Gateway,
    topic: &str,
    data: &str,
    key: Option<&str>,
) -> http::Response {
    let body = json!({ "data": data }).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    http::request(
        gw.admin_addr(),
        "POST",
        &format!("/api/v1/topics/{topic}/publish"),
        &headers,
        Some(body.as_bytes()),
    )
}

#[test]
fn latest_then_positioned_messages_and_plain_subscribers_unchanged() {
    each_client(&[], |gw, connect| {
        let mut positioned_sub = connect();
        positioned_sub.say("SUB orders LATEST");
        let (epoch, offset, rest) = ok_sub(&positioned_sub.hear(), "orders");
        assert_eq!(
            (offset, rest.as_str()),
            (0, ""),
            "a topic never published on"
        );
        assert!((1..=32).contains(&epoch.len()));
        let mut plain = connect();
        plain.say("SUB orders");
        plain.expect_line("OK SUB orders");
        plain.say("PUB orders one");
        plain.expect_line("MSG orders one");
        let (first, payload) = positioned(&positioned_sub.hear(), "orders");
        assert_eq!(payload, "one");
        // The publisher's own copy carries the offset when it is positioned.
        positioned_sub.say("PUB orders two");
        let (second, payload) = positioned(&positioned_sub.hear(), "orders");
        assert!(second > first && first >= 1);
        assert_eq!(payload, "two");
        plain.expect_line("MSG orders two");
        let answer = admin_publish(gw, "orders", "three", None);
        assert_eq!(answer.status, 200, "{}", answer.text());
        let answer = answer.json();
        assert_eq!(answer["delivered_to"], 2);
        assert_eq!(answer["epoch"], epoch.as_str());
        let (third, _) = positioned(&positioned_sub.hear(), "orders");
        assert_eq!(answer["offset"], third);
        plain.expect_line("MSG orders three");
    });
}

#[test]
fn a_client_that_comes_back_gets_exactly_what_it_missed_then_live_ones() {
    each_client(&[], |_, connect| {
        let mut publisher = connect();
        let mut away = connect();
        away.say("SUB news LATEST");
        let (epoch, _, _) = ok_sub(&away.hear(), "news");
        publisher.say("PUB news before");
        let (seen, _) = positioned(&away.hear(), "news");
        drop(away);
        for missed in ["m1", "m2", "m3"] {
            publisher.say(&format!("PUB news {missed}"));
        }
        publisher.say("PING sync");
        publisher.expect_line("PONG sync");
        let mut back = connect();
        back.say(&format!("SUB news {epoch}:{seen}"));
        let (_, newest, rest) = ok_sub(&back.hear(), "news");
        assert_eq!(rest, "RECOVERED 3");
        let mut offsets = vec![seen];
        for missed in ["m1", "m2", "m3"] {
            let (offset, payload) = positioned(&back.hear(), "news");
            assert_eq!(payload, missed);
            offsets.push(offset);
        }
        assert_eq!(offsets.last(), Some(&newest));
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        publisher.say("PUB news live");
        let (live, payload) = positioned(&back.hear(), "news");
        assert_eq!((payload.as_str(), live > newest), ("live", true));
        // Recovering from the newest position replays nothing.
        let mut latest = connect();
        latest.say(&format!("SUB news {epoch}:{live}"));
        let (_, _, rest) = ok_sub(&latest.hear(), "news");
        assert_eq!(rest, "RECOVERED 0");
    });
}

#[test]
fn recovery_while_a_publisher_never_pauses_has_no_hole_and_no_duplicate() {
    let gw = with_history(
        Framing::Lines,
        &[
            "--history-size",
            "100000",
            "--history-recover-max",
            "100000",
        ],
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the publisher however the reader ends, a failed assertion
    /// included, so the scope can end.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let stopping = StopOnDrop(&stop);
        let publisher = scope.spawn(|| {
            let mut c = gw.connect();
            let mut n = 0u64;
            // Bounded, so the test's length is too.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                c.send(format!("PUB flow {n}"));
                n += 1;
                if n.is_multiple_of(200) {
                    c.sync();
                }
            }
            c.sync();
            n
        });
        let mut reader = gw.connect();
        reader.send("SUB flow LATEST");
        let (epoch, _, _) = ok_sub(&Lines::hear(&mut reader), "flow");
        let mut expected = None;
        let mut last_offset = 0;
        // Leave and come back, five times, while the publisher goes on.
        for _ in 0..5 {
            for _ in 0..50 {
                let (offset, payload) = positioned(&Lines::hear(&mut reader), "flow");
                let n: u64 = payload.parse().expect("a number");
                assert!(offset > last_offset, "offsets went back");
                if let Some(want) = expected {
                    assert_eq!(n, want, "a hole or a duplicate");
                }
                expected = Some(n + 1);
                last_offset = offset;
            }
            drop(reader);
            std::thread::sleep(Duration::from_millis(20));
            reader = gw.connect();
            reader.send(format!("SUB flow {epoch}:{last_offset}"));
            let (_, _, rest) = ok_sub(&Lines::hear(&mut reader), "flow");
            assert!(rest.starts_with("RECOVERED "), "{rest}");
        }
        drop(stopping);
        let sent = publisher.join().expect("publisher");
        // Everything after the last position, up to the end, in order.
        let want = sent - expected.expect("some messages");
        for _ in 0..want {
            let (offset, payload) = positioned(&Lines::hear(&mut reader), "flow");
            let n: u64 = payload.parse().expect("a number");
            assert_eq!(Some(n), expected);
            assert!(offset > last_offset);
            expected = Some(n + 1);
            last_offset = offset;
        }
    });
}

#[test]
fn lost_when_history_cannot_say_what_was_missed() {
    // Another epoch, and a position past what the size keeps.
    let gw = with_history(Framing::Lines, &["--history-size", "2"]);
    let mut c = gw.connect();
    c.send("SUB t LATEST");
    let (epoch, zero, _) = ok_sub(&Lines::hear(&mut c), "t");
    c.send("SUB u other-epoch:0");
    let (_, _, rest) = ok_sub(&Lines::hear(&mut c), "u");
    assert_eq!(rest, "LOST");
    for i in 0..3 {
        c.send(format!("PUB t m{i}"));
        positioned(&Lines::hear(&mut c), "t");
    }
    let mut back = gw.connect();
    back.send(format!("SUB t {epoch}:{zero}"));
    let (_, newest, rest) = ok_sub(&Lines::hear(&mut back), "t");
    assert_eq!(rest, "LOST", "m0 left history");
    // After LOST the subscription goes on from the newest position.
    c.send("PUB t after");
    positioned(&Lines::hear(&mut c), "t");
    let (offset, payload) = positioned(&Lines::hear(&mut back), "t");
    assert!(offset > newest && payload == "after");

    // Older than --history-ttl.
    let gw = with_history(Framing::Lines, &["--history-ttl", "1"]);
    let mut c = gw.connect();
    c.send("SUB t LATEST");
    let (epoch, zero, _) = ok_sub(&Lines::hear(&mut c), "t");
    c.send("PUB t old");
    positioned(&Lines::hear(&mut c), "t");
    std::thread::sleep(Duration::from_millis(1100));
    let mut back = gw.connect();
    back.send(format!("SUB t {epoch}:{zero}"));
    assert_eq!(ok_sub(&Lines::hear(&mut back), "t").2, "LOST");

    // Past --history-max-bytes, the oldest across topics leaves.
    let gw = with_history(Framing::Lines, &["--history-max-bytes", "2048"]);
    let mut c = gw.connect();
    c.send("SUB a LATEST");
    let (epoch, zero, _) = ok_sub(&Lines::hear(&mut c), "a");
    let big = "x".repeat(900);
    c.send(format!("PUB a {big}"));
    positioned(&Lines::hear(&mut c), "a");
    for _ in 0..3 {
        c.send(format!("PUB b {big}"));
    }
    c.sync();
    let mut back = gw.connect();
    back.send(format!("SUB a {epoch}:{zero}"));
    assert_eq!(ok_sub(&Lines::hear(&mut back), "a").2, "LOST");
    assert!(gw.metric("gateway_history_evicted_total", &[("reason", "bytes")]) >= 1.0);

    // More missed than --history-recover-max.
    let gw = with_history(Framing::Lines, &["--history-recover-max", "2"]);
    let mut c = gw.connect();
    c.send("SUB t LATEST");
    let (epoch, zero, _) = ok_sub(&Lines::hear(&mut c), "t");
    for i in 0..3 {
        c.send(format!("PUB t m{i}"));
        positioned(&Lines::hear(&mut c), "t");
    }
    let mut back = gw.connect();
    back.send(format!("SUB t {epoch}:{zero}"));
    assert_eq!(ok_sub(&Lines::hear(&mut back), "t").2, "LOST");
    back.send("UNSUB t");
    back.expect("OK UNSUB t");
    // Within it (two missed), recovered.
    back.send(format!("SUB t {epoch}:{}", zero + 1));
    let (_, newest, rest) = ok_sub(&Lines::hear(&mut back), "t");
    assert_eq!(rest, "RECOVERED 2");
    assert!(newest > zero);
    for _ in 0..2 {
        positioned(&Lines::hear(&mut back), "t");
    }

    // A delete: every position from before it is lost.
    let r = api(&gw, "DELETE", "/api/v1/topics/t/history", None);
    assert_eq!(r.status, 204, "{}", r.text());
    let mut after = gw.connect();
    after.send(format!("SUB t {epoch}:{newest}"));
    let (_, deleted_at, rest) = ok_sub(&Lines::hear(&mut after), "t");
    assert_eq!(rest, "LOST");
    c.send("PUB t fresh");
    let (offset, _) = positioned(&Lines::hear(&mut after), "t");
    assert!(offset > deleted_at, "offsets go on increasing");
    assert_eq!(
        gw.metric("gateway_recoveries_total", &[("result", "lost")]),
        2.0
    );
}

#[test]
fn bad_positions_topics_without_history_and_double_subscriptions_are_refused() {
    each_client(&["--history-topics", "orders,chat/*"], |_, connect| {
        let mut c = connect();
        for bad in [
            "",
            "x",
            "e:",
            ":1",
            "e:-1",
            "e:+1",
            "e:1.5",
            "e e:1",
            "e:99999999999999999999",
        ] {
            c.say(&format!("SUB orders {bad}"));
            c.expect_line("ERR bad-position");
        }
        c.say("SUB news LATEST");
        c.expect_line("ERR no-history");
        c.say("SUB chat/room LATEST");
        ok_sub(&c.hear(), "chat/room");
        c.say("SUB chat/room LATEST");
        c.expect_line("ERR already-subscribed");
        c.say("SUB news");
        c.expect_line("OK SUB news");
        c.say("SUB news LATEST");
        c.expect_line("ERR already-subscribed");
        // An ERR leaves the connection unsubscribed from that topic.
        c.say("PUB orders x");
        c.say("PING after");
        c.expect_line("PONG after");
        c.say("SUB a$ LATEST");
        c.expect_line("ERR bad-topic");
    });
}

#[test]
fn with_history_off_section_three_holds() {
    let gw = start(Framing::Lines, &[]);
    let mut c = gw.connect();
    c.send("SUB orders LATEST");
    c.expect("ERR bad-topic");
    c.send("SUB orders");
    c.expect("OK SUB orders");
    c.send("PUB orders plain");
    c.expect("MSG orders plain");
    let r = admin_publish(&gw, "orders", "x", Some("k"));
    assert_eq!(r.json(), json!({"delivered_to": 1}));
    c.expect("MSG orders x");
    let r = api(&gw, "GET", "/api/v1/topics/orders/history", None);
    assert_error(&r, 404, "no_history");
    let r = api(&gw, "DELETE", "/api/v1/topics/orders/history", None);
    assert_error(&r, 404, "no_history");
    // Every family is exported from start-up, at 0.
    let metrics = gw.metrics();
    for (family, label) in [
        (
            "gateway_history_appends_total",
            Some(("result", ["stored", "duplicate", "failed"].as_slice())),
        ),
        (
            "gateway_history_evicted_total",
            Some(("reason", ["size", "ttl", "bytes", "deleted"].as_slice())),
        ),
        (
            "gateway_recoveries_total",
            Some(("result", ["latest", "recovered", "lost"].as_slice())),
        ),
        (
            "gateway_history_gaps_total",
            Some(("result", ["repaired", "lost"].as_slice())),
        ),
        ("gateway_history_messages", None),
        ("gateway_history_bytes", None),
        ("gateway_recovered_messages_total", None),
        ("gateway_history_read_duration_seconds_count", None),
    ] {
        match label {
            Some((name, values)) => {
                for value in values {
                    assert_eq!(
                        metrics.value(family, &[(name, value)]),
                        0.0,
                        "{family}{{{value}}}"
                    );
                }
            }
            None => assert_eq!(metrics.value(family, &[]), 0.0, "{family}"),
        }
    }
}

#[test]
fn a_restart_changes_the_epoch_and_old_positions_are_lost() {
    let gw = with_history(Framing::Lines, &[]);
    let mut c = gw.connect();
    c.send("SUB t LATEST");
    let (first, _, _) = ok_sub(&Lines::hear(&mut c), "t");
    c.send("PUB t m");
    let (offset, _) = positioned(&Lines::hear(&mut c), "t");
    drop(c);
    drop(gw);
    let gw = with_history(Framing::Lines, &[]);
    let mut c = gw.connect();
    c.send(format!("SUB t {first}:{offset}"));
    let (second, _, rest) = ok_sub(&Lines::hear(&mut c), "t");
    assert_ne!(first, second);
    assert_eq!(rest, "LOST");
}

#[test]
fn an_idempotent_admin_publish_is_stored_and_delivered_once() {
    let gw = with_history(Framing::Lines, &[]);
    let mut c = gw.connect();
    c.send("SUB orders LATEST");
    ok_sub(&Lines::hear(&mut c), "orders");
    let first = admin_publish(&gw, "orders", "paid", Some("order-17:paid")).json();
    let again = admin_publish(&gw, "orders", "paid", Some("order-17:paid")).json();
    assert_eq!(first["delivered_to"], 1);
    assert_eq!(again["delivered_to"], 0);
    assert_eq!(first["offset"], again["offset"]);
    let offset = first["offset"].as_u64().expect("offset");
    assert_eq!(
        positioned(&Lines::hear(&mut c), "orders"),
        (offset, "paid".into())
    );
    // Once: the next frame answers the PING.
    c.sync();
    let r = api(&gw, "GET", "/api/v1/topics/orders/history", None).json();
    assert_eq!(r["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["messages"][0]["offset"], offset);
    assert_eq!(
        gw.metric("gateway_history_appends_total", &[("result", "duplicate")]),
        1.0
    );
    for bad in ["", "has space", &"k".repeat(129)] {
        let r = admin_publish(&gw, "orders", "x", Some(bad));
        assert_error(&r, 400, "bad_request");
    }
}

#[test]
fn the_admin_api_reads_and_deletes_a_topics_history() {
    let gw = with_history(Framing::Lines, &["--history-topics", "orders"]);
    let r = api(&gw, "GET", "/api/v1/topics/orders/history", None);
    assert_eq!(r.status, 200);
    let empty = r.json();
    assert_eq!(
        (empty["offset"].as_u64(), empty["complete"].as_bool()),
        (Some(0), Some(true))
    );
    let epoch = empty["epoch"].as_str().expect("epoch").to_owned();
    let mut offsets = Vec::new();
    for data in ["a", "b", "c"] {
        offsets.push(admin_publish(&gw, "orders", data, None).json()["offset"].clone());
    }
    let binary = http::request(
        gw.admin_addr(),
        "POST",
        "/api/v1/topics/orders/publish",
        &[("Content-Type", "application/json")],
        Some(br#"{"data_base64": "/wA="}"#),
    );
    assert_eq!(binary.status, 200);
    let all = api(&gw, "GET", "/api/v1/topics/orders/history", None).json();
    let messages = all["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0]["data"], "a");
    assert_eq!(messages[3]["data_base64"], "/wA=");
    assert!(
        messages[0]["published_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let newest = api(&gw, "GET", "/api/v1/topics/orders/history?limit=2", None).json();
    assert_eq!(newest["messages"][0]["data"], "c");
    let since = format!(
        "/api/v1/topics/orders/history?since={epoch}:{}&limit=1",
        offsets[0]
    );
    let page = api(&gw, "GET", &since, None).json();
    assert_eq!(
        (
            page["complete"].as_bool(),
            page["messages"][0]["data"].as_str()
        ),
        (Some(true), Some("b"))
    );
    let other = api(
        &gw,
        "GET",
        "/api/v1/topics/orders/history?since=nope:1",
        None,
    )
    .json();
    assert_eq!(other["complete"], false);
    assert_error(
        &api(&gw, "GET", "/api/v1/topics/orders/history?since=bad", None),
        400,
        "bad_position",
    );
    assert_error(
        &api(&gw, "GET", "/api/v1/topics/orders/history?limit=0", None),
        400,
        "bad_request",
    );
    assert_error(
        &api(&gw, "GET", "/api/v1/topics/news/history", None),
        404,
        "no_history",
    );
    assert_error(
        &api(&gw, "GET", "/api/v1/topics/a$/history", None),
        400,
        "bad_topic",
    );
    let r = api(&gw, "DELETE", "/api/v1/topics/orders/history", None);
    assert_eq!(r.status, 204);
    let after = api(
        &gw,
        "GET",
        &format!("/api/v1/topics/orders/history?since={epoch}:0"),
        None,
    )
    .json();
    assert_eq!(after["complete"], false);
    assert_eq!(after["messages"], json!([]));
    assert_eq!(
        gw.metric("gateway_history_evicted_total", &[("reason", "deleted")]),
        4.0
    );
    assert_eq!(gw.metric("gateway_history_messages", &[]), 0.0);
}

#[test]
fn a_recovery_and_its_messages_are_counted() {
    let gw = with_history(Framing::Lines, &[]);
    let mut c = gw.connect();
    c.send("SUB t LATEST");
    let (epoch, zero, _) = ok_sub(&Lines::hear(&mut c), "t");
    c.send("PUB t 12345");
    positioned(&Lines::hear(&mut c), "t");
    let mut back = gw.connect();
    back.send(format!("SUB t {epoch}:{zero}"));
    assert_eq!(ok_sub(&Lines::hear(&mut back), "t").2, "RECOVERED 1");
    let m = gw.metrics();
    assert_eq!(
        m.value("gateway_recoveries_total", &[("result", "latest")]),
        1.0
    );
    assert_eq!(
        m.value("gateway_recoveries_total", &[("result", "recovered")]),
        1.0
    );
    assert_eq!(m.value("gateway_recovered_messages_total", &[]), 1.0);
    assert_eq!(
        m.value("gateway_history_appends_total", &[("result", "stored")]),
        1.0
    );
    assert_eq!(m.value("gateway_history_messages", &[]), 1.0);
    assert_eq!(m.value("gateway_history_bytes", &[]), 5.0);
    assert!(m.value("gateway_history_read_duration_seconds_count", &[]) >= 2.0);
}

#[test]
fn a_tokens_topics_claim_applies_to_a_positioned_sub() {
    let secret = "history-token-secret";
    let gw = with_history(Framing::Lines, &["--client-token-secret", secret]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "ann", "exp": exp, "topics": ["mine/*"]}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token");
    let mut c = gw.connect();
    c.send("SUB mine/a LATEST");
    c.expect("ERR unauthorized");
    c.send(format!("HELLO ann {token}"));
    assert!(c.recv().starts_with(b"OK HELLO "));
    c.send("SUB theirs LATEST");
    c.expect("ERR forbidden");
    c.send("SUB mine/a LATEST");
    ok_sub(&Lines::hear(&mut c), "mine/a");
}
