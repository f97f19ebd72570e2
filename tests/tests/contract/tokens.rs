//! Contract section 11, client tokens: `HELLO <user> <token>` with HS256,
//! RS256 and ES256 keys made in the test (the keys with the `openssl` CLI,
//! the tokens with `jsonwebtoken`); accepted, expired, not yet valid, for
//! another user, another key, another algorithm (`alg: none`, HS256 signed
//! with the RSA public key as its secret), malformed or missing: `ERR
//! unauthorized` and a close counted as `unauthorized`; only `PING` and
//! `QUIT` before a valid `HELLO`; the `topics` claim (`ERR forbidden`);
//! `KICK expired` within a second of `exp`, after every push accepted
//! before it; a refusal logged at info with its reason's class,
//! rate-limited; and the token kept out of logs,
//! metrics and the admin API. Over WebSocket (`ws` and `wss`) the same
//! rules, each close with its Close frame: 1008 after `ERR unauthorized`
//! and after `KICK expired`.

use crate::websocket::start_ws_over;
use gateway_tests::tls::Pki;
use gateway_tests::ws::{WsClient, WsEvent};
use gateway_tests::{Client, FRAME_TIMEOUT, Gateway, http};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "client-token-secret-for-the-tests";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn valid(user: &str) -> Value {
    json!({"sub": user, "exp": now() + 600})
}

/// Base64url without padding, to forge tokens by hand.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", b64url(claims.to_string().as_bytes()))
}

/// `HELLO user token`, asserting `OK HELLO <id>`.
#[track_caller]
fn hello(c: &mut Client, user: &str, token: &str) {
    c.send(format!("HELLO {user} {token}"));
    let reply = c.recv();
    assert!(
        reply.starts_with(b"OK HELLO "),
        "HELLO {user}: {}",
        String::from_utf8_lossy(&reply)
    );
}

/// Sends `frame` and asserts `ERR unauthorized`, then EOF.
#[track_caller]
fn refused(gw: &Gateway, frame: &str) {
    let mut c = gw.connect();
    c.send(frame);
    c.expect("ERR unauthorized");
    c.expect_eof();
}

/// A key pair made by `openssl genpkey`, in a directory of its own.
struct KeyPair {
    dir: PathBuf,
}

