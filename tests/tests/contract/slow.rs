//! Contract section 5, slow consumers: a client that stops reading while its
//! queued output passes `--max-pending-bytes` is closed at once, its queue is
//! dropped and counted (`gateway_writes_dropped_total{reason="slow"}`,
//! `gateway_connections_closed_total{reason="slow"}`), `KICK slow` comes only at
//! a frame boundary if at all, and the gateway's memory stays bounded while a
//! publisher floods the topic. The close does not linger: the connection is
//! `closing` for at most a second, then no longer listed.

use crate::common::{msg, numbered, publish, start};
use gateway_tests::http;
use gateway_tests::{Client, Event, Framing, Gateway, show};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 60_000;

/// Floods `topic` with `total` bytes of numbered publishes from a writer
/// thread, sampling the gateway's RSS meanwhile; returns the peak RSS.
fn flood(gw: &Gateway, publisher: &mut Client, topic: &str, total: usize) -> u64 {
    let count = total / PAYLOAD;
    let mut writer = publisher.writer();
    let framing = publisher.framing();
    let topic_owned = topic.to_string();
    let handle = std::thread::spawn(move || {
        for batch in 0..count.div_ceil(16) {
            let frames = (batch * 16..((batch + 1) * 16).min(count))
                .map(|i| publish(&topic_owned, &numbered(i, PAYLOAD)));
            writer.write_all(&framing.encode_all(frames))?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut peak = gw.vm_rss_bytes();
    while !handle.is_finished() {
        peak = peak.max(gw.vm_rss_bytes());
        std::thread::sleep(Duration::from_millis(25));
    }
    let written = handle.join().unwrap();
    assert!(
        written.is_ok(),
        "the publisher's writes stalled or failed: {written:?}"
    );
    publisher.sync();
    peak.max(gw.vm_rss_bytes())
}

/// Reads what the cut-off client still gets and checks it: whole numbered
/// MSGs from the first on, then at most `KICK slow`, then the end.
fn check_cut_off_stream(slow: &mut Client, topic: &str) -> usize {
    let (frames, end) = slow.read_to_end(Duration::from_secs(10));
    let mut kicked = false;
    let mut msgs = 0;
    for (i, frame) in frames.iter().enumerate() {
        assert!(!kicked, "frame after KICK slow: `{}`", show(frame));
        if frame == b"KICK slow" {
            kicked = true;
            continue;
        }
        assert!(
            *frame == msg(topic, &numbered(i, PAYLOAD)),
            "frame {i} should be whole MSG #{i}, got {} bytes `{}`",
            frame.len(),
            show(frame)
        );
        msgs += 1;
    }
    match end {
        Event::Eof | Event::Reset => {}
        Event::Truncated(_) if !kicked => {}
        other => panic!(
            "the slow consumer's stream should end after {msgs} MSGs, got {}",
            other.describe()
        ),
    }
    msgs
}

#[test]
fn a_slow_consumer_is_cut_off_and_memory_stays_bounded() {
    let framing = Framing::Length;
    let gw = start(
        framing,
        &["--max-pending-bytes", "262144", "--close-timeout", "2"],
    );
    let mut slow = Client::connect_small_rcvbuf(gw.client_addr(), framing, 4096);
    slow.sub("flood");
    let mut bystander = gw.connect();
    bystander.sub("quiet");
    let mut publisher = gw.connect();

    let started = Instant::now();
    let peak = flood(&gw, &mut publisher, "flood", 200 << 20);
    let took = started.elapsed();
    assert!(
        peak < 100 << 20,
        "gateway RSS peaked at {} MiB while 200 MiB went to a slow consumer",
        peak >> 20
    );
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "slow")],
        1.0,
    );
    let dropped = gw.metric("gateway_writes_dropped_total", &[("reason", "slow")]);
    assert!(
        dropped > 0.0,
        "a slow consumer's queue is dropped and counted, got {dropped}"
    );
    check_cut_off_stream(&mut slow, "flood");
    drop(slow);

    // Nobody else was touched.
    bystander.sync();
    publisher.sync();
    assert_eq!(
        gw.metric("gateway_connections_closed_total", &[("reason", "slow")]),
        1.0
    );
    assert!(took < Duration::from_secs(60), "flood took {took:?}");
}

