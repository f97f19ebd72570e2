//! Contract section 7, the admin API's errors: every code with its status
//! and the `{"error":{"code","message"}}` shape, `--admin-token`, bodies at
//! and over 1 MiB, content types, what answers while draining, and a sweep
//! of a few hundred random requests that must never get a 5xx or an error
//! outside the shape.

use crate::admin_api::{api, assert_error, assert_json, error_code, get_ok};
use gateway_tests::Gateway;
use gateway_tests::http::{self, Response};
use serde_json::json;

fn raw(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http::request(gw.admin_addr(), method, path, headers, Some(body))
}

fn post_json(gw: &Gateway, path: &str, body: &str) -> Response {
    raw(
        gw,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn bad_bodies_get_their_400s() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.hello("target");
    let send = "/api/v1/users/target/send";
    let cases = [
        ("not json", "invalid_json"),
        ("{\"data\":", "invalid_json"),
        ("\u{0}", "invalid_json"),
        ("[1,2]", "bad_request"),
        ("\"data\"", "bad_request"),
        ("{}", "bad_request"),
        (r#"{"data":"x","data_base64":"eA=="}"#, "bad_request"),
        (r#"{"data":null}"#, "bad_request"),
        (r#"{"data":1}"#, "bad_request"),
        (r#"{"data":["x"]}"#, "bad_request"),
        (r#"{"data_base64":true}"#, "bad_request"),
        (r#"{"data":"x","more":1}"#, "bad_request"),
        (r#"{"data_base64":"not base64!"}"#, "invalid_payload"),
        (r#"{"data_base64":"eA"}"#, "invalid_payload"),
        (r#"{"data_base64":"-_-_"}"#, "invalid_payload"),
        (r#"{"data":"line\nbreak"}"#, "invalid_payload"),
        (r#"{"data":"carriage return\r"}"#, "invalid_payload"),
    ];
    for path in [send, "/api/v1/topics/t/publish", "/api/v1/broadcast"] {
        for (body, code) in cases {
            let r = post_json(&gw, path, body);
            assert_error(&r, 400, code);
        }
        // A message endpoint needs a body.
        let r = raw(&gw, "POST", path, &[], b"");
        assert_error(&r, 400, "bad_request");
    }
    let close = "/api/v1/users/target/close";
    for (body, code) in [
        (r#"{"reason":"shutdown"}"#, "bad_request"),
        (r#"{"reason":1}"#, "bad_request"),
        (r#"{"message":2}"#, "bad_request"),
        (r#"{"message":"x","data":"y"}"#, "bad_request"),
        (r#"{"message":"two\nlines"}"#, "invalid_payload"),
        ("{", "invalid_json"),
    ] {
        let r = post_json(&gw, close, body);
        assert_error(&r, 400, code);
    }
    let r = post_json(&gw, "/api/v1/drain", r#"{"now":true}"#);
    assert_error(&r, 400, "bad_request");
    // Nothing of the above reached the client or closed it.
    c.sync();
}

#[test]
fn bad_names_and_queries_get_their_400s() {
    let gw = Gateway::start(&[]);
    let message = json!({"data": "x"});
    let too_long = "u".repeat(129);
    for user in ["a%20b", "caf%C3%A9", "x%2Fy", too_long.as_str()] {
        for action in ["send", "close"] {
            let r = api(
                &gw,
                "POST",
                &format!("/api/v1/users/{user}/{action}"),
                Some(&message),
            );
            assert_error(&r, 400, "bad_user");
        }
    }
    let long_topic = "t".repeat(257);
    for topic in ["a%20b", "a%40b", long_topic.as_str()] {
        let r = api(
            &gw,
            "POST",
            &format!("/api/v1/topics/{topic}/publish"),
            Some(&message),
        );
        assert_error(&r, 400, "bad_topic");
    }
    let list = "/api/v1/connections";
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "limit=1.5",
        "limit=",
        "limit=1&limit=2",
        "cursor=",
        "cursor=zz",
        "cursor=%00",
        "sort=id",
    ] {
        let r = api(&gw, "GET", &format!("{list}?{query}"), None);
        assert_error(&r, 400, "bad_request");
    }
    let r = api(&gw, "GET", &format!("{list}?user=a%20b"), None);
    assert_error(&r, 400, "bad_user");
    let r = api(&gw, "GET", &format!("{list}?topic=a%20b"), None);
    assert_error(&r, 400, "bad_topic");
    for ok in [
        "limit=1",
        "limit=1000",
        "user=x",
        "topic=a/b",
        "user=a&topic=b&limit=5",
    ] {
        get_ok(&gw, &format!("{list}?{ok}"));
    }
}

#[test]
fn unknown_routes_and_methods() {
    let gw = Gateway::start(&[]);
    for path in [
        "/api",
        "/api/v1",
        "/api/v2/stats",
        "/api/v1/stats/",
        "/api/v1/nothing",
        "/api/v1/connections/1/kick",
        "/api/v1/users/bob",
        "/api/v1/topics/t",
        "/nothing",
    ] {
        let r = api(&gw, "GET", path, None);
        assert_error(&r, 404, "not_found");
    }
    for (method, path) in [
        ("POST", "/api/v1/stats"),
        ("DELETE", "/api/v1/connections"),
        ("PUT", "/api/v1/connections/1"),
        ("GET", "/api/v1/connections/1/send"),
        ("GET", "/api/v1/users/bob/close"),
        ("DELETE", "/api/v1/topics"),
        ("GET", "/api/v1/topics/a/b/publish"),
        ("GET", "/api/v1/broadcast"),
        ("PATCH", "/api/v1/drain"),
        ("POST", "/healthz"),
        ("PUT", "/readyz"),
        ("DELETE", "/metrics"),
    ] {
        let r = api(&gw, method, path, None);
        assert_error(&r, 405, "method_not_allowed");
        assert!(
            r.header("allow").is_some(),
            "{method} {path}: no Allow header"
        );
    }
}

#[test]
fn bodies_over_one_mebibyte_get_413() {
    let gw = Gateway::start(&["--framing", "length"]);
    const MIB: usize = 1024 * 1024;
    let prefix = br#"{"data":""#;
    let exact = {
        let mut b = prefix.to_vec();
        b.resize(MIB - 2, b'x');
        b.extend_from_slice(br#""}"#);
        b
    };
    assert_eq!(exact.len(), MIB);
    let json = [("Content-Type", "application/json")];
    let r = raw(&gw, "POST", "/api/v1/broadcast", &json, &exact);
    assert_eq!(r.status, 200, "exactly 1 MiB is allowed: {}", r.text());
    let mut over = exact.clone();
    over.insert(prefix.len(), b'x');
    let r = raw(&gw, "POST", "/api/v1/broadcast", &json, &over);
    assert_error(&r, 413, "payload_too_large");
    let r = raw(
        &gw,
        "POST",
        "/api/v1/users/u/send",
        &json,
        &vec![b' '; 3 * MIB],
    );
    assert_error(&r, 413, "payload_too_large");
    // Still answering afterwards.
    get_ok(&gw, "/api/v1/stats");
}

#[test]
fn only_json_bodies_are_accepted() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.hello("typed");
    let body = br#"{"data":"typed"}"#;
    let path = "/api/v1/users/typed/send";
    for ctype in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("json"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ctype.map(|t| ("Content-Type", t)).into_iter().collect();
        let r = raw(&gw, "POST", path, &headers, body);
        assert_error(&r, 415, "unsupported_media_type");
    }
    for ctype in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ] {
        let r = raw(&gw, "POST", path, &[("Content-Type", ctype)], body);
        assert_eq!(r.status, 202, "{ctype}: {}", r.text());
        c.expect("PUSH typed");
    }
    // No body, no type needed; a type on an empty body is ignored.
    let r = raw(
        &gw,
        "POST",
        "/api/v1/users/typed/close",
        &[("Content-Type", "text/plain")],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    c.expect("KICK admin");
}

#[test]
fn the_token_guards_the_api_only() {
    let gw = Gateway::start(&["--admin-token", "s3cret-token"]);
    let paths = [
        "/api/v1/stats",
        "/api/v1/connections",
        "/api/v1/nothing",
        "/api",
    ];
    for path in paths {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-tokenn"),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
            Some("Bearer"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let r = http::request(gw.admin_addr(), "GET", path, &headers, None);
            assert_error(&r, 401, "unauthorized");
        }
    }
    let r = raw(&gw, "POST", "/api/v1/drain", &[], b"");
    assert_error(&r, 401, "unauthorized");
    let ok = [("Authorization", "Bearer s3cret-token")];
    let r = http::request(gw.admin_addr(), "GET", "/api/v1/stats", &ok, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http::request(gw.admin_addr(), "GET", "/api/v1/nothing", &ok, None);
    assert_error(&r, 404, "not_found");
    let r = http::request(gw.admin_addr(), "GET", "/api/v1/openapi.json", &ok, None);
    assert_eq!(r.status, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(gw.http_get(open).status, 200, "{open} needs no token");
    }
    // The drain was refused: still ready.
    assert_eq!(gw.http_get("/readyz").status, 200);
}

#[test]
fn while_draining_output_is_refused_and_reads_answer() {
    let gw = Gateway::start(&["--close-timeout", "5", "--shutdown-timeout", "5"]);
    // A client that never closes its side keeps the gateway up for the
    // close timeout after the drain kicks it.
    let mut c = gw.connect();
    let id = c.hello("stays");
    c.sub("t");
    let r = api(&gw, "POST", "/api/v1/drain", None);
    assert_eq!(r.status, 202, "{}", r.text());
    let message = json!({"data": "x"});
    for (path, body) in [
        (format!("/api/v1/connections/{id}/send"), Some(&message)),
        ("/api/v1/users/stays/send".to_string(), Some(&message)),
        (format!("/api/v1/connections/{id}/close"), None),
        ("/api/v1/users/stays/close".to_string(), None),
        ("/api/v1/topics/t/publish".to_string(), Some(&message)),
        ("/api/v1/broadcast".to_string(), Some(&message)),
    ] {
        let r = api(&gw, "POST", &path, body);
        assert_error(&r, 503, "draining");
    }
    let stats = get_ok(&gw, "/api/v1/stats");
    assert_eq!(stats["draining"], true, "{stats}");
    get_ok(&gw, "/api/v1/connections");
    get_ok(&gw, "/api/v1/topics");
    get_ok(&gw, &format!("/api/v1/connections/{id}"));
    let r = api(&gw, "POST", "/api/v1/drain", None);
    assert_eq!(r.status, 202, "a second drain: {}", r.text());
    assert_eq!(gw.http_get("/readyz").status, 503);
    assert_eq!(gw.http_get("/healthz").status, 200);
    c.expect("KICK shutdown");
    c.expect_eof();
}

/// A small deterministic generator (SplitMix64), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn random_requests_never_get_a_5xx_or_a_shapeless_error() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    let id = c.hello("fuzz");
    c.sub("fuzz/topic");
    let mut rng = Rng(0x5EED_ADD1);
    let segments: [&str; 22] = [
        "stats",
        "connections",
        "users",
        "topics",
        "broadcast",
        "drain",
        "send",
        "close",
        "publish",
        "openapi.json",
        id.as_str(),
        "fuzz",
        "fuzz/topic",
        "0",
        "%2F",
        "%ZZ",
        "..",
        "%00",
        "a%20b",
        "x",
        "",
        "99999999999999999999999",
    ];
    let methods: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let bodies: [&str; 14] = [
        "",
        "{}",
        r#"{"data":"hi"}"#,
        r#"{"data_base64":"aGk="}"#,
        r#"{"data":"a","data_base64":"YQ=="}"#,
        r#"{"data_base64":"%%%"}"#,
        r#"{"reason":"admin","message":"m"}"#,
        r#"{"reason":"x"}"#,
        "[",
        "null",
        "12",
        r#"{"data":"\u0000\n"}"#,
        "\u{ff}\u{fe}",
        r#"{"data":{"nested":[1,2,{"x":null}]}}"#,
    ];
    let types: [&str; 5] = [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
    ];
    let queries: [&str; 6] = [
        "",
        "?limit=5",
        "?limit=abc",
        "?cursor=zz",
        "?user=fuzz",
        "?topic=%FF",
    ];
    for round in 0..300 {
        let depth = 1 + rng.next() % 4;
        let mut path = String::from("/api/v1");
        for _ in 0..depth {
            path.push('/');
            path.push_str(rng.pick(&segments));
        }
        path.push_str(rng.pick(&queries));
        let method = rng.pick(&methods);
        let body = rng.pick(&bodies);
        let ctype = rng.pick(&types);
        let headers: Vec<(&str, &str)> = (!ctype.is_empty())
            .then_some(("Content-Type", ctype))
            .into_iter()
            .collect();
        // Drain is left out: it would end the run.
        if path.contains("/drain") && method == "POST" {
            continue;
        }
        let r = http::try_request(
            gw.admin_addr(),
            method,
            &path,
            &headers,
            (!body.is_empty()).then_some(body.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("round {round}: {method} {path}: {e}"));
        let what = format!("round {round}: {method} {path} [{ctype}] {body:?}");
        assert!(r.status < 500, "{what}: {} {}", r.status, r.text());
        if r.status >= 400 {
            assert!(
                error_code(&r).is_some(),
                "{what}: error not in shape: {}",
                r.text()
            );
            assert_json(&r);
        }
    }
    // Whatever it was sent, the gateway still serves.
    assert!(gw.http_get("/healthz").status == 200);
}
