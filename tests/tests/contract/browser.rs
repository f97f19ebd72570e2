//! The example page (`examples/browser/index.html`) in a real browser:
//! headless Chromium loads it from a page server on 127.0.0.1, and the test
//! reads the page's DOM over the DevTools protocol. A screenshot of each
//! run is kept under `target/browser/`.
//!
//! They need Chromium on `PATH` (Debian: `apt-get install chromium`).
//! Without it the tests say so on stderr and pass, unless
//! `GATEWAY_TEST_REQUIRE_CHROMIUM=1` is set, as CI does: then it fails them.

use gateway_tests::browser::{self, Browser, PageServer};
use gateway_tests::poll::eventually;
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

/// How long the page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether Chromium is there; when not, either skips (returns false) or
/// fails under `GATEWAY_TEST_REQUIRE_CHROMIUM=1`.
fn chromium_present() -> bool {
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
