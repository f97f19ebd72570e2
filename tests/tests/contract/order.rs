//! Contract section 4, order: what one publisher sends reaches every
//! subscriber in the order sent, with subscribers spread over `--workers 2`,
//! and with several publishers at once each one's order holds.

use crate::common::{msg, numbered, publish, seq_of, start};
use gateway_tests::{Framing, show};

#[test]
fn one_publisher_reaches_every_subscriber_in_order() {
    const COUNT: usize = 2000;
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--workers", "2", "--max-pending-bytes", "67108864"],
        );
        let mut subs: Vec<_> = (0..4).map(|_| gw.connect()).collect();
        for s in &mut subs {
            s.sub("seq");
        }
        let mut publisher = gw.connect();
        publisher.send_all((0..COUNT).map(|i| publish("seq", &numbered(i, 40))));
        publisher.sync();
        for (n, s) in subs.iter_mut().enumerate() {
            for i in 0..COUNT {
                let frame = s.recv();
                assert!(
                    frame == msg("seq", &numbered(i, 40)),
                    "{framing:?}: subscriber {n} expected MSG #{i}, got `{}`",
                    show(&frame)
                );
            }
            s.sync();
        }
    }
}

#[test]
fn each_of_several_publishers_keeps_its_order() {
    const COUNT: usize = 500;
    const PUBLISHERS: usize = 3;
    for framing in Framing::ALL {
        let gw = start(
            framing,
            &["--workers", "2", "--max-pending-bytes", "67108864"],
        );
        let mut subs: Vec<_> = (0..3).map(|_| gw.connect()).collect();
        for s in &mut subs {
            s.sub("mixed");
        }
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let mut c = gw.connect();
                std::thread::spawn(move || {
                    for batch in 0..COUNT / 50 {
                        c.send_all((batch * 50..(batch + 1) * 50).map(|i| {
                            let mut payload = format!("p{p} ").into_bytes();
                            payload.extend_from_slice(&numbered(i, 20));
                            publish("mixed", &payload)
                        }));
                    }
                    c.sync();
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        for (n, s) in subs.iter_mut().enumerate() {
            let mut next = [0usize; PUBLISHERS];
            for _ in 0..COUNT * PUBLISHERS {
                let frame = s.recv();
                let payload = frame
                    .strip_prefix(b"MSG mixed p")
                    .unwrap_or_else(|| panic!("unexpected frame `{}`", show(&frame)));
                let p = usize::from(payload[0] - b'0');
                let seq = seq_of(&payload[2..]);
                assert_eq!(
                    seq,
                    Some(next[p]),
                    "{framing:?}: subscriber {n}, publisher {p} out of order"
                );
                next[p] += 1;
            }
            s.sync();
        }
    }
}
