//! Contract section 11, TLS, with certificates made in the test (rcgen):
//! the client protocol over TLS 1.3 and 1.2 in both framings; a real
//! outside client (`openssl s_client`); a plain-text client and a stalled
//! handshake dropped and counted, never accepted; stalled handshakes counted
//! against `--max-connections` from the accept; SIGHUP with a new
//! certificate and with a broken file; the admin listener over HTTPS. The
//! close suite runs over TLS as over TCP, one body for both, in `close`.

use crate::common::start_over;
use gateway_tests::tls::Pki;
use gateway_tests::{Client, FRAME_TIMEOUT, Framing, Gateway, http, show};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FAILURES: &str = "gateway_tls_handshake_failures_total";
const ACCEPTED: &str = "gateway_connections_accepted_total";

/// A gateway speaking TLS on its client listener with `pki`'s certificate;
/// its `connect` speaks TLS too.
fn tls_gateway(framing: Framing, pki: &Pki, flags: &[&str]) -> Gateway {
    start_over(Some(pki), framing, flags)
}

#[test]
fn the_handshake_failure_counter_is_exported_from_start_up() {
    let gw = Gateway::start(&[]);
    assert_eq!(gw.metric(FAILURES, &[]), 0.0);
}

#[test]
fn commands_over_tls_1_3_and_1_2_in_both_framings() {
    let pki = Pki::new("commands CA");
    for framing in Framing::ALL {
        let gw = tls_gateway(framing, &pki, &[]);
        let versions: [&[&'static rustls::SupportedProtocolVersion]; 2] =
            [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];
        for (i, versions) in versions.into_iter().enumerate() {
            let tls = pki.client_with(versions);
            let mut a = Client::tls(gw.client_addr(), framing, &tls);
            let mut b = Client::tls(gw.client_addr(), framing, &tls);
            a.hello(&format!("alice-{i}"));
            a.sub("news");
            b.sub("news");
            b.send("PUB news hello over tls");
            a.expect("MSG news hello over tls");
            b.expect("MSG news hello over tls");
            a.check("PING x y", "PONG x y");
            a.quit();
            b.quit();
        }
        gw.wait_metric_eq(ACCEPTED, &[], 4.0);
        assert_eq!(gw.metric(FAILURES, &[]), 0.0, "{framing:?}");
    }
}

#[test]
fn a_client_silent_long_enough_for_its_keys_to_be_dropped_is_served_as_before() {
    // An idle TLS 1.3 connection drops its record keys within half a
    // second (the worker's sweep) and builds them again from its secrets
    // on the next record, whichever way it goes. What this shows is the
    // service after the silences; that the keys are dropped is shown by
    // the unit tests of `transport/records.rs` and `mailbox/sweep.rs` and
    // measured by `bench/idle.sh` (docs/benchmarks.md).
    let pki = Pki::new("idle keys CA");
    let gw = tls_gateway(Framing::Lines, &pki, &[]);
    let tls = pki.client_with(&[&rustls::version::TLS13]);
    let mut a = Client::tls(gw.client_addr(), Framing::Lines, &tls);
    let mut b = Client::tls(gw.client_addr(), Framing::Lines, &tls);
    a.hello("alice");
    a.sub("news");
    b.sub("news");
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(1200));
        // A push to the silent client first, then its own command.
        b.send(format!("PUB news after silence {round}"));
        b.expect(format!("MSG news after silence {round}"));
        a.expect(format!("MSG news after silence {round}"));
        std::thread::sleep(Duration::from_millis(1200));
        a.check(format!("PING {round}"), format!("PONG {round}"));
    }
    a.quit();
    b.quit();
}

/// Reads a raw socket until EOF, a reset or `timeout`; returns the bytes
/// and whether the server ended the connection.
fn read_raw_to_end(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the raw socket: {e}"),
        }
    }
    (got, false)
}

#[test]
fn a_plain_text_client_on_the_tls_port_is_dropped_and_counted_never_accepted() {
    let pki = Pki::new("plain CA");
    let gw = tls_gateway(Framing::Lines, &pki, &[]);
    let mut raw = TcpStream::connect(gw.client_addr()).expect("connect");
    raw.write_all(b"HELLO plain\nPING x\n").expect("write");
    let (got, ended) = read_raw_to_end(&mut raw, FRAME_TIMEOUT);
    assert!(ended, "the gateway kept a plain-text client open");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("OK HELLO") && !text.contains("PONG"),
        "a plain-text client was served: `{}`",
        show(&got)
    );
    gw.wait_metric_eq(FAILURES, &[], 1.0);
    let m = gw.metrics();
    assert_eq!(
        m.value(ACCEPTED, &[]),
        0.0,
        "a failed handshake was accepted"
    );
    assert_eq!(m.value("gateway_connections_active", &[]), 0.0);
    // The listener still serves TLS clients.
    gw.connect().quit();
}

