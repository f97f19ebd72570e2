//! Contract section 9, drain and shutdown: at SIGTERM (or SIGINT) every
//! connection gets what was queued for it, then `KICK shutdown`, then EOF; a
//! client connecting during the drain gets at most `ERR draining` then EOF and
//! counts as rejected `draining`; `/readyz` answers 503 while `/healthz` still
//! answers 200; the process exits 0 once all are closed, or when
//! `--shutdown-timeout` runs out, even if a client never reads.

use crate::common::{msg, numbered, publish, start};
use gateway_tests::writer::BackgroundWriter;
use gateway_tests::{Client, Event, FRAME_TIMEOUT, Framing, Gateway, show};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a busy client saw: MSGs in order, the frames after them, the end,
/// and whether its own writes failed.
struct Seen {
    msgs: usize,
    tail: Vec<String>,
    end: Event,
    written: std::io::Result<()>,
}

/// A client that publishes to its own topic and reads it back until the
/// connection ends; `progress` counts MSGs read so far.
fn busy_client(gw: &Gateway, n: usize, progress: Arc<AtomicUsize>) -> JoinHandle<Seen> {
    let mut c = gw.connect();
    let topic = format!("busy.{n}");
    c.sub(&topic);
    std::thread::spawn(move || {
        let framing = c.framing();
        let writer_topic = topic.clone();
        let mut seq = 0;
        let writer = BackgroundWriter::start(c.writer(), Duration::from_secs(20), move || {
            std::thread::sleep(Duration::from_millis(2));
            let frames = (seq..seq + 20).map(|i| publish(&writer_topic, &numbered(i, 200)));
            seq += 20;
            Some(framing.encode_all(frames))
        });
        let mut msgs = 0;
        let mut tail = Vec::new();
        let end = loop {
            match c.next_event(FRAME_TIMEOUT) {
                Event::Frame(frame) if tail.is_empty() && frame.starts_with(b"MSG ") => {
                    assert!(
                        frame == msg(&topic, &numbered(msgs, 200)),
                        "client {n}: expected MSG #{msgs}, got `{}`",
                        show(&frame)
                    );
                    msgs += 1;
                    progress.store(msgs, Ordering::Relaxed);
                }
                Event::Frame(frame) => tail.push(show(&frame)),
                end => break end,
            }
        };
        let written = writer.stop();
        Seen {
            msgs,
            tail,
            end,
            written,
        }
    })
}

#[test]
fn sigterm_drains_busy_clients_and_exits_zero() {
    for framing in Framing::ALL {
        let mut gw = start(
            framing,
            &[
                "--shutdown-timeout",
                "3",
                "--close-timeout",
                "2",
                "--max-pending-bytes",
                "67108864",
            ],
        );
        let progress: Vec<_> = (0..4).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let clients: Vec<_> = progress
            .iter()
            .enumerate()
            .map(|(n, p)| busy_client(&gw, n, Arc::clone(p)))
            .collect();
        gateway_tests::assert_eventually!(
            progress.iter().all(|p| p.load(Ordering::Relaxed) >= 50),
            Duration::from_secs(10),
            "{framing:?}: the busy clients did not get traffic flowing"
        );
        let asked = Instant::now();
        gw.sigterm();
        for (n, client) in clients.into_iter().enumerate() {
            let seen = client.join().unwrap();
            assert!(
                seen.msgs >= 50,
                "{framing:?}: client {n} read {} MSGs",
                seen.msgs
            );
            assert_eq!(
                seen.tail,
                vec!["KICK shutdown".to_string()],
                "{framing:?}: client {n} after its MSGs"
            );
            assert_eq!(
                seen.end,
                Event::Eof,
                "{framing:?}: client {n}: {}",
                seen.end.describe()
            );
            assert!(
                seen.written.is_ok(),
                "{framing:?}: client {n} writes failed: {:?}",
                seen.written
            );
        }
        let status = gw.wait_exit(Duration::from_secs(5));
        let took = asked.elapsed();
        assert!(
            status.success(),
            "{framing:?}: exit status after the drain: {status}"
        );
        assert!(
            took < Duration::from_millis(4500),
            "{framing:?}: exit {took:?} after SIGTERM"
        );
    }
}

/// A client with a tiny receive buffer that reads nothing while 16 MiB are
/// queued for it, so a drain cannot finish it before a timeout.
fn stuck_client(gw: &Gateway) -> Client {
    let mut stuck = Client::connect_small_rcvbuf(gw.client_addr(), gw.framing(), 4096);
    stuck.sub("stuck");
    let mut publisher = gw.connect();
    let payload = numbered(0, 60_000);
    publisher.send_all((0..280).map(|_| publish("stuck", &payload)));
    publisher.sync();
    publisher.quit();
    stuck
}

