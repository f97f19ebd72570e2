//! Contract section 10 under faults, continued from `cluster_faults`: the
//! logins of a NATS outage settled even with a full outbox, a frozen
//! holder (SIGSTOP) answered 504 rather than 404, a freshly started node
//! that waits to know the cluster rather than answer 404, what is not
//! carried counted as `unreachable`, and logins that do not wait on a node
//! that is killed or has missed a heartbeat.

use crate::admin_api::{api, assert_error, get_ok};
use crate::cluster::{SETTLE, node, wait_members};
use crate::common::publish;
use gateway_tests::nats::{NatsServer, nats_present};
use gateway_tests::poll::eventually;
use gateway_tests::{Client, Event, Gateway, assert_eventually};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn message(text: &str) -> Value {
    json!({ "data": text })
}

/// Open connections of `user` on one node.
fn open_holders(gw: &Gateway, user: &str) -> usize {
    let body = get_ok(gw, &format!("/api/v1/connections?user={user}"));
    body["connections"]
        .as_array()
        .map(|conns| conns.iter().filter(|c| c["state"] == "open").count())
        .unwrap_or(0)
}

/// Asserts that nothing more arrives for a while.
#[track_caller]
fn expect_quiet(client: &mut Client, within: Duration) {
    match client.next_event(within) {
        Event::Timeout => {}
        other => panic!("expected nothing more, got {}", other.describe()),
    }
}

/// Issue 24, item 1: users logged in on both nodes during an outage while
/// one node's outbox is full of messages. Once NATS is back, each user has
/// exactly one holder within `--cluster-timeout` and the other connection
/// gets `KICK replaced`.
#[test]
fn logins_of_an_outage_settle_even_with_a_full_outbox() {
    if !nats_present() {
        return;
    }
    const USERS: usize = 20;
    let timeout_ms = 1000;
    let flags = ["--cluster-timeout", "1000", "--nats-pending-bytes", "65536"];
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &flags);
    let b = node(&nats, "b", &flags);
    wait_members(&[&a, &b], &["a", "b"]);
    nats.kill();
    for gw in [&a, &b] {
        gw.wait_metric_eq("gateway_nats_connected", &[], 0.0);
    }
    let users: Vec<String> = (0..USERS).map(|i| format!("L{i}")).collect();
    let mut on_b: Vec<Client> = users
        .iter()
        .map(|u| {
            let mut c = b.connect();
            c.hello(u);
            c
        })
        .collect();
    let mut on_a: Vec<Client> = users
        .iter()
        .map(|u| {
            let mut c = a.connect();
            c.hello(u);
            c
        })
        .collect();
    // Fill a's outbox well past its 64 KiB.
    let mut producer = a.connect();
    let payload = "x".repeat(190);
    for _ in 0..300 {
        producer.send(publish("tx", payload.as_bytes()));
    }
    producer.sync();
    let overflow = a.metric("gateway_cluster_dropped_total", &[("reason", "overflow")]);
    assert!(overflow > 0.0, "the outbox did not fill: {overflow}");

    nats.restart();
    for gw in [&a, &b] {
        gw.wait_metric("gateway_nats_reconnects_total", &[], SETTLE, "1", |v| {
            v >= 1.0
        });
    }
    // Both are back (seen by polling, so a little after the fact): each
    // user has one holder within the timeout, plus the polling's slack.
    let bound = Duration::from_millis(timeout_ms + 500);
    let back = Instant::now();
    let settled = eventually(bound, || {
        users
            .iter()
            .all(|u| open_holders(&a, u) + open_holders(&b, u) == 1)
            .then_some(())
    });
    let split: Vec<(&String, usize, usize)> = users
        .iter()
        .map(|u| (u, open_holders(&a, u), open_holders(&b, u)))
        .filter(|(_, on_a, on_b)| on_a + on_b != 1)
        .collect();
    assert!(
        settled.is_some(),
        "not one holder each {:?} after NATS came back: {split:?}",
        back.elapsed()
    );
    for (i, user) in users.iter().enumerate() {
        let kicked: Vec<&str> = [("a", &mut on_a[i]), ("b", &mut on_b[i])]
            .into_iter()
            .filter_map(
                |(name, client)| match client.next_event(Duration::from_millis(100)) {
                    Event::Frame(f) if f == b"KICK replaced" => Some(name),
                    Event::Timeout => None,
                    other => panic!("{user} on {name}: {}", other.describe()),
                },
            )
            .collect();
        assert_eq!(kicked.len(), 1, "{user}: kicked on {kicked:?}");
    }
}

