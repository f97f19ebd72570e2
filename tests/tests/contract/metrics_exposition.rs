//! Contract section 8 (and the health endpoints of section 7): `/metrics`
//! exports every family with `# HELP` and `# TYPE`, every listed label value
//! from start-up at 0, the process collector, and counts frames and bytes on
//! the wire exactly. `/healthz` and `/readyz` answer 200 while serving.

use crate::common::start;
use gateway_tests::metrics::CLOSE_REASONS;
use gateway_tests::{Framing, Metrics};

const COUNTERS: [&str; 11] = [
    "gateway_connections_accepted_total",
    "gateway_frames_received_total",
    "gateway_frames_sent_total",
    "gateway_bytes_received_total",
    "gateway_bytes_sent_total",
    "gateway_pool_reused_total",
    "gateway_pool_allocated_total",
    "gateway_pool_discarded_total",
    "gateway_close_flush_timeouts_total",
    "gateway_connections_rejected_total",
    "gateway_connections_closed_total",
];

const LABELLED: [(&str, &[&str]); 3] = [
    (
        "gateway_connections_rejected_total",
        &["full", "draining", "per_ip"],
    ),
    ("gateway_connections_closed_total", &CLOSE_REASONS),
    ("gateway_writes_dropped_total", &["closed", "slow"]),
];

const GAUGES: [&str; 4] = [
    "gateway_connections_active",
    "gateway_pool_idle",
    "gateway_topics",
    "gateway_subscriptions",
];

#[track_caller]
fn assert_family(m: &Metrics, name: &str, kind: &str) {
    assert!(m.help.contains_key(name), "no `# HELP {name}` line");
    assert_eq!(
        m.types.get(name).map(String::as_str),
        Some(kind),
        "`# TYPE {name}`"
    );
}

#[test]
fn every_family_is_exported_from_start_up() {
    let gw = start(Framing::Lines, &["--pool-max-idle", "16"]);
    let m = gw.metrics();
    for name in COUNTERS {
        assert_family(&m, name, "counter");
    }
    assert_family(&m, "gateway_writes_dropped_total", "counter");
    for name in GAUGES {
        assert_family(&m, name, "gauge");
    }
    assert_family(&m, "gateway_close_flush_duration_seconds", "histogram");

    for name in COUNTERS.iter().take(9) {
        assert_eq!(m.value(name, &[]), 0.0, "{name} at start-up");
    }
    for (name, reasons) in LABELLED {
        for reason in reasons {
            assert_eq!(
                m.value(name, &[("reason", reason)]),
                0.0,
                "{name}{{reason=\"{reason}\"}} at start-up"
            );
        }
    }
    for name in [
        "gateway_connections_active",
        "gateway_topics",
        "gateway_subscriptions",
    ] {
        assert_eq!(m.value(name, &[]), 0.0, "{name} at start-up");
    }
    let idle = m.value("gateway_pool_idle", &[]);
    assert!(
        (0.0..=16.0).contains(&idle),
        "gateway_pool_idle {idle} outside 0..=--pool-max-idle"
    );
    assert_eq!(
        m.value("gateway_close_flush_duration_seconds_count", &[]),
        0.0
    );
    assert_eq!(
        m.value(
            "gateway_close_flush_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        0.0
    );
    m.value("gateway_close_flush_duration_seconds_sum", &[]);

    for name in ["process_resident_memory_bytes", "process_open_fds"] {
        assert!(
            m.value(name, &[]) > 0.0,
            "{name} from the process collector"
        );
        assert_family(&m, name, "gauge");
    }
    for family in m.types.keys() {
        assert!(
            m.help.contains_key(family),
            "family {family} has # TYPE but no # HELP"
        );
    }
}

#[test]
fn health_endpoints_answer_while_serving() {
    let gw = start(Framing::Lines, &[]);
    let health = gw.http_get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(gw.http_get("/readyz").status, 200);
    let metrics = gw.http_get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "/metrics content type: {:?}",
        metrics.header("content-type")
    );
}

