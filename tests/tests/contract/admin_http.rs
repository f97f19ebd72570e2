//! Contract section 11, the admin listener hardened: connections kept
//! alive, nothing read or acted on after an answer carrying `Connection:
//! close`, a request whose headers or body do not arrive whole within 10 s
//! of its first byte gets 408 and the connection is closed (and stalled
//! requests never hold up fresh ones),
//! the HTTP layer's own errors in the API's JSON shape, `HEAD` on every
//! `GET` route, `WWW-Authenticate: Bearer` on a 401, and the admin token
//! kept out of the logs.

use crate::admin_api::{api, assert_error};
use gateway_tests::Gateway;
use gateway_tests::http::{self, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The contract's bound, plus a second for the answer to travel.
const STALL_ANSWER: Duration = Duration::from_secs(11);

/// Sends `bytes` on a fresh connection and leaves it open.
fn send_raw(gw: &Gateway, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(gw.admin_addr()).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Reads the whole answer (up to EOF, within `within`) and parses it.
#[track_caller]
fn answer(stream: &mut TcpStream, within: Duration) -> Response {
    answer_timed(stream, within).0
}

/// Like [`answer`], with the instant its first byte arrived.
#[track_caller]
fn answer_timed(stream: &mut TcpStream, within: Duration) -> (Response, Instant) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut raw = Vec::new();
    let mut first = None;
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(Instant::now);
                raw.extend_from_slice(&chunk[..n]);
            }
            Err(err) => panic!(
                "no EOF within {within:?} ({err}); read so far: {}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let r = http::parse(&raw).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw)));
    (r, first.unwrap_or_else(Instant::now))
}

/// A POST that announces 100 bytes of body and sends 4.
const STALLED_POST: &[u8] = b"POST /api/v1/broadcast HTTP/1.1\r\nHost: gw\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"da";

#[test]
fn a_stalled_body_gets_408_and_the_connection_closes() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.sync();
    let sent = Instant::now();
    let mut stream = send_raw(&gw, STALLED_POST);
    // The answer within the bound, the close at most a second later.
    let (r, answered) = answer_timed(&mut stream, STALL_ANSWER + Duration::from_secs(2));
    let took = answered - sent;
    assert_error(&r, 408, "request_timeout");
    assert!(took <= STALL_ANSWER, "408 after {took:?}");
    assert!(took >= Duration::from_secs(9), "408 after only {took:?}");
    assert_eq!(r.header("connection"), Some("close"));
    // Nothing of the half request reached the client.
    c.sync();
}

#[test]
fn stalled_headers_get_408_in_the_json_shape() {
    let gw = Gateway::start(&[]);
    let sent = Instant::now();
    let mut stream = send_raw(&gw, b"GET /api/v1/stats HTTP/1.1\r\nHost: g");
    let (r, answered) = answer_timed(&mut stream, STALL_ANSWER + Duration::from_secs(2));
    let took = answered - sent;
    assert_error(&r, 408, "request_timeout");
    assert!(took <= STALL_ANSWER, "408 after {took:?}");
}

