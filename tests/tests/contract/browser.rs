//! The example page (`examples/browser/index.html`) in a real browser
//! (contract section 12): headless Chromium loads it from a page server on
//! 127.0.0.1, the page logs in and subscribes over WebSocket, the test
//! publishes, pushes and kicks through the admin API and reads the page's
//! DOM over the DevTools protocol. A screenshot of each run is kept under
//! `target/browser/`.
//!
//! They need Chromium on `PATH` (Debian: `apt-get install chromium`).
//! Without it the tests say so on stderr and pass, unless
//! `GATEWAY_TEST_REQUIRE_CHROMIUM=1` is set, as CI does: then it fails them.

use crate::admin_api::{api, get_ok};
use gateway_tests::Gateway;
use gateway_tests::browser::{self, Browser, PageServer};
use gateway_tests::poll::eventually;
use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

/// How long the page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether Chromium is there; when not, either skips (returns false) or
/// fails under `GATEWAY_TEST_REQUIRE_CHROMIUM=1`.
pub fn chromium_present() -> bool {
    if browser::chromium().is_some() {
        return true;
    }
    let required = std::env::var("GATEWAY_TEST_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "GATEWAY_TEST_REQUIRE_CHROMIUM=1 but chromium is not on PATH (apt-get install chromium)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping: chromium not installed (apt-get install chromium)"
    );
    false
}

/// Where a test's screenshot goes: `target/browser/NAME.png`.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser")
        .join(format!("{name}.png"))
}

/// The log lines the page shows, oldest first, as `KIND text`.
fn page_log(browser: &mut Browser) -> Vec<String> {
    let lines = browser.eval(
        "[...document.querySelectorAll('#log li')].reverse()\
         .map(li => li.dataset.kind + ' ' + li.childNodes[1].textContent)",
    );
    match lines {
        Value::Array(lines) => lines
            .into_iter()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect(),
        other => panic!("the page's log is {other}"),
    }
}

#[test]
fn the_example_page_shows_a_connection_that_fails() {
    if !chromium_present() {
        return;
    }
    // A loopback port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = PageServer::start(browser::example_dir());
    let url = format!(
        "{}/?url=ws://127.0.0.1:{port}/ws&user=carol&topics=news&connect=1",
        server.origin()
    );
    let mut browser = Browser::open(&url);
    let state = eventually(PAGE_TIMEOUT, || {
        let state = browser.eval("document.getElementById('status').dataset.state");
        (state == "closed").then_some(state)
    });
    let log = page_log(&mut browser);
    browser.screenshot(&screenshot_path("connection-refused"));
    assert!(
        state.is_some(),
        "the page never showed the failed connection; log: {log:?}"
    );
    assert_eq!(
        browser.eval("document.getElementById('user').value"),
        "carol"
    );
    assert!(log.iter().any(|l| l == "CLOSE status 1006"), "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("sent")), "{log:?}");
}

#[test]
fn the_example_page_logs_in_subscribes_and_shows_what_the_admin_api_sends() {
    if !chromium_present() {
        return;
    }
    let server = PageServer::start(browser::example_dir());
    let origin = server.origin();
    let gw = Gateway::start(&[
        "--ws-listen",
        "127.0.0.1:0",
        "--ws-allowed-origins",
        &origin,
    ]);
    let url = format!(
        "{origin}/?url=ws://{}/ws&user=browser-user&topics=news,alerts&connect=1",
        gw.ws_addr()
    );
    let mut browser = Browser::open(&url);

    // The page said HELLO and subscribed: the admin API shows it.
    let conn = eventually(PAGE_TIMEOUT, || {
        let list = get_ok(&gw, "/api/v1/connections?user=browser-user&topic=alerts");
        list["connections"].as_array()?.first().cloned()
    });
    let Some(conn) = conn else {
        let log = page_log(&mut browser);
        browser.screenshot(&screenshot_path("login-failed"));
        panic!("the page never logged in and subscribed; its log: {log:?}");
    };
    assert_eq!(conn["transport"], "ws", "{conn}");
    assert_eq!(conn["topics"], json!(["news", "alerts"]), "{conn}");

    let r = api(
        &gw,
        "POST",
        "/api/v1/topics/news/publish",
        Some(&json!({"data": "hello from the admin API"})),
    );
    assert_eq!(r.json()["delivered_to"], 1, "{}", r.text());
    let r = api(
        &gw,
        "POST",
        "/api/v1/users/browser-user/send",
        Some(&json!({"data": "a push for you"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = api(
        &gw,
        "POST",
        "/api/v1/users/browser-user/close",
        Some(&json!({"message": "see you"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());

    let closed = eventually(PAGE_TIMEOUT, || {
        let state = browser.eval("document.getElementById('status').dataset.state");
        (state == "closed").then_some(())
    });
    let log = page_log(&mut browser);
    browser.screenshot(&screenshot_path("example-page"));
    assert!(
        closed.is_some(),
        "the page never saw the close; its log: {log:?}"
    );
    let received: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("sent "))
        .collect();
    let id = conn["id"].as_str().expect("an id");
    assert_eq!(
        received,
        [
            format!("OK HELLO {id}").as_str(),
            "OK SUB news",
            "OK SUB alerts",
            "MSG news: hello from the admin API",
            "PUSH a push for you",
            "KICK admin see you",
            "CLOSE status 4000",
        ],
        "the page's log: {log:?}"
    );
}
