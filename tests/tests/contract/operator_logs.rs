//! What an operator reads on stderr at the default level (docs/protocol.md
//! section 1, the log): the start-up names the gateway's own workers and no
//! other, and a client's malformed request to the admin listener is no
//! error. Both lines are still there, at debug, for whoever asks for debug.

use gateway_tests::ws::raw_request;
use gateway_tests::{Gateway, assert_eventually};
use std::time::Duration;

/// Stderr of a gateway that ran `between` and was then stopped.
fn stderr_of(flags: &[&str], env: &[(&str, &str)], between: impl FnOnce(&Gateway)) -> String {
    let mut gw = Gateway::start_with_env(flags, env);
    between(&gw);
    gw.sigterm();
    gw.wait_exit(Duration::from_secs(10));
    gw.stderr()
}

/// The stderr lines that mention `text`.
fn lines_with<'a>(stderr: &'a str, text: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(text)).collect()
}

#[test]
fn the_start_up_names_only_the_gateways_workers() {
    let stderr = stderr_of(&["--workers", "2"], &[], |gw| {
        // The admin server is up once it answers.
        assert_eq!(gw.http_get("/healthz").status, 200);
    });
    let ready = lines_with(&stderr, "gateway ready");
    assert!(
        ready.len() == 1 && ready[0].contains("workers=2"),
        "{stderr}"
    );
    for other in ["workers", "actix_server"] {
        let lines: Vec<_> = lines_with(&stderr, other)
            .into_iter()
            .filter(|l| !l.contains("gateway ready"))
            .collect();
        assert!(
            lines.is_empty(),
            "at info, only `gateway ready` names workers: {lines:#?}"
        );
    }
}

#[test]
fn at_debug_the_admin_servers_start_is_shown_as_debug() {
    let gw = Gateway::start_with_env(&[], &[("RUST_LOG", "actix_server=debug")]);
    assert_eventually!(
        !lines_with(&gw.stderr(), "starting 1 workers").is_empty(),
        Duration::from_secs(5),
        "no `starting 1 workers` at debug:\n{}",
        gw.stderr()
    );
    let stderr = gw.stderr();
    for line in lines_with(&stderr, "actix_server") {
        assert!(line.contains("DEBUG"), "{line}");
    }
}

const MALFORMED: [&[u8]; 3] = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
];

#[test]
fn a_malformed_admin_request_is_not_logged_as_an_error() {
    let stderr = stderr_of(&[], &[], |gw| {
        for request in MALFORMED {
            assert_eq!(raw_request(gw.admin_addr(), request).status, 400);
        }
    });
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(
        errors.is_empty(),
        "a client's bad request is no error: {errors:#?}"
    );
}

#[test]
fn at_debug_a_malformed_admin_request_is_logged_as_debug() {
    let gw = Gateway::start_with_env(
        &["--log-format", "json"],
        &[("RUST_LOG", "actix_http=debug")],
    );
    assert_eq!(raw_request(gw.admin_addr(), MALFORMED[0]).status, 400);
    let parse_errors = || {
        gw.stderr()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("request parse error"))
            })
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        !parse_errors().is_empty(),
        Duration::from_secs(5),
        "no `request parse error` line at debug:\n{}",
        gw.stderr()
    );
    for line in parse_errors() {
        assert_eq!(line["level"], "DEBUG", "{line}");
    }
}
