//! The example page (`examples/browser/index.html`) in a real browser
//! (contract section 12): headless Chromium loads it from a page server on
//! 127.0.0.1, the page logs in and subscribes over WebSocket through the
//! browser client (`clients/js/`), the test publishes, pushes and kicks
//! through the admin API and reads the page's DOM over the DevTools
//! protocol: what arrived, the connection's state, the countdown to the
//! next reconnect and the `lost` notices. A screenshot of each run is kept
//! under `target/browser/`.
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

/// Serves the repository's page folders; the example is at
/// `/examples/browser/`, beside the client it loads from `/clients/js/`.
fn example_server() -> PageServer {
    PageServer::start_tree(browser::repo_dir(), &browser::PAGE_FOLDERS)
}

#[test]
fn the_example_page_shows_a_connection_that_fails_and_counts_down_to_the_next_attempt() {
    if !chromium_present() {
        return;
    }
    // A loopback port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = example_server();
    let url = format!(
        "{}/examples/browser/?url=ws://127.0.0.1:{port}/ws&user=carol&topics=news&connect=1",
        server.origin()
    );
    let mut browser = Browser::open(&url);
    let countdown = eventually(PAGE_TIMEOUT, || {
        let state = browser.eval("document.getElementById('status').dataset.state");
        let countdown = browser.eval("document.getElementById('countdown').textContent");
        (state == "disconnected" && countdown.as_str()?.starts_with("reconnecting in "))
            .then_some(countdown)
    });
    let log = page_log(&mut browser);
    browser.screenshot(&screenshot_path("connection-refused"));
    assert!(
        countdown.is_some(),
        "the page never counted down to a reconnect; log: {log:?}"
    );
    assert_eq!(
        browser.eval("document.getElementById('user').value"),
        "carol"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("STATE disconnected (1006, cut): reconnecting in ")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.starts_with("SUB")), "{log:?}");
}

#[test]
fn the_example_page_logs_in_subscribes_shows_what_the_admin_api_sends_and_reconnects() {
    if !chromium_present() {
        return;
    }
    let server = example_server();
    let origin = server.origin();
    let gw = Gateway::start(&[
        "--ws-listen",
        "127.0.0.1:0",
        "--ws-allowed-origins",
        &origin,
    ]);
    let ws = format!("ws://{}/ws", gw.ws_addr());
    let url = format!(
        "{origin}/examples/browser/?url={ws}&user=browser-user&topics=news,alerts&recover=1&connect=1"
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

    // It reconnects on its own, subscribes again and says what it may have missed.
    let again = eventually(PAGE_TIMEOUT, || {
        let log = page_log(&mut browser);
        (log.iter().filter(|l| l.starts_with("LOST ")).count() == 2).then_some(())
    });
    let log = page_log(&mut browser);
    browser.screenshot(&screenshot_path("example-page"));
    assert!(
        again.is_some(),
        "the page never reconnected and resubscribed; its log: {log:?}"
    );
    assert_eq!(
        browser.eval("document.getElementById('status').dataset.state"),
        "connected"
    );
    let kinds: Vec<&str> = log
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "STATE",
            "STATE",
            "NOHISTORY",
            "NOHISTORY",
            "SUB",
            "SUB",
            "MSG",
            "PUSH",
            "KICK",
            "STATE",
            "STATE",
            "STATE",
            "SUB",
            "LOST",
            "SUB",
            "LOST",
        ],
        "the page's log: {log:?}"
    );
    let id = conn["id"].as_str().expect("an id");
    assert_eq!(log[0], format!("STATE connecting to {ws}"));
    assert_eq!(
        log[1],
        format!("STATE connected to {ws} as connection {id}")
    );
    assert_eq!(log[4], "SUB news");
    assert_eq!(log[5], "SUB alerts");
    assert_eq!(log[6], "MSG news: hello from the admin API");
    assert_eq!(log[7], "PUSH a push for you");
    assert_eq!(log[8], "KICK admin see you");
    assert!(
        log[9].starts_with("STATE disconnected (4000, admin): reconnecting in "),
        "{log:?}"
    );
    assert!(log[13].starts_with("LOST news: "), "{log:?}");
}