impl KeyPair {
    fn generate(name: &str, genpkey: &[&str]) -> KeyPair {
        let dir = std::env::temp_dir().join(format!(
            "gateway-tokens-{}-{name}-{}",
            std::process::id(),
            now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("private.pem");
        let public = dir.join("public.pem");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {:?}", out);
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend_from_slice(&["-out", private.to_str().unwrap()]);
        run(&args);
        run(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        KeyPair { dir }
    }

    fn rsa() -> KeyPair {
        KeyPair::generate(
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }

    fn ec() -> KeyPair {
        KeyPair::generate(
            "ec",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn public(&self) -> PathBuf {
        self.dir.join("public.pem")
    }

    fn private_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("private.pem")).unwrap()
    }

    fn public_pem(&self) -> Vec<u8> {
        std::fs::read(self.public()).unwrap()
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_with_key(flag: &str, value: &Path) -> Gateway {
    Gateway::start(&[flag, value.to_str().unwrap()])
}

#[test]
fn before_a_valid_hello_only_ping_and_quit_are_served() {
    let gw = Gateway::start(&["--client-token-secret", SECRET]);
    let mut c = gw.connect();
    c.check("PING", "PONG");
    c.check("PING early", "PONG early");
    for frame in ["SUB news", "UNSUB news", "PUB news hi", "PUB", "FOO", ""] {
        c.check(frame, "ERR unauthorized");
    }
    // A bad user name is answered as ever, and the connection stays.
    c.check("HELLO a/b token", "ERR bad-user");
    c.check("HELLO", "ERR bad-user");
    hello(&mut c, "alice", &hs256(&valid("alice")));
    c.sub("news");
    c.check("PUB news hi", "MSG news hi");
    c.check(
        format!("HELLO alice {}", hs256(&valid("alice"))),
        "ERR already-identified",
    );
    c.quit();
    let mut early = gw.connect();
    early.check("QUIT", "BYE");
    early.expect_eof();
    assert_eq!(
        gw.metric(
            "gateway_connections_closed_total",
            &[("reason", "unauthorized")]
        ),
        0.0
    );
}

#[test]
fn bad_tokens_are_refused_and_closed() {
    let gw = Gateway::start(&["--client-token-secret", SECRET]);
    let n = now();
    let other_key = sign(
        &valid("alice"),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret"),
    );
    let hs384 = sign(
        &valid("alice"),
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    let cases = [
        ("expired", hs256(&json!({"sub": "alice", "exp": n - 60}))),
        (
            "not yet valid",
            hs256(&json!({"sub": "alice", "exp": n + 600, "nbf": n + 120})),
        ),
        ("another user", hs256(&valid("mallory"))),
        ("another key", other_key),
        ("another algorithm", hs384),
        ("alg none", unsigned(&valid("alice"))),
        ("malformed", "not.a.jwt".to_string()),
        ("garbage", "%%%".to_string()),
        ("no exp", hs256(&json!({"sub": "alice"}))),
    ];
    for (what, token) in &cases {
        let mut c = gw.connect();
        c.send(format!("HELLO alice {token}"));
        match c.recv_within(Duration::from_secs(5)) {
            frame if frame == b"ERR unauthorized" => {}
            other => panic!("{what}: {}", String::from_utf8_lossy(&other)),
        }
        c.expect_eof();
    }
    refused(&gw, "HELLO alice");
    refused(&gw, "HELLO alice ");
    let expected = (cases.len() + 2) as f64;
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "unauthorized")],
        expected,
    );
    // Within the leeway: accepted.
    let mut c = gw.connect();
    hello(
        &mut c,
        "alice",
        &hs256(&json!({"sub": "alice", "exp": n + 600, "nbf": n + 20})),
    );
}

#[test]
fn rs256_and_es256_tokens_and_no_algorithm_confusion() {
    let rsa = KeyPair::rsa();
    let ec = KeyPair::ec();
    let rsa_key = EncodingKey::from_rsa_pem(&rsa.private_pem()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(&ec.private_pem()).unwrap();

    let gw = start_with_key("--client-token-public-key", &rsa.public());
    let mut c = gw.connect();
    hello(
        &mut c,
        "ron",
        &sign(&valid("ron"), Algorithm::RS256, &rsa_key),
    );
    for token in [
        // HS256 with the public key as its secret: the classic confusion.
        sign(
            &valid("ron"),
            Algorithm::HS256,
            &EncodingKey::from_secret(&rsa.public_pem()),
        ),
        sign(&valid("ron"), Algorithm::ES256, &ec_key),
        unsigned(&valid("ron")),
    ] {
        refused(&gw, &format!("HELLO ron {token}"));
    }

    let gw = start_with_key("--client-token-public-key", &ec.public());
    let mut c = gw.connect();
    hello(
        &mut c,
        "eve",
        &sign(&valid("eve"), Algorithm::ES256, &ec_key),
    );
    for token in [
        sign(
            &valid("eve"),
            Algorithm::HS256,
            &EncodingKey::from_secret(&ec.public_pem()),
        ),
        sign(&valid("eve"), Algorithm::RS256, &rsa_key),
    ] {
        refused(&gw, &format!("HELLO eve {token}"));
    }
}

#[test]
fn the_topics_claim_limits_sub_and_pub() {
    let gw = Gateway::start(&["--client-token-secret", SECRET]);
    let claims = json!({"sub": "tina", "exp": now() + 600, "topics": ["news", "chat/*"]});
    let mut c = gw.connect();
    hello(&mut c, "tina", &hs256(&claims));
    c.sub("news");
    c.sub("chat/room1");
    c.check("SUB newsroom", "ERR forbidden");
    c.check("SUB chat", "ERR forbidden");
    c.check("PUB other hi", "ERR forbidden");
    c.check("PUB chat/room1 hi", "MSG chat/room1 hi");
    c.check("UNSUB other", "OK UNSUB other");
    c.sync();
    // No claim: any topic.
    let mut free = gw.connect();
    hello(&mut free, "fred", &hs256(&valid("fred")));
    free.sub("anything/at/all");
}

#[test]
fn kick_expired_comes_within_a_second_of_exp() {
    let gw = Gateway::start(&["--client-token-secret", SECRET]);
    let exp = now() + 3;
    let mut c = gw.connect();
    hello(
        &mut c,
        "brief",
        &hs256(&json!({"sub": "brief", "exp": exp})),
    );
    c.sync();
    let frame = c.recv_within(Duration::from_secs(8));
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(String::from_utf8_lossy(&frame), "KICK expired");
    let exp = Duration::from_secs(exp);
    assert!(
        at + Duration::from_millis(50) >= exp,
        "kicked before exp: {at:?} < {exp:?}"
    );
    assert!(
        at <= exp + Duration::from_secs(1),
        "kicked late: {at:?} > {exp:?} + 1 s"
    );
    c.expect_eof();
    // Closed on our side too, so the gateway's linger ends.
    drop(c);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "expired")],
        1.0,
    );
}

#[test]
fn the_token_reaches_no_log_metric_or_admin_answer() {
    let gw = Gateway::start_with_env(
        &["--client-token-secret", SECRET, "--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    let good = hs256(&valid("logan"));
    let bad = hs256(&json!({"sub": "logan", "exp": now() - 600}));
    refused(&gw, &format!("HELLO logan {bad}"));
    let mut c = gw.connect();
    hello(&mut c, "logan", &good);
    c.sub("news");
    let answers = [
        gw.http_get("/api/v1/connections").text(),
        gw.http_get("/api/v1/stats").text(),
        gw.http_get("/metrics").text(),
    ];
    c.quit();
    let logs = gw.stderr();
    for token in [&good, &bad] {
        // The signature alone would identify it.
        let signature = token.rsplit('.').next().unwrap();
        for (what, text) in [("logs", &logs)]
            .into_iter()
            .chain(answers.iter().map(|a| ("an admin answer", a)))
        {
            assert!(!text.contains(signature), "{what} hold a token:\n{text}");
        }
    }
    assert!(!logs.contains(SECRET), "the logs hold the secret");
    assert!(answers[0].contains("logan"), "{}", answers[0]);
}

#[test]
fn without_a_key_hello_is_as_before() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.check(
        format!("HELLO alice {}", hs256(&valid("alice"))),
        "ERR bad-user",
    );
    c.hello("alice");
    let _ = http::get(gw.admin_addr(), "/healthz");
}

#[test]
fn unusable_keys_stop_the_start() {
    let dir = std::env::temp_dir().join(format!("gateway-badkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_a_key = dir.join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let missing = dir.join("missing.pem");
    for args in [
        vec!["--client-token-public-key", not_a_key.to_str().unwrap()],
        vec!["--client-token-public-key", missing.to_str().unwrap()],
        vec!["--client-token-secret", ""],
        vec![
            "--client-token-secret",
            "x",
            "--client-token-public-key",
            not_a_key.to_str().unwrap(),
        ],
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        all.extend_from_slice(&args);
        let exited = gateway_tests::gateway::run_to_exit(&all, &[], Duration::from_secs(10));
        assert!(!exited.status.success(), "{args:?} started");
        assert!(exited.stdout.is_empty(), "{args:?}: {}", exited.stdout);
        assert!(
            exited.stderr.contains("client-token"),
            "{args:?}: {}",
            exited.stderr
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `HELLO user token` over WebSocket, asserting `OK HELLO <id>`.
#[track_caller]
fn ws_hello(c: &mut WsClient, user: &str, token: &str) {
    c.send_text(&format!("HELLO {user} {token}"));
    match c.recv() {
        WsEvent::Text(reply) if reply.starts_with("OK HELLO ") => {}
        other => panic!("HELLO {user}: {other:?}"),
    }
}

#[test]
fn over_websocket_a_bad_token_gets_err_unauthorized_then_1008() {
    for pki in [None, Some(Pki::new("tokens wss CA"))] {
        let over = if pki.is_some() { "wss" } else { "ws" };
        let gw = start_ws_over(pki.as_ref(), &["--client-token-secret", SECRET]);
        let mut c = gw.ws_connect();
        // Before a valid HELLO: PING served, the rest refused, still open.
        c.check("PING", "PONG");
        c.check("SUB news", "ERR unauthorized");
        c.check("PUB news hi", "ERR unauthorized");
        let expired = hs256(&json!({"sub": "alice", "exp": now() - 60}));
        c.send_text(&format!("HELLO alice {expired}"));
        c.expect_text("ERR unauthorized");
        c.expect_close(1008);

        for hello in [
            "HELLO alice".to_string(),
            format!("HELLO alice {}", hs256(&valid("mallory"))),
            "HELLO alice not.a.jwt".to_string(),
        ] {
            let mut c = gw.ws_connect();
            c.send_text(&hello);
            c.expect_text("ERR unauthorized");
            c.expect_close(1008);
        }
        gw.wait_metric_eq(
            "gateway_connections_closed_total",
            &[("reason", "unauthorized")],
            4.0,
        );
        assert_eq!(
            gw.metric("gateway_connections_accepted_total", &[]),
            4.0,
            "{over}"
        );
    }
}

#[test]
fn over_websocket_a_good_token_is_served_within_its_topics() {
    let gw = start_ws_over(None, &["--client-token-secret", SECRET]);
    let claims = json!({"sub": "tina", "exp": now() + 600, "topics": ["news", "chat/*"]});
    let mut c = gw.ws_connect();
    ws_hello(&mut c, "tina", &hs256(&claims));
    c.sub("news");
    c.sub("chat/room1");
    c.check("SUB newsroom", "ERR forbidden");
    c.check("PUB other hi", "ERR forbidden");
    c.check("PUB chat/room1 hi", "MSG chat/room1 hi");
    // A line client without a claim sees the granted publish, not the
    // refused one.
    let mut free = gw.connect();
    hello(&mut free, "fred", &hs256(&valid("fred")));
    free.sub("other");
    free.sub("chat/room1");
    c.check("PUB other unseen", "ERR forbidden");
    c.check("PUB chat/room1 seen", "MSG chat/room1 seen");
    free.expect("MSG chat/room1 seen");
    // Refusals leave the connection open.
    c.check("PING still open", "PONG still open");
    c.send_text("QUIT");
    c.expect_text("BYE");
    c.expect_close(1000);
}

#[test]
fn over_websocket_an_expiring_token_gets_kick_expired_then_1008() {
    let gw = start_ws_over(None, &["--client-token-secret", SECRET]);
    let exp = now() + 2;
    let mut c = gw.ws_connect();
    ws_hello(
        &mut c,
        "brief",
        &hs256(&json!({"sub": "brief", "exp": exp})),
    );
    c.check("PING before exp", "PONG before exp");
    let kick = c.next_event(Duration::from_secs(2) + FRAME_TIMEOUT);
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(kick, WsEvent::Text("KICK expired".into()));
    assert!(
        at + Duration::from_millis(50) >= Duration::from_secs(exp),
        "kicked before exp: {at:?} < {exp} s"
    );
    c.expect_close(1008);
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "expired")],
        1.0,
    );
}

#[test]
fn pushes_accepted_before_the_token_expires_all_arrive_before_kick_expired() {
    let gw = Gateway::start(&["--client-token-secret", SECRET]);
    let exp = now() + 2;
    let users: Vec<String> = (0..8).map(|i| format!("expiring-{i}")).collect();
    let clients: Vec<Client> = users
        .iter()
        .map(|user| {
            let mut c = gw.connect();
            hello(&mut c, user, &hs256(&json!({"sub": user, "exp": exp})));
            c
        })
        .collect();
    std::thread::scope(|scope| {
        for (user, mut c) in users.iter().zip(clients) {
            let gw = &gw;
            scope.spawn(move || {
                // A backend pushes without pause, on one kept-alive
                // connection, until the user is gone (404) or closing (409).
                let pusher = scope.spawn(move || {
                    let mut admin = std::net::TcpStream::connect(gw.admin_addr()).unwrap();
                    admin.set_read_timeout(Some(FRAME_TIMEOUT)).unwrap();
                    let mut accepted = 0u64;
                    loop {
                        let body = json!({ "data": format!("n{accepted}") }).to_string();
                        let request = format!(
                            "POST /api/v1/users/{user}/send HTTP/1.1\r\nHost: gw\r\n\
                             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        std::io::Write::write_all(&mut admin, request.as_bytes()).unwrap();
                        match http::read_one(&mut admin).unwrap().status {
                            202 => accepted += 1,
                            404 | 409 => return accepted,
                            other => panic!("a push answered {other}"),
                        }
                    }
                });
                let (frames, _) = c.read_to_end(Duration::from_secs(10));
                let accepted = pusher.join().unwrap();
                let (last, pushes) = frames.split_last().expect("frames");
                assert_eq!(String::from_utf8_lossy(last), "KICK expired", "{user}");
                for (i, push) in pushes.iter().enumerate() {
                    assert_eq!(
                        String::from_utf8_lossy(push),
                        format!("PUSH n{i}"),
                        "{user}: push {i}"
                    );
                }
                assert_eq!(
                    pushes.len() as u64,
                    accepted,
                    "{user}: pushes answered 202 but not delivered before KICK expired"
                );
            });
        }
    });
}

/// The JSON lines of `gw`'s stderr that log a refused token at info.
fn refusal_lines(gw: &Gateway) -> Vec<Value> {
    gw.stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "client token refused" && line["level"] == "INFO")
        .collect()
}

#[test]
fn a_refused_token_is_logged_at_info_with_its_reason_never_the_token() {
    // One worker: the line is rate-limited per worker, to one a second.
    let mut gw = Gateway::start(&[
        "--client-token-secret",
        SECRET,
        "--workers",
        "1",
        "--log-format",
        "json",
    ]);
    let n = now();
    let other_key = sign(
        &valid("alice"),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret"),
    );
    let cases = [
        ("expired", hs256(&json!({"sub": "alice", "exp": n - 60}))),
        ("bad_signature", other_key),
        ("wrong_sub", hs256(&valid("mallory"))),
        ("malformed", "not.a.jwt".to_string()),
        ("missing", String::new()),
    ];
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    for (reason, token) in &cases {
        let frame = format!("HELLO alice {token}");
        // Refused again and again until its line comes: the one before it
        // may have taken this second's line.
        let seen = gateway_tests::poll::eventually(Duration::from_secs(5), || {
            refused(&gw, frame.trim_end());
            sent += 1;
            refusal_lines(&gw)
                .into_iter()
                .find(|line| line["reason"] == *reason)
        });
        let line = seen
            .unwrap_or_else(|| panic!("no info line for a {reason} token in:\n{}", gw.stderr()));
        assert_eq!(line["user"], "alice", "{line}");
        assert!(
            line["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{line}"
        );
        assert!(
            line["conn_id"].is_string() || line["conn_id"].is_number(),
            "{line}"
        );
    }
    let elapsed = started.elapsed();
    gw.sigterm();
    gw.wait_exit(Duration::from_secs(10));
    let lines = refusal_lines(&gw);
    // At most one line a second, each counting the refusals held back.
    assert!(
        lines.len() as u64 <= elapsed.as_secs() + 1,
        "{} lines in {elapsed:?}",
        lines.len()
    );
    let logged: u64 = lines
        .iter()
        .map(|line| 1 + line["suppressed"].as_u64().unwrap())
        .sum();
    assert!(logged <= sent, "{logged} refusals logged, {sent} sent");
    assert!(
        lines
            .iter()
            .any(|line| line["suppressed"].as_u64() > Some(0)),
        "refusals held back are counted: {lines:?}"
    );
    let stderr = gw.stderr();
    for (_, token) in cases.iter().filter(|(_, token)| !token.is_empty()) {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!stderr.contains(signature), "a token in the log:\n{stderr}");
    }
}
