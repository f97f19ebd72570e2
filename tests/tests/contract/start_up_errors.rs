//! Contract section 1, the wording of start-up errors: a bad value names the
//! `GATEWAY_*` variable when it came from one and the flag when it came from
//! the command line, an enum lists its allowed values, an unknown flag points
//! to `--help`, and a listener that cannot be bound fails with the same one
//! `gateway: ...` line as every other start-up error.

use gateway_tests::gateway::run_to_exit;
use std::net::TcpListener;
use std::time::Duration;

const LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];

/// The one stderr line of a gateway that must fail before `READY`.
#[track_caller]
fn error_line(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_to_exit(args, env, Duration::from_secs(10));
    let what = format!("gateway {args:?} with env {env:?}");
    assert!(
        !out.status.success(),
        "{what} must fail, got {}",
        out.status
    );
    assert_eq!(out.stdout, "", "{what}: nothing on stdout");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one stderr line, got:\n{}",
        out.stderr
    );
    lines[0].to_owned()
}

fn with_loopback<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = LOOPBACK.to_vec();
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_bad_variable_is_named_not_its_flag() {
    for (var, value, flag) in [
        ("GATEWAY_MAX_FRAME_BYTES", "abc", "--max-frame-bytes"),
        ("GATEWAY_MAX_CONNECTIONS", "-5", "--max-connections"),
        ("GATEWAY_IDLE_TIMEOUT", "soon", "--idle-timeout"),
    ] {
        let line = error_line(&LOOPBACK, &[(var, value)]);
        assert!(line.starts_with("gateway: "), "{line}");
        assert!(line.contains(var), "{var}={value} must be named: {line}");
        assert!(line.contains(&format!("'{value}'")), "{line}");
        assert!(!line.contains(flag), "{var}={value} is not {flag}: {line}");
    }
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    for args in [
        &["--max-frame-bytes", "abc"][..],
        &["--max-frame-bytes=abc"],
    ] {
        let line = error_line(&with_loopback(args), &[]);
        assert!(line.contains("--max-frame-bytes"), "{line}");
        assert!(line.contains("'abc'"), "{line}");
        assert!(!line.contains("GATEWAY_"), "{line}");
    }
}

#[test]
fn the_flag_wins_over_its_variable_in_the_error_too() {
    let line = error_line(
        &with_loopback(&["--max-frame-bytes", "abc"]),
        &[("GATEWAY_MAX_FRAME_BYTES", "64")],
    );
    assert!(line.contains("--max-frame-bytes"), "{line}");
    assert!(!line.contains("GATEWAY_MAX_FRAME_BYTES"), "{line}");
}

#[test]
fn out_of_range_values_from_variables_are_named() {
    let line = error_line(
        &["--admin-listen", "127.0.0.1:0"],
        &[
            ("GATEWAY_LISTEN", "nowhere"),
            ("GATEWAY_MAX_CONNECTIONS", "0"),
        ],
    );
    assert!(line.contains("GATEWAY_LISTEN 'nowhere'"), "{line}");
    assert!(line.contains("GATEWAY_MAX_CONNECTIONS must be"), "{line}");
    assert!(
        !line.contains("--listen") && !line.contains("--max-connections"),
        "{line}"
    );

    let line = error_line(&with_loopback(&["--workers", "0"]), &[]);
    assert!(line.contains("--workers must be"), "{line}");
}

#[test]
fn enums_list_their_allowed_values() {
    for (args, env, named, allowed) in [
        (
            &["--framing", "xml"][..],
            None,
            "--framing",
            ["lines", "length"],
        ),
        (
            &[],
            Some(("GATEWAY_FRAMING", "xml")),
            "GATEWAY_FRAMING",
            ["lines", "length"],
        ),
        (
            &["--log-format", "yaml"],
            None,
            "--log-format",
            ["text", "json"],
        ),
        (
            &[],
            Some(("GATEWAY_LOG_FORMAT", "yaml")),
            "GATEWAY_LOG_FORMAT",
            ["text", "json"],
        ),
    ] {
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let line = error_line(&with_loopback(args), &env);
        assert!(line.contains(named), "{line}");
        for value in allowed {
            assert!(line.contains(value), "{value} is allowed: {line}");
        }
    }
}

#[test]
fn an_unknown_flag_points_to_help() {
    for arg in ["--no-such-flag", "stray-argument"] {
        let line = error_line(&with_loopback(&[arg]), &[]);
        assert!(line.starts_with("gateway: "), "{line}");
        assert!(line.contains(arg), "{line}");
        assert!(line.contains("--help"), "{line}");
    }
    let line = error_line(&with_loopback(&["--listne", "127.0.0.1:0"]), &[]);
    assert!(
        line.contains("'--listen'"),
        "a near miss names the flag: {line}"
    );
}

#[test]
fn an_address_in_use_is_a_one_line_start_up_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (args, listener) in [
        (
            ["--listen", &addr, "--admin-listen", "127.0.0.1:0"],
            "client",
        ),
        (
            ["--listen", "127.0.0.1:0", "--admin-listen", &addr],
            "admin",
        ),
    ] {
        let line = error_line(&args, &[]);
        assert!(
            line.starts_with("gateway: "),
            "same form as the others: {line}"
        );
        assert!(line.contains(listener) && line.contains(&addr), "{line}");
        assert!(line.contains("in use"), "{line}");
    }
    let line = error_line(
        &[
            "--listen",
            &addr,
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &[],
    );
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let message = value["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("in use") && message.contains(&addr),
        "{line}"
    );
}

#[test]
fn half_a_tls_pair_names_both_flags() {
    for (given, missing) in [
        ("--tls-cert", "--tls-key"),
        ("--tls-key", "--tls-cert"),
        ("--admin-tls-cert", "--admin-tls-key"),
        ("--admin-tls-key", "--admin-tls-cert"),
    ] {
        let line = error_line(&with_loopback(&[given, "file.pem"]), &[]);
        assert!(line.starts_with("gateway: "), "{line}");
        assert!(
            line.contains(given) && line.contains(missing),
            "{given} without {missing} must name both: {line}"
        );
    }
    // From a variable, the variable is named.
    let line = error_line(&LOOPBACK, &[("GATEWAY_TLS_CERT", "file.pem")]);
    assert!(
        line.contains("GATEWAY_TLS_CERT") && line.contains("--tls-key"),
        "{line}"
    );
}
