//! Contract section 7, the admin JSON API, endpoint by endpoint: stats,
//! the connection list with its filters and cursor paging, one connection,
//! send and close by id and by user (in mailbox order, `closing` and 409
//! while a close lingers), publish, topics, broadcast, and the OpenAPI
//! document against the real routes. Errors, the token, draining and a
//! random-request sweep are in `admin_errors`.

use crate::common::{msg, start};
use gateway_tests::http::{self, Response};
use gateway_tests::{Event, FRAME_TIMEOUT, Framing, Gateway, assert_eventually};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A request to the admin API; a body is sent as `application/json`.
pub fn api(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Response {
    let text = body.map(Value::to_string);
    let headers: &[(&str, &str)] = match body {
        Some(_) => &[("Content-Type", "application/json")],
        None => &[],
    };
    http::request(
        gw.admin_addr(),
        method,
        path,
        headers,
        text.as_deref().map(str::as_bytes),
    )
}

/// `GET path`, asserting a 200 JSON answer.
#[track_caller]
pub fn get_ok(gw: &Gateway, path: &str) -> Value {
    let r = api(gw, "GET", path, None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    assert_json(&r);
    r.json()
}

/// Asserts the response is JSON by its type and its body.
#[track_caller]
pub fn assert_json(r: &Response) {
    let ctype = r.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("application/json"),
        "content-type `{ctype}` for {} {}",
        r.status,
        r.text()
    );
    let _ = r.json();
}

/// Asserts an error answer: `status` and `{"error":{"code","message"}}`.
#[track_caller]
pub fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, error_code(r).as_deref()),
        (status, Some(code)),
        "expected {status} {code}, got: {}",
        r.text()
    );
}

/// The `error.code` of an error body, checking its shape.
pub fn error_code(r: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    let error = body.get("error")?.as_object()?;
    error.get("message")?.as_str()?;
    (error.len() == 2).then_some(())?;
    Some(error.get("code")?.as_str()?.to_string())
}

/// The ids of every connection, walking the pages with `limit`.
fn walk(gw: &Gateway, query: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/connections?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_ok(gw, &path);
        pages += 1;
        let conns = page["connections"].as_array().expect("connections");
        ids.extend(
            conns
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_string()),
        );
        match &page["next_cursor"] {
            Value::Null => return (ids, pages),
            Value::String(next) => {
                assert_eq!(conns.len(), limit, "a page before the last one is full");
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor {other}"),
        }
        assert!(pages < 100, "paging does not end");
    }
}

fn active(gw: &Gateway) -> i64 {
    get_ok(gw, "/api/v1/stats")["connections"]["active"]
        .as_i64()
        .expect("active")
}