#[test]
fn a_slow_consumer_under_lines_framing_is_cut_off() {
    let framing = Framing::Lines;
    let gw = start(
        framing,
        &["--max-pending-bytes", "131072", "--close-timeout", "2"],
    );
    let mut slow = Client::connect_small_rcvbuf(gw.client_addr(), framing, 4096);
    slow.sub("flood");
    let mut publisher = gw.connect();
    flood(&gw, &mut publisher, "flood", 24 << 20);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "slow")],
        1.0,
    );
    let dropped = gw.metric("gateway_writes_dropped_total", &[("reason", "slow")]);
    assert!(dropped > 0.0, "dropped frames counted, got {dropped}");
    check_cut_off_stream(&mut slow, "flood");
    drop(slow);
    // The topic lost its only subscriber.
    gw.wait_metric_eq("gateway_subscriptions", &[], 0.0);
}

/// What a listed connection answers to `GET /api/v1/connections/{id}`: 200
/// while listed, 404 once gone.
fn listed(gw: &Gateway, id: &str) -> bool {
    let r = http::get(gw.admin_addr(), &format!("/api/v1/connections/{id}"));
    match r.status {
        200 => true,
        404 => false,
        other => panic!("GET connection {id}: {other} {}", r.text()),
    }
}

#[test]
fn a_flooded_client_that_never_reads_is_unlisted_within_a_second() {
    // A long close timeout: a lingering close would keep it `closing`.
    let gw = start(
        Framing::Lines,
        &["--max-pending-bytes", "65536", "--close-timeout", "30"],
    );
    let mut slow = Client::connect_small_rcvbuf(gw.client_addr(), Framing::Lines, 4096);
    let id = slow.hello("flooded");
    let payload = "x".repeat(256 * 1024);
    let body = json!({ "data": payload }).to_string();
    let push = |gw: &Gateway| {
        http::request(
            gw.admin_addr(),
            "POST",
            "/api/v1/users/flooded/send",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    };

    // Push until the gateway stops taking pushes for it. The close starts
    // while the gateway handles a push it already answered 202, so it is
    // unlisted either by the next push (404) or within a second of the
    // first 409.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_accepted = Instant::now();
    let mut pushes = 0;
    loop {
        let sent = Instant::now();
        let r = push(&gw);
        match r.status {
            202 => {
                pushes += 1;
                last_accepted = sent;
                assert!(
                    Instant::now() < deadline,
                    "{pushes} pushes of 256 KiB to a client that never reads, still 202"
                );
            }
            409 => {
                let first_409 = Instant::now();
                while listed(&gw, &id) {
                    assert!(
                        first_409.elapsed() < Duration::from_secs(1),
                        "the slow consumer is still listed {:?} after its first 409",
                        first_409.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                break;
            }
            404 => {
                let closing_at_most = last_accepted.elapsed();
                assert!(
                    closing_at_most < Duration::from_secs(1),
                    "404 only {closing_at_most:?} after the last push it took"
                );
                break;
            }
            other => panic!("push {pushes}: {other} {}", r.text()),
        }
    }
    assert!(!listed(&gw, &id));
    assert_eq!(
        gw.metric("gateway_connections_closed_total", &[("reason", "slow")]),
        1.0
    );
    let dropped = gw.metric("gateway_writes_dropped_total", &[("reason", "slow")]);
    assert!(dropped > 0.0, "the dropped queue is counted, got {dropped}");
    assert_eq!(gw.metric("gateway_close_flush_timeouts_total", &[]), 0.0);

    // The socket is closed: the client reads whole PUSH frames, at most a
    // `KICK slow` after them, then the end, long before the close timeout.
    let push_frame = format!("PUSH {payload}").into_bytes();
    let (frames, end) = slow.read_to_end(Duration::from_secs(5));
    let mut kicked = false;
    for frame in &frames {
        assert!(!kicked, "frame after KICK slow: `{}`", show(frame));
        if frame == b"KICK slow" {
            kicked = true;
        } else {
            assert!(*frame == push_frame, "not a whole PUSH: `{}`", show(frame));
        }
    }
    match end {
        Event::Eof | Event::Reset => {}
        Event::Truncated(_) if !kicked => {}
        other => panic!(
            "the flooded client's stream should end after {} frames, got {}",
            frames.len(),
            other.describe()
        ),
    }
}