#[test]
fn stalled_bodies_do_not_keep_fresh_requests_waiting() {
    let gw = Gateway::start(&[]);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..200).map(|_| send_raw(&gw, STALLED_POST)).collect();
    let opened = started.elapsed();
    // Fresh requests are answered at once, well before any stall ends.
    for _ in 0..5 {
        let asked = Instant::now();
        assert_eq!(gw.http_get("/healthz").status, 200);
        let r = api(
            &gw,
            "POST",
            "/api/v1/broadcast",
            Some(&serde_json::json!({"data": "still here"})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "a fresh request took {took:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "too slow to tell: the stalls may have ended"
    );
    // And every stalled one is answered 408 in time.
    // (read side by side: each answer's arrival is timed as it comes)
    let answers: Vec<(Response, Instant)> = std::thread::scope(|scope| {
        let readers: Vec<_> = stalled
            .iter_mut()
            .map(|stream| {
                scope.spawn(|| answer_timed(stream, STALL_ANSWER + Duration::from_secs(2)))
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut last = started;
    for (r, answered) in &answers {
        assert_error(r, 408, "request_timeout");
        last = last.max(*answered);
    }
    let took = last - started;
    assert!(
        took <= STALL_ANSWER + opened,
        "the last 408 came after {took:?}"
    );
}

#[test]
fn http_layer_errors_have_the_json_shape() {
    let gw = Gateway::start(&[]);
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(200_000));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> =
        vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            b"POST /api/v1/broadcast HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                .to_vec(),
            400,
            "bad_request",
        ),
        (
            b"POST /api/v1/broadcast HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\n{huge_header}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = TcpStream::connect(gw.admin_addr()).unwrap();
        // A server may answer before it has read everything.
        let _ = stream.write_all(&request);
        let r = answer(&mut stream, Duration::from_secs(5));
        assert_error(&r, status, code);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            r.headers
        );
    }
    // A broken chunked body is refused in the same shape.
    let mut stream = send_raw(
        &gw,
        b"POST /api/v1/broadcast HTTP/1.1\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    let r = answer(&mut stream, Duration::from_secs(5));
    assert_eq!(r.status, 400, "{}", r.text());
    crate::admin_api::assert_json(&r);
    assert_eq!(gw.http_get("/healthz").status, 200);
}

#[test]
fn every_get_route_answers_head() {
    let gw = Gateway::start(&["--admin-token", "t0ken"]);
    let mut c = gw.connect();
    let id = c.hello("heady");
    let auth = [("Authorization", "Bearer t0ken")];
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/stats",
        "/api/v1/connections",
        "/api/v1/connections?limit=0",
        &format!("/api/v1/connections/{id}"),
        "/api/v1/connections/999999",
        "/api/v1/topics",
        "/api/v1/openapi.json",
    ] {
        let get = http::request(gw.admin_addr(), "GET", path, &auth, None);
        let head = http::request(gw.admin_addr(), "HEAD", path, &auth, None);
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert!(
            head.body.is_empty(),
            "HEAD {path} has a body: {}",
            head.text()
        );
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
    }
    let r = http::request(gw.admin_addr(), "HEAD", "/api/v1/stats", &[], None);
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
    let r = http::request(gw.admin_addr(), "HEAD", "/api/v1/broadcast", &auth, None);
    assert_eq!(r.status, 405);
    for path in ["/healthz", "/api/v1/stats"] {
        let r = http::request(gw.admin_addr(), "DELETE", path, &auth, None);
        assert_error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{path}");
    }
}

#[test]
fn a_401_names_the_bearer_scheme() {
    let gw = Gateway::start(&["--admin-token", "t0ken"]);
    for auth in [None, Some("Bearer nope"), Some("Basic dDBrZW4=")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        for (method, path) in [("GET", "/api/v1/stats"), ("POST", "/api/v1/drain")] {
            let r = http::request(gw.admin_addr(), method, path, &headers, None);
            assert_error(&r, 401, "unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{auth:?}");
        }
    }
}

#[test]
fn the_admin_token_never_reaches_the_logs() {
    let token = "tok-7f3a9c1e5b";
    let wrong = "wrong-4d2b8e6a0c";
    for format in ["text", "json"] {
        let gw = Gateway::start_with_env(
            &["--admin-token", token, "--log-format", format],
            &[("RUST_LOG", "trace")],
        );
        for presented in [token, wrong] {
            let bearer = format!("Bearer {presented}");
            let headers = [("Authorization", bearer.as_str())];
            http::request(gw.admin_addr(), "GET", "/api/v1/stats", &headers, None);
            http::request(gw.admin_addr(), "GET", "/api/v1/nothing", &headers, None);
            // A request the HTTP layer refuses, with the token in it.
            let mut stream = send_raw(
                &gw,
                format!("GET /api/v1/stats HTTP/1.1\r\nAuthorization: {bearer}\r\nbad\r\n\r\n")
                    .as_bytes(),
            );
            answer(&mut stream, Duration::from_secs(5));
        }
        let mut c = gw.connect();
        c.sync();
        let logs = gw.stderr();
        assert!(!logs.is_empty(), "nothing logged at trace");
        for secret in [token, wrong] {
            assert!(
                !logs.contains(secret),
                "{format} logs hold `{secret}`:\n{logs}"
            );
        }
    }
}

/// `GET /healthz` kept alive.
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

/// A broadcast of `data`, kept alive.
fn broadcast(data: &str) -> Vec<u8> {
    let body = serde_json::json!({ "data": data }).to_string();
    format!(
        "POST /api/v1/broadcast HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A connection to the admin listener that reads answers one at a time.
fn kept_alive(gw: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(gw.admin_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn connections_are_kept_alive_between_requests_pipelined_or_not() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.sync();
    let mut stream = kept_alive(&gw);
    for i in 0..3 {
        stream.write_all(HEALTHZ).unwrap();
        let r = http::read_one(&mut stream).unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_ne!(r.header("connection"), Some("close"), "request {i}");
    }
    // Three at once: three answers, in order, and each one acted on.
    let pipelined = [broadcast("one"), HEALTHZ.to_vec(), broadcast("two")].concat();
    stream.write_all(&pipelined).unwrap();
    let statuses: Vec<u16> = (0..3)
        .map(|_| http::read_one(&mut stream).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200]);
    c.expect("PUSH one");
    c.expect("PUSH two");
    // Still open for more.
    stream.write_all(HEALTHZ).unwrap();
    assert_eq!(http::read_one(&mut stream).unwrap().status, 200);
}

#[test]
fn nothing_after_connection_close_is_read_or_acted_on() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.sync();
    for closing in [
        // The client asks for the close.
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
        // The answer closes: a body announced larger than it is sent whole
        // is refused before it is read, 413.
        b"POST /api/v1/broadcast HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
          Content-Length: 2000000\r\n\r\n{}"
            .to_vec(),
        // An HTTP/1.0 request without keep-alive.
        b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(),
    ] {
        let mut stream = kept_alive(&gw);
        stream
            .write_all(&[closing.clone(), broadcast("must not be sent")].concat())
            .unwrap();
        let first = http::read_one(&mut stream).unwrap();
        if closing.starts_with(b"GET /healthz HTTP/1.0") {
            // HTTP/1.0 closes unless told otherwise.
            assert_eq!(first.header("connection"), None, "{first:?}");
        } else {
            assert_eq!(first.header("connection"), Some("close"), "{first:?}");
        }
        // Then EOF: the broadcast behind it was never answered…
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "answered after close: {}",
            String::from_utf8_lossy(&rest)
        );
    }
    // …nor carried out: the client's next frame is the answer to its PING.
    c.sync();
}

#[test]
fn a_later_request_that_stalls_gets_408_ten_seconds_after_its_first_byte() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.sync();
    for stall in [&b"GET /api/v1/stats HTTP/1.1\r\nHost: g"[..], STALLED_POST] {
        let mut stream = kept_alive(&gw);
        stream.write_all(HEALTHZ).unwrap();
        assert_eq!(http::read_one(&mut stream).unwrap().status, 200);
        // Idle a while: the bound counts from the request's first byte,
        // not from the connection's start.
        std::thread::sleep(Duration::from_secs(2));
        let sent = Instant::now();
        stream.write_all(stall).unwrap();
        let (r, answered) = answer_timed(&mut stream, STALL_ANSWER + Duration::from_secs(2));
        let took = answered - sent;
        assert_error(&r, 408, "request_timeout");
        assert!(took <= STALL_ANSWER, "408 after {took:?}");
        assert!(took >= Duration::from_secs(9), "408 after only {took:?}");
        assert_eq!(r.header("connection"), Some("close"));
    }
    c.sync();
}
