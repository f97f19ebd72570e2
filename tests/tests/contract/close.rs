//! Contract section 5, graceful close: `QUIT` after a megabyte of unread
//! output still delivers every frame, then `BYE`, then EOF; a client's EOF
//! after pipelined commands still gets every answer; a client that keeps
//! writing after `QUIT` reads `BYE` and EOF, never a reset; a client that
//! reads nothing is cut off by `--close-timeout` and that is counted.

use crate::common::{msg, numbered, publish, start};
use gateway_tests::writer::BackgroundWriter;
use gateway_tests::{Event, FRAME_TIMEOUT, Framing, show};
use std::time::{Duration, Instant};

#[test]
fn quit_with_a_megabyte_pending_delivers_everything_then_bye() {
    const COUNT: usize = 256;
    const SIZE: usize = 4096;
    const ROUNDS: usize = 16;
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--max-pending-bytes", "67108864", "--close-timeout", "10"],
        );
        let mut publisher = gw.connect();
        // A few rounds: the QUIT races the delivery of what was published.
        for round in 0..ROUNDS {
            let mut reader = gw.connect();
            reader.sub("bulk");
            publisher.send_all((0..COUNT).map(|i| publish("bulk", &numbered(i, SIZE))));
            publisher.sync();
            reader.send("QUIT");
            for i in 0..COUNT {
                let frame = reader.recv();
                assert!(
                    frame == msg("bulk", &numbered(i, SIZE)),
                    "{framing:?} round {round}: frame {i} should be MSG bulk #{i}, got {} bytes `{}`",
                    frame.len(),
                    show(&frame)
                );
            }
            reader.expect("BYE");
            reader.expect_eof();
        }
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "quit")],
            ROUNDS as f64,
        );
    }
}

#[test]
fn client_eof_after_pipelined_commands_gets_every_answer() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        let mut frames = vec![b"HELLO eof-user".to_vec(), b"SUB t".to_vec()];
        for i in 0..200 {
            frames.push(format!("PING {i}").into_bytes());
        }
        frames.push(b"PUB t last".to_vec());
        frames.push(b"NOPE".to_vec());
        c.send_all(&frames);
        c.shutdown_write();
        let hello = c.recv();
        assert!(hello.starts_with(b"OK HELLO "), "got `{}`", show(&hello));
        c.expect("OK SUB t");
        for i in 0..200 {
            c.expect(format!("PONG {i}"));
        }
        c.expect("MSG t last");
        c.expect("ERR unknown-command");
        c.expect_eof();
        drop(c);
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "client")],
            1.0,
        );
        gw.wait_metric_eq("gateway_connections_active", &[], 0.0);
    }
}

#[test]
fn a_client_still_writing_after_quit_reads_bye_then_eof_not_a_reset() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--close-timeout", "5"]);
        let mut c = gw.connect();
        c.check("PING first", "PONG first");
        // QUIT, then a flood of frames in the same write, then more writes
        // until the client has read its EOF.
        let mut wire = framing.encode(b"QUIT");
        wire.extend_from_slice(
            &framing.encode_all((0..20_000).map(|i| format!("PING after-quit {i}"))),
        );
        let more = framing.encode_all((0..1000).map(|_| "PING more"));
        let mut first_write = Some(wire);
        let writer = BackgroundWriter::start(c.writer(), Duration::from_secs(4), move || {
            Some(first_write.take().unwrap_or_else(|| more.clone()))
        });
        let first = c.next_event(FRAME_TIMEOUT);
        let second = c.next_event(FRAME_TIMEOUT);
        let written = writer.stop();
        assert_eq!(
            first,
            Event::Frame(b"BYE".to_vec()),
            "{framing:?}: got {}",
            first.describe()
        );
        assert_eq!(
            second,
            Event::Eof,
            "{framing:?}: after BYE got {}",
            second.describe()
        );
        assert!(
            written.is_ok(),
            "{framing:?}: writes failed while the server lingered: {written:?}"
        );
    }
}

#[test]
fn a_client_that_reads_nothing_is_cut_off_by_the_close_timeout() {
    let gw = start(
        Framing::Length,
        &["--close-timeout", "1", "--max-pending-bytes", "134217728"],
    );
    let mut stuck =
        gateway_tests::Client::connect_small_rcvbuf(gw.client_addr(), Framing::Length, 4096);
    stuck.sub("stuck");
    let mut publisher = gw.connect();
    let payload = numbered(0, 60_000);
    publisher.send_all((0..200).map(|_| publish("stuck", &payload)));
    publisher.sync();
    let asked = Instant::now();
    stuck.send("QUIT");
    gw.wait_metric(
        "gateway_close_flush_timeouts_total",
        &[],
        Duration::from_secs(5),
        "1",
        |v| v == 1.0,
    );
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "cut off after {took:?}, before --close-timeout 1"
    );
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "quit")],
        1.0,
    );
    gw.wait_metric_eq("gateway_connections_active", &[], 1.0);
    let (frames, _end) = stuck.read_to_end(FRAME_TIMEOUT);
    for (i, frame) in frames.iter().enumerate() {
        assert!(
            *frame == msg("stuck", &payload),
            "frame {i} damaged: `{}`",
            show(frame)
        );
    }
    assert!(
        frames.len() < 200,
        "the cut-off client still got everything"
    );
}
