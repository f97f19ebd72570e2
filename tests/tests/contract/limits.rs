//! Contract sections 1, 3 and 5, limits: `--max-connections` (the next client
//! gets `ERR server-full` then EOF and counts as rejected, never accepted),
//! `--max-subscriptions` (`ERR too-many-subscriptions`), and `--idle-timeout`
//! (`KICK idle` within a second after it runs out; a talking client stays).

use crate::common::start;
use gateway_tests::{Event, Framing};
use std::time::{Duration, Instant};

#[test]
fn past_max_connections_the_client_gets_server_full() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--max-connections", "2"]);
        let mut a = gw.connect();
        let mut b = gw.connect();
        a.check("PING a", "PONG a");
        b.check("PING b", "PONG b");

        let mut c = gw.connect();
        c.expect("ERR server-full");
        c.expect_eof();
        drop(c);

        let metrics = gw.metrics();
        assert_eq!(
            metrics.value("gateway_connections_rejected_total", &[("reason", "full")]),
            1.0
        );
        assert_eq!(
            metrics.value(
                "gateway_connections_rejected_total",
                &[("reason", "draining")]
            ),
            0.0
        );
        assert_eq!(
            metrics.value("gateway_connections_accepted_total", &[]),
            2.0
        );
        assert_eq!(metrics.value("gateway_connections_active", &[]), 2.0);

        // A freed place is usable again.
        a.quit();
        gw.wait_metric_eq("gateway_connections_active", &[], 1.0);
        let mut d = gw.connect();
        d.check("PING d", "PONG d");
        b.sync();
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value("gateway_connections_accepted_total", &[]),
            3.0
        );
        assert_eq!(
            metrics.value("gateway_connections_rejected_total", &[("reason", "full")]),
            1.0
        );
    }
}

#[test]
fn past_max_subscriptions_sub_is_refused() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--max-subscriptions", "3"]);
        let mut c = gw.connect();
        c.sub("a");
        c.sub("b");
        c.sub("c");
        c.check("SUB d", "ERR too-many-subscriptions");
        c.sub("a");
        c.check("UNSUB a", "OK UNSUB a");
        c.sub("d");
        c.check("SUB e", "ERR too-many-subscriptions");
        // The refused topic was not subscribed.
        let mut publisher = gw.connect();
        publisher.send("PUB e nothing");
        publisher.send("PUB d something");
        publisher.sync();
        c.expect("MSG d something");
        c.sync();
        // The limit is per connection.
        let mut other = gw.connect();
        for t in ["a", "b", "c"] {
            other.sub(t);
        }
    }
}

#[test]
fn a_silent_client_is_kicked_idle_and_a_talking_one_is_not() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--idle-timeout", "1"]);
        let mut talker = gw.connect();
        let talking = std::thread::spawn(move || {
            for i in 0..12 {
                talker.check(format!("PING {i}"), format!("PONG {i}"));
                std::thread::sleep(Duration::from_millis(250));
            }
            talker.quit();
        });

        let started = Instant::now();
        let mut silent = gw.connect();
        let first = silent.next_event(Duration::from_secs(4));
        let took = started.elapsed();
        assert_eq!(
            first,
            Event::Frame(b"KICK idle".to_vec()),
            "{framing:?}: got {}",
            first.describe()
        );
        assert!(
            took >= Duration::from_millis(950) && took <= Duration::from_millis(2300),
            "{framing:?}: KICK idle after {took:?}, expected within a second after 1 s"
        );
        silent.expect_eof();
        drop(silent);
        talking.join().unwrap();
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "idle")],
            1.0,
        );
    }
}

#[test]
fn idle_time_counts_from_the_last_frame() {
    let gw = start(Framing::Lines, &["--idle-timeout", "1"]);
    let mut c = gw.connect();
    std::thread::sleep(Duration::from_millis(700));
    c.check("PING", "PONG");
    let last_frame = Instant::now();
    let kick = c.next_event(Duration::from_secs(4));
    let took = last_frame.elapsed();
    assert_eq!(
        kick,
        Event::Frame(b"KICK idle".to_vec()),
        "got {}",
        kick.describe()
    );
    assert!(
        took >= Duration::from_millis(950) && took <= Duration::from_millis(2300),
        "KICK idle {took:?} after the last frame"
    );
    c.expect_eof();
}

#[test]
fn idle_timeout_zero_turns_it_off() {
    let gw = start(Framing::Lines, &["--idle-timeout", "0"]);
    let mut c = gw.connect();
    assert_eq!(
        c.next_event(Duration::from_millis(2500)),
        Event::Timeout,
        "no kick with --idle-timeout 0"
    );
    c.check("PING", "PONG");
}
