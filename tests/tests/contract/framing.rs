//! Contract section 2, frames: binary payloads round-trip byte for byte;
//! `--max-frame-bytes` counts a frame's own bytes, a frame at the limit is
//! served and one byte over is refused with `ERR frame-too-large` and a
//! graceful close, as soon as the limit is known to be passed; frames split
//! across many writes (one byte at a time too) decode the same.

use crate::common::{msg, publish, start};
use gateway_tests::writer::BackgroundWriter;
use gateway_tests::{Event, FRAME_TIMEOUT, Framing};
use std::time::Duration;

fn all_bytes(framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Length => (0..=255u8).collect(),
        // Under lines a payload cannot hold `\n`, and a final `\r` is framing.
        Framing::Lines => (0..=255u8).filter(|&b| b != b'\n').collect(),
    }
}

#[test]
fn binary_payloads_round_trip_exactly() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let payload = all_bytes(framing);
        let mut sub = gw.connect();
        sub.sub("bin");
        let mut publisher = gw.connect();
        publisher.send(publish("bin", &payload));
        sub.expect(msg("bin", &payload));
        let mut twice = payload.clone();
        twice.extend_from_slice(&payload);
        publisher.send(publish("bin", &twice));
        sub.expect(msg("bin", &twice));

        let mut ping = b"PING ".to_vec();
        ping.extend_from_slice(&payload);
        let mut pong = b"PONG ".to_vec();
        pong.extend_from_slice(&payload);
        publisher.check(&ping, &pong);
        sub.sync();
    }
}

fn frame_of_len(len: usize) -> Vec<u8> {
    let mut frame = b"PING ".to_vec();
    frame.resize(len, b'x');
    frame
}

fn pong_for(frame: &[u8]) -> Vec<u8> {
    let mut pong = b"PONG".to_vec();
    pong.extend_from_slice(&frame[4..]);
    pong
}

#[test]
fn a_frame_at_the_limit_is_served() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--max-frame-bytes", "64"]);
        let mut c = gw.connect();
        let at_limit = frame_of_len(64);
        c.check(&at_limit, pong_for(&at_limit));
        c.sub("t");
        let mut publish_at_limit = b"PUB t ".to_vec();
        publish_at_limit.resize(64, b'p');
        c.send(&publish_at_limit);
        c.expect(msg("t", &publish_at_limit[6..]));
        c.sync();
    }
}

#[test]
fn under_lines_the_dropped_cr_does_not_count() {
    let gw = start(Framing::Lines, &["--max-frame-bytes", "64"]);
    let mut c = gw.connect();
    let at_limit = frame_of_len(64);
    let mut wire = at_limit.clone();
    wire.extend_from_slice(b"\r\n");
    c.send_raw(&wire);
    c.expect(pong_for(&at_limit));
    c.sync();
}

#[test]
fn one_byte_over_the_limit_is_refused_then_closed() {
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--max-frame-bytes", "64", "--close-timeout", "3"],
        );
        let mut c = gw.connect();
        c.check("PING before", "PONG before");
        let mut wire = framing.encode(&frame_of_len(65));
        wire.extend_from_slice(&framing.encode(b"PING after"));
        c.send_raw(&wire);
        c.expect("ERR frame-too-large");
        c.expect_eof();
        drop(c);
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "frame_too_large")],
            1.0,
        );
    }
}

#[test]
fn lines_over_the_limit_without_newline_is_refused_at_once() {
    let gw = start(Framing::Lines, &["--max-frame-bytes", "64"]);
    let mut c = gw.connect();
    c.send_raw(&[b'x'; 65]);
    c.expect("ERR frame-too-large");
    c.expect_eof();
}

#[test]
fn length_prefix_over_the_limit_is_refused_before_the_body() {
    for prefix in [65u32, 1 << 20, u32::MAX] {
        let gw = start(Framing::Length, &["--max-frame-bytes", "64"]);
        let mut c = gw.connect();
        c.send_raw(&prefix.to_be_bytes());
        c.expect("ERR frame-too-large");
        c.expect_eof();
    }
}

#[test]
fn a_client_streaming_an_endless_line_gets_err_then_eof_not_a_reset() {
    let gw = start(
        Framing::Lines,
        &["--max-frame-bytes", "1024", "--close-timeout", "5"],
    );
    let mut c = gw.connect();
    // An endless line: 16 KiB chunks without a newline, 4 MiB at most.
    let mut chunks = 256;
    let writer = BackgroundWriter::start(c.writer(), Duration::from_secs(10), move || {
        chunks -= 1;
        (chunks > 0).then(|| vec![b'x'; 16 * 1024])
    });
    let first = c.next_event(FRAME_TIMEOUT);
    let second = c.next_event(FRAME_TIMEOUT);
    let written = writer.stop();
    assert_eq!(
        first,
        Event::Frame(b"ERR frame-too-large".to_vec()),
        "got {}",
        first.describe()
    );
    assert_eq!(second, Event::Eof, "after the ERR: {}", second.describe());
    assert!(
        written.is_ok(),
        "the client's writes failed while the server lingered: {written:?}"
    );
}

#[test]
fn frames_split_one_byte_at_a_time() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        let wire = framing.encode_all([
            &b"HELLO splitter"[..],
            b"SUB t",
            b"PUB t hello world",
            b"",
            b"PING x",
        ]);
        c.send_bytewise(&wire);
        let id = c.recv();
        assert!(
            id.starts_with(b"OK HELLO "),
            "got {}",
            gateway_tests::show(&id)
        );
        c.expect("OK SUB t");
        c.expect("MSG t hello world");
        c.expect("ERR unknown-command");
        c.expect("PONG x");
        c.sync();
    }
}

#[test]
fn frames_split_across_uneven_writes() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        let frames: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("PING {i:width$}", width = i % 17).into_bytes())
            .collect();
        let wire = framing.encode_all(&frames);
        let sizes = [1usize, 2, 3, 5, 7, 11, 13, 4096, 4];
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= wire.len() {
                break;
            }
            let end = (at + size).min(wire.len());
            c.send_raw(&wire[at..end]);
            at = end;
        }
        for frame in &frames {
            c.expect(pong_for(frame));
        }
        c.sync();
    }
}

#[test]
fn a_slowly_arriving_frame_is_one_frame() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        let wire = framing.encode(b"PING slow");
        let (head, tail) = wire.split_at(wire.len() / 2);
        c.send_raw(head);
        assert_eq!(
            c.next_event(Duration::from_millis(300)),
            Event::Timeout,
            "half a frame must not be answered"
        );
        c.send_raw(tail);
        c.expect("PONG slow");
    }
}
