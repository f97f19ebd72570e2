//! Contract section 1, the process: the `READY` line and nothing else on
//! stdout; flags read from `GATEWAY_*` variables; a bad flag, a bad
//! `GATEWAY_*` value or an address that cannot be bound fails before `READY`
//! with a one-line error and a non-zero exit; `--log-format json` makes every
//! stderr line a JSON object.

use gateway_tests::gateway::{Exited, run_to_exit};
use gateway_tests::{Client, Framing, Gateway};
use std::net::TcpListener;
use std::time::Duration;

const LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];

#[test]
fn ready_line_is_exact_and_the_only_stdout() {
    let mut gw = Gateway::start(&[]);
    let first = gw.stdout().lines().next().unwrap().to_string();
    assert_eq!(
        first,
        format!(
            "READY client={} admin={}",
            gw.client_addr(),
            gw.admin_addr()
        )
    );
    for addr in [gw.client_addr(), gw.admin_addr()] {
        assert_eq!(
            addr.ip().to_string(),
            "127.0.0.1",
            "bound where asked: {first}"
        );
        assert_ne!(addr.port(), 0, "READY names the real port: {first}");
    }
    assert_ne!(gw.client_addr(), gw.admin_addr());

    let mut client = gw.connect();
    client.check("PING", "PONG");
    assert_eq!(gw.http_get("/healthz").status, 200);
    client.quit();

    gw.sigterm();
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "SIGTERM with no clients exits 0, got {status}"
    );
    assert_eq!(
        gw.stdout(),
        format!("{first}\n"),
        "stdout holds the READY line only"
    );
}

#[test]
fn flags_are_read_from_gateway_variables() {
    let gw = Gateway::start_with_env(&[], &[("GATEWAY_FRAMING", "length")]);
    let mut client = Client::connect(gw.client_addr(), Framing::Length);
    client.check("PING x", "PONG x");

    let gw = Gateway::start_with_env(&[], &[("GATEWAY_MAX_CONNECTIONS", "1")]);
    let mut first = gw.connect();
    first.check("PING", "PONG");
    let mut second = gw.connect();
    second.expect("ERR server-full");
    second.expect_eof();
}

#[test]
fn every_flag_reads_its_gateway_variable() {
    let gw = Gateway::start_exact(
        &[],
        &[
            ("GATEWAY_LISTEN", "127.0.0.1:0"),
            ("GATEWAY_ADMIN_LISTEN", "127.0.0.1:0"),
            ("GATEWAY_MAX_FRAME_BYTES", "64"),
            ("GATEWAY_MAX_SUBSCRIPTIONS", "1"),
            ("GATEWAY_IDLE_TIMEOUT", "1"),
            ("GATEWAY_CLOSE_TIMEOUT", "2"),
            ("GATEWAY_WORKERS", "1"),
            ("GATEWAY_POOL_MAX_IDLE", "2"),
        ],
    );
    for addr in [gw.client_addr(), gw.admin_addr()] {
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
    }
    assert_eq!(gw.http_get("/healthz").status, 200);
    let mut c = gw.connect();
    c.sub("one");
    c.check("SUB two", "ERR too-many-subscriptions");
    let mut big = gw.connect();
    big.send([b'x'; 65]);
    big.expect("ERR frame-too-large");
    big.expect_eof();
    let mut idle = gw.connect();
    let kick = idle.next_event(Duration::from_secs(3));
    assert_eq!(
        kick,
        gateway_tests::Event::Frame(b"KICK idle".to_vec()),
        "{}",
        kick.describe()
    );
}

#[track_caller]
fn assert_fails_before_ready(extra: &[&str], env: &[(&str, &str)]) -> Exited {
    let mut args = LOOPBACK.to_vec();
    args.extend_from_slice(extra);
    let out = run_to_exit(&args, env, Duration::from_secs(10));
    let what = format!("gateway {extra:?} with env {env:?}");
    assert!(
        !out.status.success(),
        "{what} must exit non-zero, got {}",
        out.status
    );
    assert_eq!(
        out.stdout, "",
        "{what} must print nothing on stdout (no READY)"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what} must print a one-line error on stderr, got:\n{}",
        out.stderr
    );
    assert!(
        !lines[0].trim().is_empty(),
        "{what}: the error line is empty"
    );
    out
}

#[test]
fn bad_flags_fail_with_one_line() {
    for args in [
        &["--no-such-flag"][..],
        &["--max-frame-bytes", "abc"],
        &["--max-frame-bytes", "-1"],
        &["--framing", "xml"],
        &["--log-format", "yaml"],
        &["--workers", "many"],
        &["--idle-timeout", "soon"],
        &["--listen", "not-an-address"],
        &["stray-argument"],
    ] {
        assert_fails_before_ready(args, &[]);
    }
}

#[test]
fn bad_gateway_variables_fail_with_one_line() {
    for env in [
        ("GATEWAY_MAX_FRAME_BYTES", "abc"),
        ("GATEWAY_FRAMING", "xml"),
        ("GATEWAY_MAX_CONNECTIONS", "-5"),
        ("GATEWAY_IDLE_TIMEOUT", "soon"),
        ("GATEWAY_LOG_FORMAT", "yaml"),
    ] {
        assert_fails_before_ready(&[], &[env]);
    }
}

#[test]
fn unbindable_addresses_fail_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_fails_before_ready(&["--listen", &addr], &[]);
    assert_fails_before_ready(&["--admin-listen", &addr], &[]);
}

#[test]
fn json_start_up_error_is_one_json_line() {
    let out = assert_fails_before_ready(&["--log-format", "json", "--max-frame-bytes", "abc"], &[]);
    assert_json_lines(&out.stderr);
}

#[test]
fn json_logs_are_json_objects_on_every_line() {
    for framing in Framing::ALL {
        let mut gw = Gateway::start_with_env(
            &["--framing", framing.flag(), "--log-format", "json"],
            &[("RUST_LOG", "debug")],
        );
        let mut client = gw.connect();
        client.hello("logger");
        client.sub("log.topic");
        client.send("NOPE");
        client.expect("ERR unknown-command");
        client.quit();
        let abrupt = gw.connect();
        abrupt.reset();
        gw.sigterm();
        let status = gw.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "exit after SIGTERM: {status}");
        let stderr = gw.stderr();
        assert!(
            !stderr.trim().is_empty(),
            "RUST_LOG=debug logged nothing on stderr"
        );
        assert_json_lines(&stderr);
    }
}

#[track_caller]
fn assert_json_lines(stderr: &str) {
    let body = stderr.strip_suffix('\n').unwrap_or(stderr);
    for line in body.split('\n') {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        assert!(
            value.is_object(),
            "stderr line is JSON but not an object: {line}"
        );
    }
}

#[test]
fn stdout_stays_clean_under_debug_logging() {
    let mut gw = Gateway::start_with_env(&[], &[("RUST_LOG", "debug")]);
    let mut client = gw.connect();
    client.check("PING", "PONG");
    client.quit();
    gw.sigterm();
    gw.wait_exit(Duration::from_secs(10));
    let stdout = gw.stdout();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout holds only READY: {stdout}"
    );
    assert!(stdout.starts_with("READY "), "stdout: {stdout}");
}
