//! Contract section 6, recycled state: with one worker and many connections
//! that die abruptly (half a frame in, output left unwritten, user bound,
//! topics held, then a reset), every later connection starts clean: its first
//! `PING` gets exactly `PONG`, it is subscribed to nothing, it receives nothing
//! it did not ask for, and the pool reports reuse. Also: 500 connect/`QUIT`
//! cycles leave no connection active, and at most `--pool-max-idle` states wait.

use crate::common::{numbered, publish, start};
use gateway_tests::{Client, Framing, Gateway};
use std::time::Duration;

const ITERATIONS: usize = 30;

fn half_frame(framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Lines => b"PING abc".to_vec(),
        Framing::Length => {
            let mut wire = 10u32.to_be_bytes().to_vec();
            wire.extend_from_slice(b"PING ");
            wire
        }
    }
}

fn wait_active(gw: &Gateway, n: usize) {
    gw.wait_metric_eq("gateway_connections_active", &[], n as f64);
}

#[test]
fn recycled_states_carry_nothing_over() {
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &[
                "--workers",
                "1",
                "--pool-max-idle",
                "8",
                "--max-pending-bytes",
                "67108864",
            ],
        );
        let mut publisher = gw.connect();
        wait_active(&gw, 1);
        let mut ids = Vec::new();
        for i in 0..ITERATIONS {
            let mut dirty = Client::connect_small_rcvbuf(gw.client_addr(), framing, 4096);
            ids.push(dirty.hello("recycled-user"));
            dirty.sub(&format!("old.{i}"));
            dirty.sub("old.shared");
            // Output it will never read, then half a frame, then a reset.
            publisher.send_all((0..32).map(|n| publish("old.shared", &numbered(n, 8000))));
            publisher.sync();
            dirty.send_raw(&half_frame(framing));
            dirty.reset();
            wait_active(&gw, 1);

            let mut fresh = gw.connect();
            fresh.check("PING", "PONG");
            fresh.send(publish(&format!("old.{i}"), b"to-the-dead"));
            fresh.send(publish("old.shared", b"to-the-dead"));
            fresh.sync();
            publisher.send(publish("old.shared", b"late"));
            publisher.send(publish(&format!("old.{i}"), b"late"));
            publisher.sync();
            fresh.sync();
            let id = fresh.hello("recycled-user");
            assert!(!ids.contains(&id), "{framing:?}: id {id} reused");
            ids.push(id);
            fresh.sync();
            fresh.quit();
            wait_active(&gw, 1);
        }
        let metrics = gw.metrics();
        let reused = metrics.value("gateway_pool_reused_total", &[]);
        let allocated = metrics.value("gateway_pool_allocated_total", &[]);
        let accepted = metrics.value("gateway_connections_accepted_total", &[]);
        assert!(reused > 0.0, "{framing:?}: the pool reported no reuse");
        assert_eq!(
            accepted,
            (2 * ITERATIONS + 1) as f64,
            "{framing:?}: accepted"
        );
        assert_eq!(
            reused + allocated,
            accepted,
            "{framing:?}: each accept is reused or allocated once"
        );
        assert_eq!(
            metrics.value("gateway_connections_closed_total", &[("reason", "client")]),
            ITERATIONS as f64,
            "{framing:?}: a reset by the client closes with reason client"
        );
        assert_eq!(
            metrics.value("gateway_connections_closed_total", &[("reason", "quit")]),
            ITERATIONS as f64,
            "{framing:?}: quit"
        );
        assert_eq!(
            metrics.value("gateway_subscriptions", &[]),
            0.0,
            "{framing:?}: subscriptions"
        );
        assert_eq!(
            metrics.value("gateway_topics", &[]),
            0.0,
            "{framing:?}: topics"
        );
    }
}

#[test]
fn connect_quit_cycles_leave_nothing_active() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--workers", "2"]);
        for i in 0..500 {
            let mut c = gw.connect();
            c.check("QUIT", "BYE");
            c.expect_eof();
            if i % 100 == 0 {
                gw.metrics();
            }
        }
        wait_active(&gw, 0);
        let metrics = gw.metrics();
        assert_eq!(
            metrics.value("gateway_connections_accepted_total", &[]),
            500.0
        );
        assert_eq!(
            metrics.value("gateway_connections_closed_total", &[("reason", "quit")]),
            500.0
        );
        let reused = metrics.value("gateway_pool_reused_total", &[]);
        let allocated = metrics.value("gateway_pool_allocated_total", &[]);
        assert_eq!(
            reused + allocated,
            500.0,
            "{framing:?}: reused {reused} + allocated {allocated}"
        );
        assert!(
            reused > 0.0,
            "{framing:?}: 500 sequential connections reused no state"
        );
    }
}

#[test]
fn at_most_pool_max_idle_states_wait() {
    let gw = start(Framing::Lines, &["--pool-max-idle", "4"]);
    let mut clients: Vec<_> = (0..20).map(|_| gw.connect()).collect();
    for c in &mut clients {
        c.check("PING", "PONG");
    }
    for c in clients {
        c.quit();
    }
    wait_active(&gw, 0);
    let idle = gw.wait_metric(
        "gateway_pool_idle",
        &[],
        Duration::from_secs(5),
        "at most 4",
        |v| v <= 4.0,
    );
    let discarded = gw.metric("gateway_pool_discarded_total", &[]);
    assert!(
        discarded >= 16.0,
        "20 states came back to a pool of 4 ({idle} idle) but only {discarded} were discarded"
    );
}
