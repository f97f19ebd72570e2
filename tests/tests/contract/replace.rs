//! Contract sections 3 and 5, replaced login: when a second connection says
//! `HELLO` with a user name already held, the first reads everything queued
//! for it, then `KICK replaced`, then EOF (never a reset), even while it is
//! still writing; the second gets its own `OK HELLO <id>`.

use crate::common::{msg, numbered, publish, seq_of, start};
use gateway_tests::writer::BackgroundWriter;
use gateway_tests::{Event, FRAME_TIMEOUT, Framing, show};
use std::time::{Duration, Instant};

#[test]
fn the_replaced_connection_reads_its_queue_then_kick_then_eof() {
    const COUNT: usize = 100;
    for framing in Framing::ALL {
        let gw = start(framing, &["--close-timeout", "5"]);
        let mut a = gw.connect();
        let id_a = a.hello("dup");
        a.sub("to-a");
        let mut publisher = gw.connect();
        publisher.send_all((0..COUNT).map(|i| publish("to-a", &numbered(i, 100))));
        publisher.sync();

        let mut b = gw.connect();
        let id_b = b.hello("dup");
        assert_ne!(id_a, id_b, "{framing:?}: the new login needs its own id");

        for i in 0..COUNT {
            a.expect(msg("to-a", &numbered(i, 100)));
        }
        a.expect("KICK replaced");
        a.expect_eof();
        drop(a);

        // The new holder of the name inherits nothing and is not kicked.
        publisher.send(publish("to-a", b"after"));
        publisher.sync();
        b.sync();
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "replaced")],
            1.0,
        );

        // The name moves again: now b is the one replaced.
        let mut c = gw.connect();
        c.hello("dup");
        b.expect("KICK replaced");
        b.expect_eof();
        c.sync();
    }
}

/// Reads until the connection ends, checking that the frames are PONGs and
/// numbered MSGs on `topic` in order; returns how many MSGs and the frame
/// and event that ended the stream.
fn read_through_kick(c: &mut gateway_tests::Client, topic: &str) -> (usize, Vec<Vec<u8>>, Event) {
    let mut next = 0usize;
    let mut tail = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left.min(FRAME_TIMEOUT)) {
            Event::Frame(frame) if frame.starts_with(b"PONG") && tail.is_empty() => {}
            Event::Frame(frame)
                if frame.starts_with(format!("MSG {topic} ").as_bytes()) && tail.is_empty() =>
            {
                let payload = &frame[topic.len() + 5..];
                assert_eq!(
                    seq_of(payload),
                    Some(next),
                    "MSG out of order: `{}`",
                    show(&frame)
                );
                next += 1;
            }
            Event::Frame(frame) => tail.push(frame),
            end => return (next, tail, end),
        }
    }
}

#[test]
fn a_client_still_writing_when_replaced_reads_up_to_the_kick_then_eof() {
    const COUNT: usize = 200;
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--close-timeout", "5", "--max-pending-bytes", "67108864"],
        );
        let mut a = gw.connect();
        a.hello("busy");
        a.sub("busy-topic");

        let pings = framing.encode_all((0..20).map(|_| "PING keep-going"));
        let writer = BackgroundWriter::start(a.writer(), Duration::from_secs(10), move || {
            std::thread::sleep(Duration::from_millis(1));
            Some(pings.clone())
        });

        let mut publisher = gw.connect();
        let mut b = gw.connect();
        let kicker = std::thread::spawn(move || {
            publisher.send_all((0..COUNT).map(|i| publish("busy-topic", &numbered(i, 64))));
            publisher.sync();
            b.hello("busy");
            b.sync();
        });

        let (msgs, tail, end) = read_through_kick(&mut a, "busy-topic");
        let written = writer.stop();
        kicker.join().unwrap();
        assert_eq!(
            msgs, COUNT,
            "{framing:?}: every MSG queued before the kick arrives"
        );
        let tail: Vec<String> = tail.iter().map(|f| show(f)).collect();
        assert_eq!(
            tail,
            vec!["KICK replaced".to_string()],
            "{framing:?}: the KICK is the last frame"
        );
        assert_eq!(
            end,
            Event::Eof,
            "{framing:?}: after the KICK: {}",
            end.describe()
        );
        assert!(
            written.is_ok(),
            "{framing:?}: writes failed while the server lingered: {written:?}"
        );
    }
}

#[test]
fn a_client_writing_junk_when_replaced_reads_up_to_the_kick_then_eof() {
    let framing = Framing::Lines;
    let gw = start(
        framing,
        &["--close-timeout", "5", "--max-pending-bytes", "67108864"],
    );
    let mut a = gw.connect();
    a.hello("junk");
    let mut junk = vec![b'#'; 512];
    junk.push(b'\n');
    let writer = BackgroundWriter::start(a.writer(), Duration::from_secs(10), move || {
        Some(junk.clone())
    });
    let mut b = gw.connect();
    b.hello("junk");
    let mut saw_kick = false;
    let end = loop {
        match a.next_event(FRAME_TIMEOUT) {
            Event::Frame(frame) if !saw_kick && frame == b"ERR unknown-command" => {}
            Event::Frame(frame) if !saw_kick && frame == b"KICK replaced" => saw_kick = true,
            other => break other,
        }
    };
    let written = writer.stop();
    assert!(
        saw_kick,
        "no KICK replaced; stream ended with {}",
        end.describe()
    );
    assert_eq!(end, Event::Eof, "after the KICK: {}", end.describe());
    assert!(
        written.is_ok(),
        "writes failed while the server lingered: {written:?}"
    );
    b.sync();
}