#[test]
fn stats_has_every_field_with_its_type() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.hello("stats-user");
    c.sub("t1");
    c.sub("t2");
    let stats = get_ok(&gw, "/api/v1/stats");
    for key in ["active", "accepted", "closed", "rejected"] {
        assert!(
            stats["connections"][key].is_u64(),
            "connections.{key}: {stats}"
        );
    }
    for key in ["idle", "reused", "allocated", "discarded"] {
        assert!(stats["pool"][key].is_u64(), "pool.{key}: {stats}");
    }
    assert_eq!(stats["connections"]["active"], 1, "{stats}");
    assert_eq!(stats["connections"]["accepted"], 1, "{stats}");
    assert_eq!(stats["topics"], 2, "{stats}");
    assert_eq!(stats["subscriptions"], 2, "{stats}");
    assert!(stats["uptime_seconds"].is_number(), "{stats}");
    assert!(stats["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(stats["draining"], false);
    c.quit();
    assert_eventually!(
        get_ok(&gw, "/api/v1/stats")["connections"]["closed"] == 1,
        FRAME_TIMEOUT
    );
    let stats = get_ok(&gw, "/api/v1/stats");
    assert_eq!(stats["connections"]["active"], 0, "{stats}");
    assert_eq!(stats["topics"], 0, "{stats}");
}

#[test]
fn one_connection_shows_its_state() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    let id = c.hello("carol");
    c.sub("news");
    c.sub("a/b");
    c.sync();
    let conn = get_ok(&gw, &format!("/api/v1/connections/{id}"));
    assert_eq!(conn["id"], json!(id));
    assert_eq!(conn["peer"], json!(c.local_addr().to_string()));
    assert_eq!(conn["user"], "carol");
    assert_eq!(conn["topics"], json!(["news", "a/b"]));
    assert_eq!(conn["state"], "open");
    // HELLO, 2 SUB, PING in; their 4 answers out.
    assert_eq!(conn["frames_in"], 4, "{conn}");
    assert_eq!(conn["frames_out"], 4, "{conn}");
    assert!(conn["bytes_in"].as_u64().unwrap() >= 30, "{conn}");
    assert!(conn["bytes_out"].as_u64().unwrap() >= 30, "{conn}");
    assert_eq!(conn["pending_bytes"], 0, "{conn}");
    let at = conn["connected_at"].as_str().expect("connected_at");
    assert!(is_rfc3339(at), "connected_at `{at}`");
    assert_eq!(conn["transport"], "tcp", "{conn}");
    assert_eq!(conn.as_object().unwrap().len(), 12, "{conn}");

    let anonymous = gw.connect();
    assert_eventually!(active(&gw) == 2, FRAME_TIMEOUT);
    let all = get_ok(&gw, "/api/v1/connections");
    let other = all["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] != json!(id))
        .expect("the second connection")
        .clone();
    assert_eq!(other["user"], Value::Null);
    assert_eq!(other["topics"], json!([]));
    assert_eq!(other["peer"], json!(anonymous.local_addr().to_string()));

    for missing in ["999999", "abc", "0x1", &format!("0{id}"), &format!("+{id}")] {
        let r = api(&gw, "GET", &format!("/api/v1/connections/{missing}"), None);
        assert_error(&r, 404, "not_found");
    }
    c.quit();
    assert_eventually!(
        api(&gw, "GET", &format!("/api/v1/connections/{id}"), None).status == 404,
        FRAME_TIMEOUT
    );
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`, and a plausible year.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let rest = &s[19.min(s.len())..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let zone = rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')));
    shape
        && zone
        && s[..4]
            .parse::<u32>()
            .is_ok_and(|y| (2020..2200).contains(&y))
}

#[test]
fn pages_list_each_connection_once() {
    let gw = Gateway::start(&[]);
    let clients: Vec<_> = (0..250).map(|_| gw.connect()).collect();
    // Listed once the registry has seen every one of them.
    assert_eventually!(walk(&gw, "", 1000).0.len() == 250, Duration::from_secs(10));
    let (ids, pages) = walk(&gw, "", 100);
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 250);
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 250, "a connection listed twice");
    // The default limit is 100.
    let first = get_ok(&gw, "/api/v1/connections");
    assert_eq!(first["connections"].as_array().unwrap().len(), 100);
    assert!(first["next_cursor"].is_string());
    // Exactly one page's worth: no cursor after it.
    let (all, pages) = walk(&gw, "", 1000);
    assert_eq!((all.len(), pages), (250, 1));
    assert_eq!(all, ids, "the same order either way");
    drop(clients);
}

#[test]
fn filters_by_user_and_topic() {
    let gw = Gateway::start(&[]);
    let mut subscribers = Vec::new();
    let mut sub_ids = BTreeSet::new();
    for i in 0..5 {
        let mut c = gw.connect();
        sub_ids.insert(c.hello(&format!("user-{i}")));
        c.sub("room.1");
        subscribers.push(c);
    }
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut c = gw.connect();
        c.sub("room.2");
        others.push(c);
    }
    let (ids, _) = walk(&gw, "&topic=room.1", 2);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), sub_ids);
    let (ids, _) = walk(&gw, "&topic=room.2", 2);
    assert_eq!(ids.len(), 3);
    let (ids, _) = walk(&gw, "&topic=room.3", 2);
    assert!(ids.is_empty());
    let page = get_ok(&gw, "/api/v1/connections?user=user-3");
    let conns = page["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{page}");
    assert_eq!(conns[0]["user"], "user-3");
    let page = get_ok(&gw, "/api/v1/connections?user=user-3&topic=room.2");
    assert_eq!(page["connections"], json!([]));
    let page = get_ok(&gw, "/api/v1/connections?user=nobody");
    assert_eq!(page, json!({"connections": [], "next_cursor": null}));
}

#[test]
fn send_reaches_the_connection_and_the_user() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut alice = gw.connect();
        let mut bob = gw.connect();
        alice.hello("alice");
        let bob_id = bob.hello("bob");
        let r = api(
            &gw,
            "POST",
            &format!("/api/v1/connections/{bob_id}/send"),
            Some(&json!({"data": "by id"})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        assert_json(&r);
        bob.expect("PUSH by id");
        let r = api(
            &gw,
            "POST",
            "/api/v1/users/alice/send",
            Some(&json!({"data_base64": "AP8gYg=="})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        alice.expect(b"PUSH \x00\xff b");
        let r = api(
            &gw,
            "POST",
            "/api/v1/users/bob/send",
            Some(&json!({"data": ""})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        bob.expect("PUSH ");
        alice.sync();
        bob.sync();
        let r = api(
            &gw,
            "POST",
            "/api/v1/users/nobody/send",
            Some(&json!({"data": "x"})),
        );
        assert_error(&r, 404, "not_found");
        let r = api(
            &gw,
            "POST",
            "/api/v1/connections/987654/send",
            Some(&json!({"data": "x"})),
        );
        assert_error(&r, 404, "not_found");
    }
}

#[test]
fn newlines_are_refused_only_under_lines() {
    let lines = start(Framing::Lines, &[]);
    let mut c = lines.connect();
    c.hello("nl");
    for body in [json!({"data": "a\nb"}), json!({"data_base64": "YQpi"})] {
        let r = api(&lines, "POST", "/api/v1/users/nl/send", Some(&body));
        assert_error(&r, 400, "invalid_payload");
    }
    let r = api(
        &lines,
        "POST",
        "/api/v1/users/nl/close",
        Some(&json!({"message": "a\nb"})),
    );
    assert_error(&r, 400, "invalid_payload");
    c.sync();

    let length = start(Framing::Length, &[]);
    let mut c = length.connect();
    c.hello("nl");
    let r = api(
        &length,
        "POST",
        "/api/v1/users/nl/send",
        Some(&json!({"data": "a\nb"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    c.expect("PUSH a\nb");
    let r = api(
        &length,
        "POST",
        "/api/v1/users/nl/close",
        Some(&json!({"message": "x\ny"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    c.expect("KICK admin x\ny");
    c.expect_eof();
}

#[test]
fn close_comes_after_everything_queued_before_it() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut c = gw.connect();
        let id = c.hello("dave");
        for i in 0..3 {
            let r = api(
                &gw,
                "POST",
                &format!("/api/v1/connections/{id}/send"),
                Some(&json!({"data": format!("m{i}")})),
            );
            assert_eq!(r.status, 202, "{}", r.text());
        }
        let r = api(
            &gw,
            "POST",
            &format!("/api/v1/connections/{id}/close"),
            Some(&json!({"reason": "admin", "message": "see you later"})),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        assert_json(&r);
        c.expect("PUSH m0");
        c.expect("PUSH m1");
        c.expect("PUSH m2");
        c.expect("KICK admin see you later");
        c.expect_eof();
    }
}

#[test]
fn close_without_a_body_kicks_admin() {
    let gw = Gateway::start(&[]);
    let mut by_user = gw.connect();
    by_user.hello("erin");
    let r = api(&gw, "POST", "/api/v1/users/erin/close", None);
    assert_eq!(r.status, 202, "{}", r.text());
    by_user.expect("KICK admin");
    by_user.expect_eof();
    let mut by_id = gw.connect();
    let id = by_id.hello("frank");
    let r = api(
        &gw,
        "POST",
        &format!("/api/v1/connections/{id}/close"),
        Some(&json!({})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    by_id.expect("KICK admin");
    by_id.expect_eof();
    // Counted once the sockets close, which the clients end at once.
    drop((by_user, by_id));
    gw.wait_metric_eq(
        "gateway_connections_closed_total",
        &[("reason", "admin")],
        2.0,
    );
}

#[test]
fn a_closing_connection_answers_409_then_404() {
    let gw = Gateway::start(&["--close-timeout", "3"]);
    let mut c = gw.connect();
    let id = c.hello("gina");
    let conn = format!("/api/v1/connections/{id}");
    let r = api(&gw, "POST", &format!("{conn}/close"), None);
    assert_eq!(r.status, 202, "{}", r.text());
    // The client keeps its side open: the connection lingers, closing.
    let body = json!({"data": "late"});
    let r = api(&gw, "POST", &format!("{conn}/send"), Some(&body));
    assert_error(&r, 409, "closing");
    let r = api(&gw, "POST", &format!("{conn}/close"), None);
    assert_error(&r, 409, "closing");
    let r = api(&gw, "POST", "/api/v1/users/gina/send", Some(&body));
    assert_error(&r, 409, "closing");
    let r = api(&gw, "POST", "/api/v1/users/gina/close", None);
    assert_error(&r, 409, "closing");
    let shown = get_ok(&gw, &conn);
    assert_eq!(shown["state"], "closing", "{shown}");
    let listed = get_ok(&gw, "/api/v1/connections");
    assert_eq!(listed["connections"][0]["state"], "closing", "{listed}");
    c.expect("KICK admin");
    c.expect_eof();
    drop(c);
    assert_eventually!(
        api(&gw, "GET", &conn, None).status == 404,
        FRAME_TIMEOUT,
        "the connection is still listed after its client closed"
    );
    let r = api(&gw, "POST", &format!("{conn}/send"), Some(&body));
    assert_error(&r, 404, "not_found");
    let r = api(&gw, "POST", "/api/v1/users/gina/close", None);
    assert_error(&r, 404, "not_found");
}

/// Two requests written at once on one HTTP connection; the statuses of
/// their answers, in order.
fn pipelined(gw: &Gateway, first: &str, second: &str) -> Vec<u16> {
    let mut stream = TcpStream::connect(gw.admin_addr()).expect("connect to admin");
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .expect("timeout");
    let host = gw.admin_addr();
    let wire = format!(
        "POST {first} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n\
         POST {second} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 12\r\n\r\n{{\"data\":\"x\"}}"
    );
    stream.write_all(wire.as_bytes()).expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answers");
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| raw.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

#[test]
fn a_send_right_behind_a_close_gets_409() {
    let gw = Gateway::start(&["--close-timeout", "3"]);
    for round in 0..20 {
        let mut c = gw.connect();
        let id = c.hello(&format!("racer-{round}"));
        let conn = format!("/api/v1/connections/{id}");
        let statuses = pipelined(&gw, &format!("{conn}/close"), &format!("{conn}/send"));
        assert_eq!(statuses, [202, 409], "round {round}");
        c.expect("KICK admin");
        c.expect_eof();
    }
}

#[test]
fn publish_counts_and_reaches_subscribers() {
    for framing in Framing::ALL {
        let gw = start(framing, &[]);
        let mut subs: Vec<_> = (0..3).map(|_| gw.connect()).collect();
        for s in &mut subs {
            s.sub("a/b");
        }
        let mut bystander = gw.connect();
        bystander.sub("other");
        let r = api(
            &gw,
            "POST",
            "/api/v1/topics/a/b/publish",
            Some(&json!({"data": "one two"})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"delivered_to": 3}));
        let r = api(
            &gw,
            "POST",
            "/api/v1/topics/a%2Fb/publish",
            Some(&json!({"data_base64": "AAE="})),
        );
        assert_eq!(r.json(), json!({"delivered_to": 3}), "{}", r.text());
        for s in &mut subs {
            s.expect(msg("a/b", b"one two"));
            s.expect(msg("a/b", b"\x00\x01"));
            s.sync();
        }
        bystander.sync();
        let topics = get_ok(&gw, "/api/v1/topics");
        assert_eq!(
            topics,
            json!({"topics": [{"name": "a/b", "subscribers": 3}, {"name": "other", "subscribers": 1}]})
        );
        // A publish with no subscriber reaches no one and creates no topic.
        let r = api(
            &gw,
            "POST",
            "/api/v1/topics/empty/publish",
            Some(&json!({"data": "x"})),
        );
        assert_eq!(r.json(), json!({"delivered_to": 0}));
        assert_eq!(get_ok(&gw, "/api/v1/topics"), topics);
        for bad in ["bad%20topic", "a%0Ab", "%C3%A9t%C3%A9"] {
            let r = api(
                &gw,
                "POST",
                &format!("/api/v1/topics/{bad}/publish"),
                Some(&json!({"data": "x"})),
            );
            assert_error(&r, 400, "bad_topic");
        }
    }
}

#[test]
fn broadcast_reaches_every_open_connection() {
    let gw = Gateway::start(&["--close-timeout", "3"]);
    let mut clients: Vec<_> = (0..4).map(|_| gw.connect()).collect();
    let mut leaving = gw.connect();
    let id = leaving.hello("leaving");
    let r = api(
        &gw,
        "POST",
        &format!("/api/v1/connections/{id}/close"),
        None,
    );
    assert_eq!(r.status, 202);
    assert_eventually!(active(&gw) == 5, FRAME_TIMEOUT);
    let r = api(
        &gw,
        "POST",
        "/api/v1/broadcast",
        Some(&json!({"data": "hello all"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"delivered_to": 4}),
        "the closing one is not counted"
    );
    for c in &mut clients {
        c.expect("PUSH hello all");
    }
    leaving.expect("KICK admin");
    leaving.expect_eof();
}

#[test]
fn every_documented_route_is_served() {
    // History on, so that its routes are served rather than 404.
    let gw = Gateway::start(&["--history-size", "10"]);
    let doc = get_ok(&gw, "/api/v1/openapi.json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{} paths", paths.len());
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "424242")
            .replace("{user}", "nobody")
            .replace("{topic}", "some/topic");
        // The drain is tried last: it stops the gateway.
        if concrete.ends_with("/drain") {
            continue;
        }
        for method in methods {
            let documented = item.get(method.to_lowercase()).is_some();
            let body = (method != "GET").then(|| json!({"data": "probe"}));
            let r = api(&gw, method, &concrete, body.as_ref());
            assert!(r.status < 500, "{method} {concrete}: {}", r.text());
            if documented {
                assert_ne!(r.status, 405, "{method} {concrete}: {}", r.text());
                assert!(
                    r.status != 404 || r.text().contains("no such connection"),
                    "{method} {concrete} is documented but not routed: {}",
                    r.text()
                );
            } else {
                assert_error(&r, 405, "method_not_allowed");
            }
        }
    }
    let r = api(&gw, "GET", "/api/v1/drain", None);
    assert_error(&r, 405, "method_not_allowed");
    // A client keeps the gateway up while the answer is written (see
    // `drain_without_clients_still_answers_202`).
    let mut c = gw.connect();
    c.sync();
    let r = api(&gw, "POST", "/api/v1/drain", None);
    assert_eq!(r.status, 202, "{}", r.text());
    c.expect("KICK shutdown");
}

#[test]
fn drain_without_clients_still_answers_202() {
    for round in 0..10 {
        let mut gw = Gateway::start(&[]);
        let r = http::try_request(gw.admin_addr(), "POST", "/api/v1/drain", &[], None);
        assert_eq!(r.map(|r| r.status), Ok(202), "round {round}");
        assert!(gw.wait_exit(Duration::from_secs(10)).success());
    }
}

#[test]
fn drain_answers_202_and_empties_the_gateway() {
    let mut gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.hello("henry");
    let r = api(&gw, "POST", "/api/v1/drain", None);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_json(&r);
    c.expect("KICK shutdown");
    c.expect_eof();
    drop(c);
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn no_frame_reaches_a_client_from_a_refused_request() {
    let gw = Gateway::start(&[]);
    let mut c = gw.connect();
    c.hello("ivan");
    c.sub("t");
    let refused = [
        (
            "/api/v1/users/ivan/send",
            r#"{"data":"x","data_base64":"eA=="}"#,
        ),
        ("/api/v1/users/ivan/send", r#"{"data":"x""#),
        ("/api/v1/topics/t/publish", r#"{"data_base64":"e A=="}"#),
        ("/api/v1/broadcast", r#"{"data":7}"#),
        ("/api/v1/users/ivan/close", r#"{"reason":"idle"}"#),
    ];
    for (path, body) in refused {
        let r = http::request(
            gw.admin_addr(),
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
    }
    c.sync();
    match c.next_event(Duration::from_millis(100)) {
        Event::Timeout => {}
        other => panic!("expected nothing, got {}", other.describe()),
    }
}
