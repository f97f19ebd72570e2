//! Contract section 5, slow consumers: a client that stops reading while its
//! queued output passes `--max-pending-bytes` is closed at once, its queue is
//! dropped and counted (`gateway_writes_dropped_total{reason="slow"}`,
//! `gateway_connections_closed_total{reason="slow"}`), `KICK slow` comes only at
//! a frame boundary if at all, and the gateway's memory stays bounded while a
//! publisher floods the topic.

use crate::common::{msg, numbered, publish, start};
use gateway_tests::{Client, Event, Framing, Gateway, show};
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
