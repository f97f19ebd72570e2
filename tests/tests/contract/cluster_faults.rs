//! Contract section 10, faults: NATS killed mid-stream and restarted (the
//! local service goes on, cross-node routes answer 503, delivery resumes,
//! users held on both sides are resolved, the reconnect and the missed
//! messages are counted), a node killed with SIGKILL (gone from the
//! cluster within 5 s, its users free), NATS unreachable at start (READY,
//! local service, joined later) and a full outbox (dropped and counted,
//! local delivery unaffected).

use crate::admin_api::{api, assert_error, get_ok};
use crate::cluster::{SETTLE, members, node, wait_members};
use crate::common::publish;
use gateway_tests::nats::{NatsServer, nats_present};
use gateway_tests::poll::eventually;
use gateway_tests::{Client, Event, assert_eventually};
use serde_json::json;
use std::time::{Duration, Instant};

fn message(text: &str) -> serde_json::Value {
    json!({ "data": text })
}

/// Frames a client has now, without waiting past `within`.
fn drain_frames(client: &mut Client, within: Duration) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Event::Frame(frame) = client.next_event(within) {
        frames.push(frame);
    }
    frames
}

#[test]
fn nats_killed_and_restarted() {
    if !nats_present() {
        return;
    }
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &["--cluster-timeout", "500"]);
    let b = node(&nats, "b", &["--cluster-timeout", "500"]);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut sub_b = b.connect();
    sub_b.sub("stream");
    let mut sub_a = a.connect();
    sub_a.sub("local");
    let mut producer = a.connect();
    let mut sent = 0usize;
    let mut pub_next = |producer: &mut Client| {
        producer.send(publish("stream", format!("n{sent}").as_bytes()));
        sent += 1;
    };
    for _ in 0..50 {
        pub_next(&mut producer);
    }
    producer.sync();
    for i in 0..50 {
        sub_b.expect(format!("MSG stream n{i}"));
    }

    nats.kill();
    for gw in [&a, &b] {
        assert_eventually!(get_ok(gw, "/healthz")["nats"] == "disconnected", SETTLE);
        gw.wait_metric_eq("gateway_nats_connected", &[], 0.0);
    }
    // Mid-stream: the producer goes on while NATS is away.
    for _ in 0..50 {
        pub_next(&mut producer);
    }
    // Local service is unaffected.
    producer.send(publish("local", b"still here"));
    sub_a.expect("MSG local still here");
    let r = api(
        &a,
        "POST",
        "/api/v1/topics/local/publish",
        Some(&message("l")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["delivered_to"], 1);
    assert_eq!(r.json()["nodes"]["answered"], 1);
    sub_a.expect("MSG local l");
    // A target on another node cannot be reached: 503.
    let mut held_b = b.connect();
    held_b.hello("dana");
    let r = api(&a, "POST", "/api/v1/users/dana/send", Some(&message("x")));
    assert_error(&r, 503, "cluster_unavailable");
    let r = api(&a, "GET", "/api/v1/connections/b.0-1", None);
    assert_error(&r, 503, "cluster_unavailable");
    // The same user logs in on both sides during the outage.
    let mut held_a = a.connect();
    held_a.hello("dana");

    nats.restart();
    for gw in [&a, &b] {
        gw.wait_metric("gateway_nats_reconnects_total", &[], SETTLE, "1", |v| {
            v >= 1.0
        });
        assert_eventually!(get_ok(gw, "/healthz")["nats"] == "connected", SETTLE);
    }
    // Users held on both sides: exactly one is kicked, the newer login
    // (on a) stays.
    held_b.expect("KICK replaced");
    assert!(
        matches!(
            held_a.next_event(Duration::from_millis(300)),
            Event::Timeout
        ),
        "the newer login was kicked"
    );
    // Cross-node delivery resumes.
    let mut received = Vec::new();
    let resumed = eventually(SETTLE, || {
        pub_next(&mut producer);
        received.extend(drain_frames(&mut sub_b, Duration::from_millis(50)));
        (!received.is_empty()).then_some(())
    });
    assert!(resumed.is_some(), "cross-node delivery did not resume");
    producer.sync();
    let after = eventually(SETTLE, || {
        received.extend(drain_frames(&mut sub_b, Duration::from_millis(100)));
        received
            .last()
            .filter(|f| f.ends_with(format!(" n{}", sent - 1).as_bytes()))
            .map(|_| ())
    });
    assert!(after.is_some(), "the last message did not arrive");
    // Every message sent since the kill is received, or counted as missed
    // on b or as dropped on a: nothing vanishes unseen.
    let since_kill = sent - 50;
    let missed = b.metric("gateway_cluster_missed_total", &[]);
    let m = a.metrics();
    let dropped: f64 = ["unreachable", "overflow", "too_large"]
        .iter()
        .map(|r| m.value("gateway_cluster_dropped_total", &[("reason", r)]))
        .sum();
    assert!(
        received.len() as f64 + missed + dropped >= since_kill as f64,
        "received {}, missed {missed}, dropped {dropped} of {since_kill}",
        received.len()
    );
    // In order, without duplicates.
    let numbers: Vec<usize> = received
        .iter()
        .filter_map(|f| {
            std::str::from_utf8(f.strip_prefix(b"MSG stream n")?)
                .ok()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(numbers.len(), received.len());
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[test]
fn a_killed_node_leaves_within_five_seconds_and_frees_its_users() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let mut b = node(&nats, "b", &[]);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut held = b.connect();
    held.hello("erin");
    b.signal("KILL");
    let _ = b.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    assert_eventually!(members(&a) == ["a"], Duration::from_secs(5));
    assert!(killed.elapsed() < Duration::from_secs(5));
    a.wait_metric_eq("gateway_cluster_nodes", &[], 1.0);
    // The user is free: a login on a is answered at once and holds it.
    let mut again = a.connect();
    again.hello("erin");
    let r = api(
        &a,
        "POST",
        "/api/v1/users/erin/send",
        Some(&message("back")),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    again.expect("PUSH back");
}

#[test]
fn nats_unreachable_at_start_then_joined() {
    if !nats_present() {
        return;
    }
    let mut nats = NatsServer::start();
    nats.kill();
    // READY whether or not NATS answers; local clients are served.
    let a = node(&nats, "a", &[]);
    assert_eq!(get_ok(&a, "/healthz")["nats"], "disconnected");
    let mut client = a.connect();
    client.sub("t");
    client.send(publish("t", b"local"));
    client.expect("MSG t local");
    nats.restart();
    a.wait_metric("gateway_nats_connected", &[], SETTLE, "1", |v| v == 1.0);
    // The first connection is not a reconnect.
    assert_eq!(a.metric("gateway_nats_reconnects_total", &[]), 0.0);
    assert_eq!(get_ok(&a, "/healthz")["nats"], "connected");
}

#[test]
fn a_full_outbox_drops_and_counts_while_local_delivery_goes_on() {
    if !nats_present() {
        return;
    }
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &["--nats-pending-bytes", "2048"]);
    wait_members(&[&a], &["a"]);
    let mut subscriber = a.connect();
    subscriber.sub("t");
    nats.kill();
    a.wait_metric_eq("gateway_nats_connected", &[], 0.0);
    let mut producer = a.connect();
    let payload = "p".repeat(100);
    for _ in 0..100 {
        producer.send(publish("t", payload.as_bytes()));
    }
    for _ in 0..100 {
        subscriber.expect(format!("MSG t {payload}"));
    }
    // A message takes its body, header and an allowance of the budget:
    // at most a few fit in 2048 bytes; the rest are dropped and counted.
    let dropped = a.metric("gateway_cluster_dropped_total", &[("reason", "overflow")]);
    assert!(dropped >= 90.0, "overflow drops: {dropped}");
}