/// Waits until every thread of `gw` is stopped (SIGSTOP takes effect on
/// each thread as the kernel gets to it, not when `kill` returns).
fn wait_stopped(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", gw.pid())).expect("tasks");
        let all_stopped = tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the name, which is in parentheses.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Issue 24, item 2: the holder of the target is frozen. A user send and a
/// connection send answer 504 `cluster_timeout` within `--cluster-timeout`
/// plus 0.5 s; once the node wakes, each message arrives once. A user no
/// node holds is still 404.
#[test]
fn a_frozen_holder_answers_504_and_the_message_arrives_once_it_wakes() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start();
    let flags = ["--cluster-timeout", "500"];
    let a = node(&nats, "a", &flags);
    let b = node(&nats, "b", &flags);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut held = b.connect();
    let id = held.hello("frost");
    let bound = Duration::from_millis(500 + 500);
    let r = api(&a, "POST", "/api/v1/users/nobody/send", Some(&message("n")));
    assert_error(&r, 404, "not_found");

    b.signal("STOP");
    wait_stopped(&b);
    let started = Instant::now();
    let r = api(
        &a,
        "POST",
        "/api/v1/users/frost/send",
        Some(&message("one")),
    );
    let took = started.elapsed();
    let user_send = (r.status, r.text());
    let started = Instant::now();
    let r = api(
        &a,
        "POST",
        &format!("/api/v1/connections/{id}/send"),
        Some(&message("two")),
    );
    let took_conn = started.elapsed();
    b.signal("CONT");
    assert_eq!(user_send.0, 504, "user send: {}", user_send.1);
    assert!(user_send.1.contains("cluster_timeout"), "{}", user_send.1);
    assert!(took <= bound, "the user send took {took:?}");
    assert_error(&r, 504, "cluster_timeout");
    assert!(took_conn <= bound, "the connection send took {took_conn:?}");
    // The outcome was unknown, not failed: both are carried out, once.
    held.expect("PUSH one");
    held.expect("PUSH two");
    expect_quiet(&mut held, Duration::from_millis(300));
}

/// Issue 24, item 3: a node started next to two running ones is not ready
/// until it knows the cluster, and answers a user send for a user held on
/// another node with 202 from its first request on, never 404.
#[test]
fn a_new_node_answers_for_remote_users_from_its_first_request() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut on_b = b.connect();
    on_b.hello("far");
    let c = node(&nats, "c", &[]);
    let ready = c.http_get("/readyz");
    assert_eq!(
        ready.status,
        503,
        "ready before knowing the cluster: {}",
        ready.text()
    );
    let r = api(&c, "POST", "/api/v1/users/far/send", Some(&message("hi")));
    assert_eq!(r.status, 202, "{}", r.text());
    on_b.expect("PUSH hi");
    assert_eventually!(c.http_get("/readyz").status == 200, Duration::from_secs(3));
}

