//! Contract section 8, values: each test starts its own gateway, makes a
//! known amount of traffic and holds the counters and gauges to exactly
//! what it made: closes under every reason a client or operator can cause
//! (and `rejected{reason="full"}`), pool reuse over many sequential
//! connections and none at `--pool-max-idle 0`, one close-flush observation
//! per graceful close, frames and bytes of a scripted conversation under both
//! framings, and the topic gauges through every way a subscription ends.
//!
//! Values are polled until they reach what is expected (within a bound) and
//! then read again after a round trip, so that overshooting fails too.
//!
//! Not covered here: the slow-consumer counters (`slow`), held to exact
//! closes in `slow`; and `gateway_writes_dropped_total{reason="closed"}`:
//! the gateway stops routing to a connection as soon as its close is asked
//! for and answers 409 to a send behind a close, so frames can only be
//! queued after a close by losing a race, which no black-box test can make
//! happen on purpose.

use crate::common::{msg, publish, start};
use gateway_tests::http;
use gateway_tests::metrics::CLOSE_REASONS;
use gateway_tests::{Client, Framing, Gateway, Metrics};
use std::time::Duration;

const CLOSED: &str = "gateway_connections_closed_total";
const ACTIVE: &str = "gateway_connections_active";
const ACCEPTED: &str = "gateway_connections_accepted_total";
const FLUSH_COUNT: &str = "gateway_close_flush_duration_seconds_count";
const FLUSH_BUCKET: &str = "gateway_close_flush_duration_seconds_bucket";

/// Asks the admin API to close connection `id`, asserting a 202.
#[track_caller]
fn admin_close(gw: &Gateway, id: &str) {
    let path = format!("/api/v1/connections/{id}/close");
    let r = http::request(gw.admin_addr(), "POST", &path, &[], None);
    assert_eq!(r.status, 202, "close {id}: {}", r.text());
}

/// Waits until `closed_total{reason}` is `n`.
#[track_caller]
fn wait_closed(gw: &Gateway, reason: &str, n: usize) {
    gw.wait_metric_eq(CLOSED, &[("reason", reason)], n as f64);
}

/// Asserts every `closed_total` reason at once, naming each in a failure.
#[track_caller]
fn assert_closed(m: &Metrics, expected: &[(&str, usize)]) {
    let actual: Vec<(&str, f64)> = CLOSE_REASONS
        .iter()
        .map(|r| (*r, m.value(CLOSED, &[("reason", r)])))
        .collect();
    let wanted: Vec<(&str, f64)> = CLOSE_REASONS
        .iter()
        .map(|r| {
            let n = expected
                .iter()
                .find(|(reason, _)| reason == r)
                .map_or(0, |(_, n)| *n);
            (*r, n as f64)
        })
        .collect();
    assert_eq!(actual, wanted, "gateway_connections_closed_total by reason");
}

/// A client that has been served (its `PING` answered), so it is accepted.
fn served(gw: &Gateway) -> Client {
    let mut c = gw.connect();
    c.sync();
    c
}

/// After a round trip on one more connection, holds the counters to their
/// marks, so that overshooting fails too: closes by reason exactly,
/// `accepted` (the fresh one included), that one active, `rejected` only
/// under `full` and `full` times, no close cut off by the close timeout.
/// Then closes the fresh one.
#[track_caller]
fn assert_settled(gw: &Gateway, closed: &[(&str, usize)], accepted: usize, full: usize) {
    let mut last = served(gw);
    last.sync();
    let m = gw.metrics();
    assert_closed(&m, closed);
    assert_eq!(m.value(ACCEPTED, &[]), accepted as f64, "accepted");
    assert_eq!(m.value(ACTIVE, &[]), 1.0, "active: the fresh connection");
    assert_eq!(
        m.value("gateway_connections_rejected_total", &[("reason", "full")]),
        full as f64
    );
    assert_eq!(
        m.value(
            "gateway_connections_rejected_total",
            &[("reason", "draining")]
        ),
        0.0
    );
    assert_eq!(m.value("gateway_close_flush_timeouts_total", &[]), 0.0);
    last.quit();
    gw.wait_metric_eq(ACTIVE, &[], 0.0);
}