#[test]
fn frames_and_bytes_are_counted_on_the_wire() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        c.check("PING", "PONG");
        c.quit();
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "quit")],
            1.0,
        );
        let overhead = match framing {
            Framing::Lines => 1.0,
            Framing::Length => 4.0,
        };
        let m = gw.metrics();
        assert_eq!(
            m.value("gateway_frames_received_total", &[]),
            2.0,
            "{framing:?}: PING, QUIT"
        );
        assert_eq!(
            m.value("gateway_frames_sent_total", &[]),
            2.0,
            "{framing:?}: PONG, BYE"
        );
        assert_eq!(
            m.value("gateway_bytes_received_total", &[]),
            8.0 + 2.0 * overhead,
            "{framing:?}"
        );
        assert_eq!(
            m.value("gateway_bytes_sent_total", &[]),
            7.0 + 2.0 * overhead,
            "{framing:?}"
        );
        assert_eq!(m.value("gateway_connections_accepted_total", &[]), 1.0);
        assert_eq!(
            m.value("gateway_close_flush_duration_seconds_count", &[]),
            1.0
        );
        gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
    }
}

#[test]
fn each_close_counts_once_under_what_started_it() {
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--max-frame-bytes", "1024", "--close-timeout", "5"],
        );
        // QUIT, then a reset during the linger: still `quit`.
        let mut quitter = gw.connect();
        quitter.check("PING", "PONG");
        quitter.check("QUIT", "BYE");
        quitter.reset();
        // Replaced, then the client's EOF: still `replaced`.
        let mut old = gw.connect();
        old.hello("twice");
        let mut new = gw.connect();
        new.hello("twice");
        old.expect("KICK replaced");
        old.expect_eof();
        old.shutdown_write();
        drop(old);
        // The client's EOF first: `client`.
        let mut leaver = gw.connect();
        leaver.check("PING", "PONG");
        leaver.shutdown_write();
        leaver.expect_eof();
        drop(leaver);
        // Too large, then a reset: `frame_too_large`.
        let mut big = gw.connect();
        big.send_raw(&framing.encode(&[b'x'; 2000]));
        big.expect("ERR frame-too-large");
        big.expect_eof();
        big.reset();

        gw.wait_metric_eq("gateway_connections_active", &[], 1.0);
        let m = gw.metrics();
        for (reason, count) in [
            ("quit", 1.0),
            ("replaced", 1.0),
            ("client", 1.0),
            ("frame_too_large", 1.0),
            ("admin", 0.0),
            ("idle", 0.0),
            ("slow", 0.0),
            ("shutdown", 0.0),
            ("error", 0.0),
        ] {
            assert_eq!(
                m.value("gateway_connections_closed_total", &[("reason", reason)]),
                count,
                "{framing:?}: closed_total{{reason=\"{reason}\"}}"
            );
        }
        assert_eq!(m.value("gateway_connections_accepted_total", &[]), 5.0);
        new.sync();
    }
}

#[test]
fn topic_and_subscription_gauges_follow_subscriptions() {
    let gw = start(Framing::Lines, &[]);
    let mut a = gw.connect();
    let mut b = gw.connect();
    a.sub("one");
    a.sub("two");
    b.sub("one");
    b.sub("one");
    gw.wait_metric_eq("gateway_topics", &[], 2.0);
    gw.wait_metric_eq("gateway_subscriptions", &[], 3.0);
    a.check("UNSUB two", "OK UNSUB two");
    gw.wait_metric_eq("gateway_topics", &[], 1.0);
    gw.wait_metric_eq("gateway_subscriptions", &[], 2.0);
    // A publish creates no topic.
    a.send("PUB nobody-here x");
    a.sync();
    assert_eq!(gw.metric("gateway_topics", &[]), 1.0);
    a.quit();
    gw.wait_metric_eq("gateway_subscriptions", &[], 1.0);
    b.quit();
    gw.wait_metric_eq("gateway_topics", &[], 0.0);
    gw.wait_metric_eq("gateway_subscriptions", &[], 0.0);
}