#[test]
fn a_stalled_handshake_is_dropped_at_the_close_timeout_and_blocks_no_one() {
    let pki = Pki::new("stall CA");
    let gw = tls_gateway(Framing::Lines, &pki, &["--close-timeout", "1"]);
    let started = Instant::now();
    let mut stalled = TcpStream::connect(gw.client_addr()).expect("connect");
    // The first bytes of a TLS record announcing a ClientHello, and no more.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).expect("write");
    // Another client completes its handshake meanwhile.
    let mut served = gw.connect();
    served.check("PING during the stall", "PONG during the stall");
    let (got, ended) = read_raw_to_end(&mut stalled, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(ended, "the stalled handshake was never dropped");
    assert!(
        got.is_empty() || got[0] == 0x15,
        "unexpected bytes: {got:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "dropped after {took:?}, before --close-timeout 1"
    );
    gw.wait_metric_eq(FAILURES, &[], 1.0);
    assert_eq!(
        gw.metric(ACCEPTED, &[]),
        1.0,
        "only the served client counts"
    );
    served.quit();
}

/// Descriptors the process holds now.
fn open_fds(gw: &Gateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
        .expect("the gateway's descriptors")
        .count()
}

#[test]
fn stalled_handshakes_count_toward_max_connections_from_the_accept() {
    let pki = Pki::new("flood CA");
    let gw = tls_gateway(
        Framing::Lines,
        &pki,
        &["--max-connections", "100", "--close-timeout", "3"],
    );
    let before = open_fds(&gw);
    // 300 clients that connect and never start their handshake.
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(gw.client_addr()).expect("connect"))
        .collect();
    let flooded = Instant::now();
    // The 200 past the limit are closed at once, without a handshake, and
    // counted; the 100 within it hold their places.
    gw.wait_metric_eq(
        "gateway_connections_rejected_total",
        &[("reason", "full")],
        200.0,
    );
    let fds = open_fds(&gw);
    assert!(
        fds < 200 && fds <= before + 110,
        "{fds} descriptors held ({before} before the flood)"
    );
    // The admin API answers throughout.
    assert_eq!(gw.http_get("/healthz").status, 200);
    // While the 100 hold their places, a good client is refused too…
    let early = pki.client().connect(gw.client_addr());
    assert!(
        early.is_err() || flooded.elapsed() >= Duration::from_secs(3),
        "a handshake past the limit went through"
    );
    // …and served as soon as the stalled ones time out.
    let deadline = flooded + Duration::from_secs(3 + 5);
    let mut served = loop {
        if let Ok(mut tls) = pki.client().connect(gw.client_addr()) {
            let mut answer = [0u8; 12];
            let pinged =
                tls.write_all(b"PING served\n").is_ok() && tls.read_exact(&mut answer).is_ok();
            if pinged {
                assert_eq!(&answer, b"PONG served\n");
                break tls;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no client served after the stall"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = flooded.elapsed();
    assert!(
        waited >= Duration::from_millis(2900),
        "served after only {waited:?}"
    );
    gw.wait_metric_eq(FAILURES, &[], 100.0);
    assert_eq!(gw.http_get("/healthz").status, 200);
    served.write_all(b"QUIT\n").expect("QUIT");
    drop(stalled);
}

/// Whether the handshake with `pki`'s trust succeeds now.
fn trusts(gw: &Gateway, pki: &Pki) -> bool {
    pki.client().connect(gw.client_addr()).is_ok()
}

#[test]
fn sighup_serves_a_new_certificate_and_keeps_the_old_one_when_a_file_is_broken() {
    let old = Pki::new("old CA");
    let new = Pki::new("new CA");
    let admin = old.admin_flags();
    let admin: Vec<&str> = admin.iter().map(String::as_str).collect();
    let gw = tls_gateway(Framing::Lines, &old, &admin);
    let mut open = gw.connect();
    open.hello("before-reload");
    assert!(trusts(&gw, &old) && !trusts(&gw, &new));

    old.install(&new);
    gw.signal("HUP");
    let reloaded =
        gateway_tests::poll::eventually(FRAME_TIMEOUT, || trusts(&gw, &new).then_some(()));
    assert!(reloaded.is_some(), "no new certificate after SIGHUP");
    assert!(!trusts(&gw, &old), "the old certificate is still served");
    let admin_health = new
        .client()
        .request(gw.admin_addr(), "GET", "/healthz", None);
    assert_eq!(
        admin_health.map(|r| r.status),
        Ok(200),
        "the admin listener did not reload"
    );
    // The open connection keeps its session.
    open.check("PING still here", "PONG still here");

    std::fs::write(&old.key, "not a key\n").expect("break the key file");
    gw.signal("HUP");
    let logged = gateway_tests::poll::eventually(FRAME_TIMEOUT, || {
        gw.stderr()
            .contains("TLS certificate not reloaded")
            .then_some(())
    });
    assert!(logged.is_some(), "no error logged for a broken key file");
    assert!(trusts(&gw, &new), "a broken file replaced the certificate");
    open.check("PING after", "PONG after");
    open.quit();
    assert!(gw.stderr().contains(&old.key.display().to_string()));
}

#[test]
fn the_admin_listener_speaks_https_only() {
    let pki = Pki::new("admin CA");
    let flags = pki.admin_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let gw = Gateway::start(&flags);
    let tls = pki.client();
    let health = tls
        .request(gw.admin_addr(), "GET", "/healthz", None)
        .expect("GET /healthz over TLS");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    let metrics = tls
        .request(gw.admin_addr(), "GET", "/metrics", None)
        .expect("GET /metrics over TLS");
    assert!(metrics.text().contains(FAILURES), "{}", metrics.text());
    let mut c = gw.connect();
    c.sub("news");
    let published = tls
        .request(
            gw.admin_addr(),
            "POST",
            "/api/v1/topics/news/publish",
            Some(br#"{"data":"over https"}"#),
        )
        .expect("publish over TLS");
    assert_eq!(published.status, 200, "{}", published.text());
    c.expect("MSG news over https");
    // Plain HTTP gets no answer.
    let plain = http::try_request(gw.admin_addr(), "GET", "/healthz", &[], None);
    assert!(
        !plain.as_ref().is_ok_and(|r| r.status == 200),
        "plain HTTP was served: {plain:?}"
    );
}

/// Whether `openssl` is on PATH; when not, skips (returns false), or fails
/// under `GATEWAY_TEST_REQUIRE_OPENSSL=1`, as CI sets.
fn openssl_present() -> bool {
    let present = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return true;
    }
    let required = std::env::var("GATEWAY_TEST_REQUIRE_OPENSSL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "GATEWAY_TEST_REQUIRE_OPENSSL=1 but openssl is not on PATH (apt-get install openssl)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping: openssl not installed (apt-get install openssl)"
    );
    false
}

/// Runs `openssl s_client` with `args` against the gateway, feeding it
/// `input`; returns what it printed on stdout once it exits.
fn s_client(gw: &Gateway, pki: &Pki, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(gw.client_addr().to_string())
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&pki.ca_file)
        .args(["-verify_return_error", "-quiet"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    // `-quiet` keeps reading after its input ends, until the server closes.
    let _ = stdin.write_all(input);
    drop(stdin);
    let exited = gateway_tests::poll::eventually(Duration::from_secs(10), || {
        child.try_wait().expect("try_wait")
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_client {args:?} did not finish");
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read s_client's output");
    out
}

#[test]
fn openssl_s_client_is_served_over_tls_1_3_and_1_2_and_refused_tls_1_1() {
    if !openssl_present() {
        return;
    }
    let pki = Pki::new("openssl CA");
    let gw = tls_gateway(Framing::Lines, &pki, &[]);
    for version in ["-tls1_3", "-tls1_2"] {
        let out = s_client(&gw, &pki, &[version], b"PING openssl\nQUIT\n");
        assert_eq!(out, "PONG openssl\nBYE\n", "openssl s_client {version}");
    }
    gw.wait_metric_eq(ACCEPTED, &[], 2.0);
    assert_eq!(gw.metric(FAILURES, &[]), 0.0);
    let out = s_client(
        &gw,
        &pki,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        b"PING old\n",
    );
    assert!(!out.contains("PONG"), "TLS 1.1 was served: {out}");
    gw.wait_metric_eq(FAILURES, &[], 1.0);
    assert_eq!(gw.metric(ACCEPTED, &[]), 2.0);
}