#[test]
fn during_a_drain_new_clients_are_refused_and_readyz_says_503() {
    for framing in Framing::ALL {
        let mut gw = start(
            framing,
            &[
                "--shutdown-timeout",
                "5",
                "--close-timeout",
                "3",
                "--max-pending-bytes",
                "134217728",
            ],
        );
        assert_eq!(gw.http_get("/readyz").status, 200, "ready before the drain");
        let mut stuck = stuck_client(&gw);
        let mut calm = gw.connect();
        calm.hello("calm");
        let asked = Instant::now();
        gw.sigterm();

        calm.expect("KICK shutdown");
        calm.expect_eof();
        gateway_tests::assert_eventually!(
            gw.http_get("/readyz").status == 503,
            Duration::from_secs(2),
            "{framing:?}: /readyz still not 503 while draining"
        );
        let health = gw.http_get("/healthz");
        assert_eq!(
            health.status,
            200,
            "{framing:?}: /healthz while draining: {}",
            health.text()
        );

        let mut late = gw.connect();
        let (frames, end) = late.read_to_end(Duration::from_secs(2));
        let frames: Vec<String> = frames.iter().map(|f| show(f)).collect();
        assert!(
            frames.is_empty() || frames == ["ERR draining"],
            "{framing:?}: a client during the drain gets at most ERR draining, got {frames:?}"
        );
        assert_eq!(
            end,
            Event::Eof,
            "{framing:?}: late client: {}",
            end.describe()
        );
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value(
                "gateway_connections_rejected_total",
                &[("reason", "draining")]
            ),
            1.0
        );
        assert_eq!(
            metrics.value("gateway_connections_rejected_total", &[("reason", "full")]),
            0.0
        );
        assert_eq!(
            metrics.value("gateway_connections_accepted_total", &[]),
            3.0
        );

        let status = gw.wait_exit(Duration::from_secs(7));
        let took = asked.elapsed();
        assert!(status.success(), "{framing:?}: exit status: {status}");
        assert!(
            took < Duration::from_millis(6500),
            "{framing:?}: exit {took:?} after SIGTERM"
        );
        let (frames, _end) = stuck.read_to_end(FRAME_TIMEOUT);
        for (i, frame) in frames.iter().enumerate() {
            let whole = *frame == msg("stuck", &numbered(0, 60_000)) || frame == b"KICK shutdown";
            assert!(
                whole,
                "{framing:?}: stuck client's frame {i} damaged: `{}`",
                show(frame)
            );
        }
    }
}

/// Starts a gateway logging JSON at `info`, so the drain's report can be read.
fn start_logging(flags: &[&str]) -> Gateway {
    let mut all = vec!["--framing", "lines", "--log-format", "json"];
    all.extend_from_slice(flags);
    Gateway::start_with_env(&all, &[("RUST_LOG", "info")])
}

/// The level and message of the log line that reports a drain cut short by
/// `--shutdown-timeout`.
fn timeout_report(gw: &Gateway) -> (String, String) {
    let stderr = gw.stderr();
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| {
            let message = line["message"].as_str()?;
            message.starts_with("--shutdown-timeout ran out").then(|| {
                (
                    line["level"].as_str().unwrap_or("").to_string(),
                    message.to_string(),
                )
            })
        })
        .unwrap_or_else(|| panic!("no report of the shutdown timeout in:\n{stderr}"))
}

#[test]
fn shutdown_timeout_bounds_a_drain_that_cannot_finish() {
    let mut gw = start_logging(&[
        "--shutdown-timeout",
        "2",
        "--close-timeout",
        "30",
        "--max-pending-bytes",
        "134217728",
    ]);
    let _stuck = stuck_client(&gw);
    let asked = Instant::now();
    gw.sigterm();
    let status = gw.wait_exit(Duration::from_millis(3500));
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit status when --shutdown-timeout ran out: {status}"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "exited {took:?} after SIGTERM, before the stuck client was served"
    );
    // The stuck client did lose frames: that is a warning, and says so.
    let (level, message) = timeout_report(&gw);
    assert_eq!(level, "WARN", "{message}");
    assert!(
        message.contains("1 of 1 open clients had not been sent all their frames"),
        "{message}"
    );
}

#[test]
fn a_drain_cut_short_only_by_clients_that_never_close_says_so() {
    let mut gw = start_logging(&["--shutdown-timeout", "1", "--close-timeout", "30"]);
    let mut c = gw.connect();
    c.sub("t");
    let mut publisher = gw.connect();
    publisher.send_all((0..10).map(|i| publish("t", &numbered(i, 100))));
    publisher.quit();
    for i in 0..10 {
        assert!(c.recv() == msg("t", &numbered(i, 100)), "MSG #{i}");
    }
    gw.sigterm();
    c.expect("KICK shutdown");
    c.expect_eof();
    // The client keeps its side open; the drain ends by the timeout.
    let status = gw.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "exit status: {status}");
    let (level, message) = timeout_report(&gw);
    assert_eq!(level, "INFO", "{message}");
    assert!(
        message.contains(
            "every client was sent its frames and KICK shutdown; 1 had not closed their side"
        ),
        "{message}"
    );
    drop(c);
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut gw = start(Framing::Length, &["--shutdown-timeout", "3"]);
    let mut c = gw.connect();
    c.sub("t");
    let mut publisher = gw.connect();
    publisher.send_all((0..100).map(|i| publish("t", &numbered(i, 100))));
    publisher.sync();
    gw.signal("INT");
    for i in 0..100 {
        let frame = c.recv();
        assert!(
            frame == msg("t", &numbered(i, 100)),
            "expected MSG #{i}, got `{}`",
            show(&frame)
        );
    }
    c.expect("KICK shutdown");
    c.expect_eof();
    publisher.expect("KICK shutdown");
    publisher.expect_eof();
    let status = gw.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status after SIGINT: {status}");
}