/// Asserts the close-flush histogram counted `n` observations since `base`.
#[track_caller]
fn assert_flushes_since(gw: &Gateway, base: f64, n: usize) {
    let m = gw.metrics();
    assert_eq!(
        m.value(FLUSH_COUNT, &[]) - base,
        n as f64,
        "close-flush observations: one per graceful close"
    );
}

#[test]
fn a_full_gateway_counts_its_refusal_apart_from_closes() {
    let gw = start(Framing::Lines, &["--max-connections", "3"]);

    // Three served, the fourth refused and never accepted.
    let quitters: Vec<Client> = (0..3).map(|_| served(&gw)).collect();
    let mut refused = gw.connect();
    refused.expect("ERR server-full");
    refused.expect_eof();
    drop(refused);
    let m = gw.metrics();
    // Whether refusing one is an observation is not for this test to say.
    let flush_base = m.value(FLUSH_COUNT, &[]);
    assert_eq!(m.value(ACCEPTED, &[]), 3.0, "accepted while full");
    assert_eq!(m.value(ACTIVE, &[]), 3.0, "active while full");
    assert_eq!(
        m.value("gateway_connections_rejected_total", &[("reason", "full")]),
        1.0
    );
    for c in quitters {
        c.quit();
    }
    wait_closed(&gw, "quit", 3);
    assert_flushes_since(&gw, flush_base, 3);
    assert_settled(&gw, &[("quit", 3)], 4, 1);
}

#[test]
fn replaced_logins_count_once_each() {
    let gw = start(Framing::Lines, &[]);
    for user in ["user-a", "user-b"] {
        let mut old = gw.connect();
        old.hello(user);
        let mut new = gw.connect();
        new.hello(user);
        old.expect("KICK replaced");
        old.expect_eof();
        drop(old);
        new.quit();
    }
    wait_closed(&gw, "replaced", 2);
    wait_closed(&gw, "quit", 2);
    assert_flushes_since(&gw, 0.0, 4);
    assert_settled(&gw, &[("replaced", 2), ("quit", 2)], 5, 0);
}

#[test]
fn an_eof_counts_as_client_and_an_admin_close_as_admin() {
    let gw = start(Framing::Lines, &[]);
    let mut ends = gw.connect();
    ends.hello("user-a");
    ends.check("PING a", "PONG a");
    ends.shutdown_write();
    ends.expect_eof();
    drop(ends);
    let mut kicked = gw.connect();
    let id = kicked.hello("user-b");
    admin_close(&gw, &id);
    kicked.expect("KICK admin");
    kicked.expect_eof();
    drop(kicked);
    wait_closed(&gw, "client", 1);
    wait_closed(&gw, "admin", 1);
    assert_flushes_since(&gw, 0.0, 2);
    assert_settled(&gw, &[("client", 1), ("admin", 1)], 3, 0);
}

#[test]
fn a_frame_over_the_limit_counts_as_frame_too_large() {
    let gw = start(
        Framing::Lines,
        &["--max-frame-bytes", "64", "--close-timeout", "5"],
    );
    let mut big = gw.connect();
    big.send([b'x'; 65]);
    big.expect("ERR frame-too-large");
    big.expect_eof();
    drop(big);
    wait_closed(&gw, "frame_too_large", 1);
    assert_flushes_since(&gw, 0.0, 1);
    assert_settled(&gw, &[("frame_too_large", 1)], 2, 0);
}

#[test]
fn silence_past_the_idle_timeout_counts_as_idle() {
    let gw = start(Framing::Lines, &["--idle-timeout", "2"]);
    let mut silent = gw.connect();
    let kick = silent.next_event(Duration::from_secs(5));
    assert_eq!(
        kick,
        gateway_tests::Event::Frame(b"KICK idle".to_vec()),
        "got {}",
        kick.describe()
    );
    silent.expect_eof();
    drop(silent);
    wait_closed(&gw, "idle", 1);
    gw.wait_metric_eq(ACTIVE, &[], 0.0);
    assert_flushes_since(&gw, 0.0, 1);
    assert_settled(&gw, &[("idle", 1)], 2, 0);
}

