//! Contract section 12: pongs wait one at a time. A WebSocket client that
//! sends pings and never reads holds bounded memory (only the latest pong
//! waits to go out), over `ws` and `wss`, and the gateway serves others
//! meanwhile.

use crate::websocket::start_ws_over;
use gateway_tests::tls::Pki;
use gateway_tests::ws::client_frame;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the flood sends in all.
const FLOOD_BYTES: usize = 200 * 1024 * 1024;
/// The most the gateway's resident memory may grow meanwhile.
const MAX_GROWTH: u64 = 50 * 1024 * 1024;

#[test]
fn a_client_that_sends_pings_and_never_reads_holds_bounded_memory() {
    for pki in [None, Some(Pki::new("flood CA"))] {
        let over = if pki.is_some() { "wss" } else { "ws" };
        let gw = start_ws_over(pki.as_ref(), &[]);
        let mut other = gw.connect();
        other.sync();
        let mut flood = gw.ws_connect();
        flood.check("PING warm", "PONG warm");
        let before = gw.vm_rss_bytes();

        // Masked pings with the largest control payload, 1 MiB at a time.
        let ping = client_frame(0x89, &[0x42; 125]);
        let chunk: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * (1024 * 1024 / ping.len()))
            .collect();
        let done = AtomicBool::new(false);
        let (peak, slowest) = std::thread::scope(|scope| {
            // Another client is served throughout: its round trips are
            // timed while the flood runs.
            let served = scope.spawn(|| {
                let mut slowest = Duration::ZERO;
                while !done.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    other.sync();
                    slowest = slowest.max(asked.elapsed());
                    std::thread::sleep(Duration::from_millis(20));
                }
                slowest
            });
            let mut peak = before;
            let mut sent = 0;
            while sent < FLOOD_BYTES {
                flood.socket().write_all(&chunk).unwrap_or_else(|e| {
                    panic!("{over}: the flood's write after {sent} bytes: {e}")
                });
                sent += chunk.len();
                if sent % (16 * chunk.len()) == 0 {
                    peak = peak.max(gw.vm_rss_bytes());
                }
            }
            done.store(true, Ordering::Relaxed);
            (peak, served.join().expect("the served client"))
        });
        let after = gw.vm_rss_bytes();
        let grown = peak.max(after).saturating_sub(before);
        assert!(
            grown < MAX_GROWTH,
            "{over}: resident memory grew by {} MiB under the flood",
            grown / (1024 * 1024)
        );
        assert!(
            slowest < Duration::from_secs(2),
            "{over}: another client waited {slowest:?} for a PONG"
        );
        // The flooder is still a connection like any other once it reads.
        drop(flood);
        other.sync();
    }
}