/// Issue 24, item 4: while NATS is down, each cross-node request answered
/// 503 and each skipped remote part of an admin publish or broadcast counts
/// once as `unreachable`.
#[test]
fn what_is_not_carried_counts_as_unreachable() {
    if !nats_present() {
        return;
    }
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    wait_members(&[&a, &b], &["a", "b"]);
    let mut on_b = b.connect();
    let id = on_b.hello("away");
    nats.kill();
    a.wait_metric_eq("gateway_nats_connected", &[], 0.0);
    let unreachable = || {
        a.metric(
            "gateway_cluster_dropped_total",
            &[("reason", "unreachable")],
        )
    };
    assert_eq!(unreachable(), 0.0);
    let r = api(&a, "POST", "/api/v1/users/away/send", Some(&message("x")));
    assert_error(&r, 503, "cluster_unavailable");
    let r = api(&a, "POST", &format!("/api/v1/connections/{id}/close"), None);
    assert_error(&r, 503, "cluster_unavailable");
    assert_eq!(unreachable(), 2.0, "503s not counted");
    let r = api(&a, "POST", "/api/v1/topics/t/publish", Some(&message("p")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["nodes"], json!({"answered": 1, "expected": 2}));
    let r = api(&a, "POST", "/api/v1/broadcast", Some(&message("b")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(unreachable(), 4.0, "skipped remote parts not counted");
}

/// `HELLO user` on `gw`; how long `OK HELLO` took.
fn timed_hello(gw: &Gateway, user: &str) -> (Client, Duration) {
    let mut client = gw.connect();
    let started = Instant::now();
    client.hello(user);
    (client, started.elapsed())
}

/// Issue 24, item 5: three nodes; a login never waits on a node that is
/// killed (NATS says at once that nobody is there) or that has missed a
/// heartbeat (frozen), though both are still listed. The frozen node's
/// holder of the same user is kicked once it wakes. A killed node's
/// connections and users are 404 at once (item 2: nobody is there), and
/// admin publishes and broadcasts do not wait on it either.
#[test]
fn a_login_does_not_wait_on_a_killed_or_silent_node() {
    if !nats_present() {
        return;
    }
    let nats = NatsServer::start();
    // A long timeout, so that waiting on a silent node would show.
    let flags = ["--cluster-timeout", "3000"];
    let a = node(&nats, "a", &flags);
    let b = node(&nats, "b", &flags);
    let mut c = node(&nats, "c", &flags);
    wait_members(&[&a, &b, &c], &["a", "b", "c"]);
    let fast = Duration::from_millis(1000);

    // Frozen: once it has missed a heartbeat it is not waited on.
    let mut on_c = c.connect();
    on_c.hello("thaw");
    c.signal("STOP");
    wait_stopped(&c);
    assert_eventually!(
        get_ok(&a, "/api/v1/cluster")["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"] == "c" && n["last_seen_seconds"].as_f64() > Some(1.6)),
        SETTLE
    );
    let (mut on_a, took) = timed_hello(&a, "thaw");
    assert!(took < fast, "a login waited {took:?} on a frozen node");
    c.signal("CONT");
    // Two holders until c is heard again; then c's older login goes.
    on_c.expect("KICK replaced");
    expect_quiet(&mut on_a, Duration::from_millis(300));
    assert_eq!(open_holders(&a, "thaw"), 1);

    // Killed: still listed for a few seconds, but gone from NATS at once.
    let mut on_c = c.connect();
    let moved_id = on_c.hello("moved");
    let mut lost = c.connect();
    lost.hello("lost");
    assert_eventually!(
        get_ok(&a, "/api/v1/cluster")["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"] == "c" && n["last_seen_seconds"].as_f64() < Some(1.0)),
        SETTLE,
        "c is not heard again after it woke"
    );
    c.signal("KILL");
    let _ = c.wait_exit(Duration::from_secs(5));
    let (_again, took) = timed_hello(&a, "moved");
    assert!(took < fast, "a login waited {took:?} on a killed node");
    // Nobody is there to hold its connections or users: 404, not 504,
    // and at once.
    let started = Instant::now();
    let r = api(
        &a,
        "POST",
        &format!("/api/v1/connections/{moved_id}/send"),
        Some(&message("x")),
    );
    assert_error(&r, 404, "not_found");
    let r = api(&a, "POST", "/api/v1/users/lost/send", Some(&message("x")));
    assert_error(&r, 404, "not_found");
    let took = started.elapsed();
    assert!(took < fast, "the 404s took {took:?}");
    // Nor does an admin publish or broadcast wait on it.
    for path in ["/api/v1/topics/t/publish", "/api/v1/broadcast"] {
        let started = Instant::now();
        let r = api(&a, "POST", path, Some(&message("all")));
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["nodes"], json!({"answered": 2, "expected": 3}));
        assert!(took < fast, "{path} waited {took:?} on a killed node");
    }
    assert!(
        get_ok(&a, "/api/v1/cluster")["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"] == "c"),
        "the killed node was already gone: the test proved nothing"
    );
    // b still answers, and is waited on: a login of b's user takes it over.
    let mut on_b = b.connect();
    on_b.hello("stay");
    let (_taken, took) = timed_hello(&a, "stay");
    assert!(took < fast, "{took:?}");
    on_b.expect("KICK replaced");
}