#[test]
fn a_reset_from_the_client_counts_as_client() {
    let gw = start(Framing::Lines, &[]);
    let mut resetter = served(&gw);
    resetter.check("SUB reset-topic", "OK SUB reset-topic");
    resetter.reset();
    wait_closed(&gw, "client", 1);
    gw.wait_metric_eq(ACTIVE, &[], 0.0);
    assert_settled(&gw, &[("client", 1)], 2, 0);
}

#[test]
fn sequential_connections_reuse_pooled_states() {
    const CYCLES: usize = 200;
    let gw = start(Framing::Lines, &["--workers", "1", "--pool-max-idle", "4"]);
    for _ in 0..CYCLES {
        gw.connect().quit();
    }
    wait_closed(&gw, "quit", CYCLES);
    gw.wait_metric_eq(ACTIVE, &[], 0.0);
    let m = gw.metrics();
    let reused = m.value("gateway_pool_reused_total", &[]);
    let allocated = m.value("gateway_pool_allocated_total", &[]);
    assert_eq!(m.value(ACCEPTED, &[]), CYCLES as f64);
    assert_eq!(
        reused + allocated,
        CYCLES as f64,
        "each accept is reused ({reused}) or allocated ({allocated}) once"
    );
    assert!(
        reused >= (CYCLES - 10) as f64,
        "{CYCLES} sequential connections: only {reused} reused a state ({allocated} allocated)"
    );
    // Every state came back once nothing is open: kept (idle, at most
    // --pool-max-idle of them) or dropped (discarded).
    let mut last = None;
    let settled = gateway_tests::poll::eventually(Duration::from_secs(5), || {
        let m = gw.metrics();
        let idle = m.value("gateway_pool_idle", &[]);
        let discarded = m.value("gateway_pool_discarded_total", &[]);
        last = Some((idle, discarded));
        (idle + discarded == allocated).then_some(idle)
    });
    let idle = settled.unwrap_or_else(|| {
        panic!("allocated {allocated} states; (idle, discarded) stayed at {last:?}")
    });
    assert!(
        (1.0..=4.0).contains(&idle),
        "{idle} states idle, outside 1..=--pool-max-idle 4"
    );
}

#[test]
fn no_state_is_reused_at_pool_max_idle_zero() {
    const CYCLES: usize = 30;
    let gw = start(Framing::Lines, &["--workers", "1", "--pool-max-idle", "0"]);
    for _ in 0..CYCLES {
        gw.connect().quit();
    }
    wait_closed(&gw, "quit", CYCLES);
    gw.wait_metric_eq("gateway_pool_discarded_total", &[], CYCLES as f64);
    served(&gw).quit();
    wait_closed(&gw, "quit", CYCLES + 1);
    gw.wait_metric_eq("gateway_pool_discarded_total", &[], (CYCLES + 1) as f64);
    let m = gw.metrics();
    assert_eq!(m.value("gateway_pool_reused_total", &[]), 0.0);
    assert_eq!(
        m.value("gateway_pool_allocated_total", &[]),
        (CYCLES + 1) as f64
    );
    assert_eq!(m.value("gateway_pool_idle", &[]), 0.0);
}

