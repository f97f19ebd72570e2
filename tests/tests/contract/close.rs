//! Contract section 5, graceful close, over plain TCP and over TLS (section
//! 11), one body for both: `QUIT` after a megabyte of unread output still
//! delivers every frame, then `BYE`, then EOF (over TLS, `close_notify` and
//! then the TCP EOF); a client's EOF after pipelined commands still gets
//! every answer; an admin kick is the last frame; a client that keeps
//! writing after `QUIT` reads `BYE` and EOF, never a reset; a client that
//! reads nothing is cut off by `--close-timeout` and that is counted.

use crate::common::{msg, numbered, publish, start_over};
use gateway_tests::writer::read_while_writing;
use gateway_tests::{Event, FRAME_TIMEOUT, Framing, http, show};
use std::time::{Duration, Instant};

over_plain_and_tls! { tcp, tls;
    fn quit_with_a_megabyte_pending_delivers_everything_then_bye(pki) {
        const COUNT: usize = 256;
        const SIZE: usize = 4096;
        const ROUNDS: usize = 16;
        for framing in Framing::ALL {
            let gw = start_over(
                pki,
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
                // Over TLS, close_notify, then the TCP EOF, nothing in between.
                reader.expect_eof();
            }
            gw.wait_metric_eq(
                "gateway_connections_closed_total",
                &[("reason", "quit")],
                ROUNDS as f64,
            );
        }
    }
}

over_plain_and_tls! { tcp, tls;
    fn client_eof_after_pipelined_commands_gets_every_answer(pki) {
        for framing in Framing::ALL {
            let gw = start_over(pki, framing, &[]);
            let mut c = gw.connect();
            let mut frames = vec![b"HELLO eof-user".to_vec(), b"SUB t".to_vec()];
            for i in 0..200 {
                frames.push(format!("PING {i}").into_bytes());
            }
            frames.push(b"PUB t last".to_vec());
            frames.push(b"NOPE".to_vec());
            c.send_all(&frames);
            // Over TLS, close_notify, then the FIN.
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
}

over_plain_and_tls! { tcp, tls;
    fn an_admin_kick_is_the_last_frame_before_the_end(pki) {
        let gw = start_over(pki, Framing::Lines, &[]);
        let mut c = gw.connect();
        let id = c.hello("kicked");
        c.sub("t");
        let mut publisher = gw.connect();
        publisher.send_all((0..100).map(|i| publish("t", format!("m{i}").as_bytes())));
        publisher.sync();
        let r = http::request(
            gw.admin_addr(),
            "POST",
            &format!("/api/v1/connections/{id}/close"),
            &[("Content-Type", "application/json")],
            Some(br#"{"message":"maintenance"}"#),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        for i in 0..100 {
            c.expect(format!("MSG t m{i}"));
        }
        c.expect("KICK admin maintenance");
        c.expect_eof();
    }
}

over_plain_and_tls! { tcp, tls;
    fn a_client_still_writing_after_quit_reads_bye_then_eof_not_a_reset(pki) {
        for framing in Framing::ALL {
            let gw = start_over(pki, framing, &["--close-timeout", "5"]);
            let mut c = gw.connect();
            c.check("PING first", "PONG first");
            // QUIT, then a flood of frames in the same write, then more
            // writes until the client has read its EOF.
            let mut wire = framing.encode(b"QUIT");
            wire.extend_from_slice(
                &framing.encode_all((0..20_000).map(|i| format!("PING after-quit {i}"))),
            );
            let more = framing.encode_all((0..1000).map(|_| "PING more"));
            let (events, written) = read_while_writing(&mut c, wire, more, Duration::from_secs(4));
            let seen: Vec<String> = events.iter().map(Event::describe).collect();
            assert_eq!(
                events,
                vec![Event::Frame(b"BYE".to_vec()), Event::Eof],
                "{framing:?}: saw {seen:?}"
            );
            assert!(
                written.is_ok(),
                "{framing:?}: writes failed while the server lingered: {written:?}"
            );
        }
    }
}

over_plain_and_tls! { tcp, tls;
    fn a_client_that_reads_nothing_is_cut_off_by_the_close_timeout(pki) {
        let gw = start_over(
            pki,
            Framing::Length,
            &["--close-timeout", "1", "--max-pending-bytes", "134217728"],
        );
        let mut stuck = gw.connect_small_rcvbuf(4096);
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
}