/// Asserts the flush histogram is consistent and holds `n` observations.
#[track_caller]
fn assert_flush_histogram(m: &Metrics, n: usize, close_timeout: f64) {
    assert_eq!(m.value(FLUSH_COUNT, &[]), n as f64, "histogram count");
    assert_eq!(
        m.value(FLUSH_BUCKET, &[("le", "+Inf")]),
        n as f64,
        "the +Inf bucket equals the count"
    );
    let mut buckets: Vec<(f64, f64)> = m
        .samples
        .iter()
        .filter(|s| s.name == FLUSH_BUCKET)
        .map(|s| {
            let le = &s.labels.iter().find(|(k, _)| k == "le").expect("le").1;
            let bound = match le.as_str() {
                "+Inf" => f64::INFINITY,
                other => other.parse().expect("a numeric le"),
            };
            (bound, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in buckets.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "cumulative buckets decrease: {buckets:?}"
        );
    }
    let sum = m.value("gateway_close_flush_duration_seconds_sum", &[]);
    assert!(
        (0.0..=n as f64 * close_timeout).contains(&sum),
        "sum {sum}s of {n} closes bounded by --close-timeout {close_timeout}s"
    );
}

#[test]
fn each_graceful_close_is_one_flush_observation() {
    const N: usize = 5;
    for framing in Framing::ALL {
        let gw = start(framing, &["--close-timeout", "5"]);
        let mut witness = gw.connect();
        witness.sync();
        assert_flush_histogram(&gw.metrics(), 0, 5.0);

        // N admin closes, each with something queued before the KICK.
        for i in 0..N {
            let mut c = gw.connect();
            let id = c.hello(&format!("closed-{i}"));
            c.sub("before");
            witness.send(publish("before", b"queued"));
            witness.sync();
            admin_close(&gw, &id);
            c.expect(msg("before", b"queued"));
            c.expect("KICK admin");
            c.expect_eof();
        }
        gw.wait_metric_eq(FLUSH_COUNT, &[], N as f64);
        witness.sync();
        assert_flush_histogram(&gw.metrics(), N, 5.0);

        // N replaced logins.
        let mut holder = gw.connect();
        holder.hello("seat");
        for _ in 0..N {
            let mut next = gw.connect();
            next.hello("seat");
            holder.expect("KICK replaced");
            holder.expect_eof();
            holder = next;
        }
        gw.wait_metric_eq(FLUSH_COUNT, &[], (2 * N) as f64);
        witness.sync();
        holder.sync();
        let m = gw.metrics();
        assert_flush_histogram(&m, 2 * N, 5.0);
        assert_eq!(
            m.value(CLOSED, &[("reason", "admin")]) + m.value(CLOSED, &[("reason", "replaced")]),
            (2 * N) as f64,
            "{framing:?}: closes counted once the clients closed"
        );
    }
}

/// A client's side of a scripted conversation: what it wrote and read on
/// the wire.
#[derive(Default)]
struct Tally {
    frames_sent: usize,
    bytes_sent: usize,
    frames_read: usize,
    bytes_read: usize,
}

impl Tally {
    fn send(&mut self, c: &mut Client, frame: &[u8]) {
        let wire = c.framing().encode(frame);
        self.send_raw(c, &wire, 1);
    }

    fn send_raw(&mut self, c: &mut Client, wire: &[u8], frames: usize) {
        c.send_raw(wire);
        self.frames_sent += frames;
        self.bytes_sent += wire.len();
    }

    #[track_caller]
    fn expect(&mut self, c: &mut Client, frame: &[u8]) {
        c.expect(frame);
        self.frames_read += 1;
        self.bytes_read += c.framing().encode(frame).len();
    }

    #[track_caller]
    fn expect_hello(&mut self, c: &mut Client) {
        let frame = c.recv();
        assert!(
            frame.starts_with(b"OK HELLO "),
            "`{}`",
            gateway_tests::show(&frame)
        );
        self.frames_read += 1;
        self.bytes_read += c.framing().encode(&frame).len();
    }
}

#[test]
fn frames_and_bytes_match_what_the_clients_wrote_and_read() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut sub = gw.connect();
        let mut publ = gw.connect();
        let (mut s, mut p) = (Tally::default(), Tally::default());

        s.send(&mut sub, b"SUB bin");
        s.expect(&mut sub, b"OK SUB bin");
        p.send(&mut publ, b"HELLO counted");
        p.expect_hello(&mut publ);

        // Payloads of every byte value the framing allows, several sizes.
        let binary: Vec<u8> = (0..=255u8)
            .filter(|b| framing == Framing::Length || *b != b'\n')
            .cycle()
            .take(3000)
            .collect();
        for size in [0, 1, 100, 3000] {
            p.send(&mut publ, &publish("bin", &binary[..size]));
        }
        // Pipelined in one write: a PING with a payload, an unknown verb,
        // an empty frame.
        let wire = framing.encode_all([&b"PING pipelined"[..], b"NOPE x", b""]);
        p.send_raw(&mut publ, &wire, 3);
        p.expect(&mut publ, b"PONG pipelined");
        p.expect(&mut publ, b"ERR unknown-command");
        p.expect(&mut publ, b"ERR unknown-command");
        if framing == Framing::Lines {
            // The `\r` is dropped from the frame but was on the wire.
            p.send_raw(&mut publ, b"PING cr\r\n", 1);
            p.expect(&mut publ, b"PONG cr");
        }
        for size in [0, 1, 100, 3000] {
            s.expect(&mut sub, &msg("bin", &binary[..size]));
        }
        for (c, t) in [(&mut sub, &mut s), (&mut publ, &mut p)] {
            t.send(c, b"QUIT");
            t.expect(c, b"BYE");
            c.expect_eof();
        }
        drop((sub, publ));
        wait_closed(&gw, "quit", 2);
        gw.wait_metric_eq(ACTIVE, &[], 0.0);

        let m = gw.metrics();
        let got = [
            m.value("gateway_frames_received_total", &[]),
            m.value("gateway_bytes_received_total", &[]),
            m.value("gateway_frames_sent_total", &[]),
            m.value("gateway_bytes_sent_total", &[]),
        ];
        let want = [
            s.frames_sent + p.frames_sent,
            s.bytes_sent + p.bytes_sent,
            s.frames_read + p.frames_read,
            s.bytes_read + p.bytes_read,
        ]
        .map(|n| n as f64);
        assert_eq!(
            got, want,
            "{framing:?}: [frames received, bytes received, frames sent, bytes sent]"
        );
    }
}

#[test]
fn topic_gauges_follow_every_way_a_subscription_ends() {
    let gw = start(Framing::Lines, &["--max-subscriptions", "3"]);
    let gauges = |topics: f64, subscriptions: f64| {
        gw.wait_metric_eq("gateway_topics", &[], topics);
        gw.wait_metric_eq("gateway_subscriptions", &[], subscriptions);
    };

    let mut a = gw.connect();
    let id_a = a.hello("alpha");
    for topic in ["t1", "t2", "t3"] {
        a.sub(topic);
    }
    // Refused past the limit, and a repeat adds nothing.
    a.check("SUB t4", "ERR too-many-subscriptions");
    a.sub("t1");
    a.check("UNSUB never", "OK UNSUB never");
    gauges(3.0, 3.0);

    let mut b = gw.connect();
    b.hello("bravo");
    b.sub("t1");
    b.sub("t5");
    let mut c = gw.connect();
    c.sub("t5");
    c.sub("t6");
    gauges(5.0, 7.0);

    // UNSUB.
    c.check("UNSUB t6", "OK UNSUB t6");
    gauges(4.0, 6.0);
    // A replaced login drops b's subscriptions, not the new holder's.
    let mut b2 = gw.connect();
    b2.hello("bravo");
    b.expect("KICK replaced");
    b.expect_eof();
    drop(b);
    gauges(4.0, 4.0);
    // A reset.
    c.reset();
    gauges(3.0, 3.0);
    // An admin close.
    admin_close(&gw, &id_a);
    a.expect("KICK admin");
    a.expect_eof();
    drop(a);
    gauges(0.0, 0.0);
    // And a plain QUIT.
    b2.sub("t7");
    gauges(1.0, 1.0);
    b2.quit();
    gauges(0.0, 0.0);
    gw.wait_metric_eq(ACTIVE, &[], 0.0);
}
