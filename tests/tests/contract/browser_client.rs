//! The browser client (`clients/js/`) in a real browser against the real
//! gateway, under real faults (contract sections 3, 5, 11 and 12): headless
//! Chromium loads `clients/js/test/page.html`, which starts named clients
//! and records every event they report with its time; the test drives the
//! faults (an admin close, the gateway killed and restarted on its port, a
//! connection cut by a proxy with no Close frame, one the proxy silently
//! stops carrying, a newer login, an expired token, the gateway down for a
//! while, a node of a URL list gone) and
//! reads the records back over the DevTools protocol.
//!
//! Recovery (contract section 13) against a single node started with
//! `--history-size`: what was published while the page was away (an admin
//! close, a cut with no Close frame) arrives after the reconnect, exactly
//! once and in order, as many as `RECOVERED <n>` said; after a restart (a
//! new epoch) `lost` fires, then live messages flow. Without history a
//! `recover: true` subscription is held to what it can do: subscribe
//! plainly, say so once, and report `lost` after each reconnect. In a
//! cluster (history in `nats-server -js`): the page's node stopped, it
//! fails over to the next URL and recovers there what was published
//! meanwhile.
//!
//! Like `browser`, these need Chromium on `PATH` and skip without it
//! unless `GATEWAY_TEST_REQUIRE_CHROMIUM=1`.

use crate::admin_api::{api, get_ok};
use crate::browser::chromium_present;
use gateway_tests::Gateway;
use gateway_tests::browser::{self, Browser, PageServer};
use gateway_tests::poll::eventually;
use gateway_tests::proxy::CutProxy;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// How late a reconnect attempt may start after its timer was due: timers
/// and the connection's failure on a loaded machine.
const LATE: f64 = 750.0;

/// The test page, its server and its browser.
struct Page {
    browser: Browser,
    origin: String,
    _server: PageServer,
}

impl Page {
    fn open() -> Page {
        let server = PageServer::start_tree(browser::repo_dir(), &browser::PAGE_FOLDERS);
        let origin = server.origin();
        let mut browser = Browser::open(&format!("{origin}/clients/js/test/page.html"));
        let ready = eventually(PAGE_TIMEOUT, || {
            (browser.eval("window.ready === true") == true).then_some(())
        });
        assert!(ready.is_some(), "the test page did not load the client");
        Page {
            browser,
            origin,
            _server: server,
        }
    }

    /// The page, where Chromium is installed (the test is skipped, saying
    /// so, where it is not).
    fn open_if_chromium() -> Option<Page> {
        chromium_present().then(Page::open)
    }

    /// The page and a gateway with `flags` for it, where Chromium is
    /// installed.
    fn with_gateway(flags: &[&str]) -> Option<(Page, Gateway)> {
        let page = Page::open_if_chromium()?;
        let gw = page.gateway(flags);
        Some((page, gw))
    }

    /// A gateway with a WebSocket listener that takes this page's origin.
    fn gateway(&self, flags: &[&str]) -> Gateway {
        self.gateway_on("127.0.0.1:0", flags)
    }

    fn gateway_on(&self, ws: &str, flags: &[&str]) -> Gateway {
        let mut all = vec!["--ws-listen", ws, "--ws-allowed-origins", &self.origin];
        all.extend_from_slice(flags);
        Gateway::start(&all)
    }

    /// Starts client `name` on the page: `start(name, urls, options, topics)`.
    fn start(&mut self, name: &str, urls: &[String], options: Value, topics: &[(&str, bool)]) {
        let call = format!(
            "start({}, {}, {options}, {})",
            json!(name),
            json!(urls),
            json!(topics)
        );
        assert_eq!(self.browser.eval(&call), true, "{call}");
    }

    /// Everything client `name` reported so far, oldest first.
    fn log(&mut self, name: &str) -> Vec<Value> {
        match self.browser.eval(&format!("window.logs[{}]", json!(name))) {
            Value::Array(events) => events,
            other => panic!("no log for {name}: {other}"),
        }
    }

    /// Waits until client `name`'s log satisfies `done`; returns the log.
    #[track_caller]
    fn wait(&mut self, name: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let seen = eventually(PAGE_TIMEOUT, || {
            let log = self.log(name);
            done(&log).then_some(log)
        });
        seen.unwrap_or_else(|| {
            let log = self.log(name);
            panic!("client {name}: {what}: not within {PAGE_TIMEOUT:?}; its log: {log:#?}")
        })
    }

    /// `performance.now()` in the page, the clock of the logs.
    fn now(&mut self) -> f64 {
        self.browser
            .eval("performance.now()")
            .as_f64()
            .expect("a time")
    }
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// The events of one kind.
fn events<'a>(log: &'a [Value], event: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == event).collect()
}

/// The states, in order.
fn states(log: &[Value]) -> Vec<String> {
    events(log, "state")
        .iter()
        .filter_map(|e| e["state"].as_str().map(str::to_owned))
        .collect()
}

/// The `state` events for one state.
fn in_state<'a>(log: &'a [Value], state: &str) -> Vec<&'a Value> {
    events(log, "state")
        .into_iter()
        .filter(|e| e["state"] == state)
        .collect()
}

/// The payloads delivered on `topic`, in order.
fn messages(log: &[Value], topic: &str) -> Vec<String> {
    events(log, "message")
        .iter()
        .filter(|e| e["topic"] == topic)
        .filter_map(|e| e["payload"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a subscription was acknowledged on the `nth` connection (from 1).
fn subscribed_after(log: &[Value], nth: usize) -> bool {
    let connected = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "state" && e["state"] == "connected")
        .nth(nth - 1);
    connected.is_some_and(|(at, _)| log[at..].iter().any(|e| e["event"] == "subscribed"))
}

fn time(event: &Value) -> f64 {
    event["t"].as_f64().expect("an event time")
}

#[track_caller]
fn publish(gw: &Gateway, topic: &str, data: &str) {
    let r = api(
        gw,
        "POST",
        &format!("/api/v1/topics/{topic}/publish"),
        Some(&json!({ "data": data })),
    );
    assert_eq!(r.status, 200, "publish on {topic}: {}", r.text());
}

/// A loopback port where nothing listens, for now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

#[test]
fn the_client_reconnects_after_an_admin_close_and_restores_its_subscriptions() {
    let Some((mut page, gw)) = Page::with_gateway(&[]) else {
        return;
    };
    page.start(
        "a",
        &[ws_url(gw.ws_addr())],
        json!({"user": "ann", "minDelay": 100, "maxDelay": 400}),
        &[("news", false), ("alerts", true)],
    );
    page.wait("a", "subscribed to both", |l| {
        events(l, "subscribed").len() == 2
    });
    publish(&gw, "news", "before");
    // Not UTF-8: a binary message, handed over as bytes.
    let r = api(
        &gw,
        "POST",
        "/api/v1/topics/news/publish",
        Some(&json!({"data_base64": "/wA="})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let log = page.wait("a", "the first messages", |l| {
        messages(l, "news").len() == 2
    });
    let first_id = in_state(&log, "connected")[0]["id"].clone();
    let id = first_id.as_str().expect("a connection id");
    let r = api(
        &gw,
        "POST",
        &format!("/api/v1/connections/{id}/send"),
        Some(&json!({"data": "a push"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = api(
        &gw,
        "POST",
        &format!("/api/v1/connections/{id}/close"),
        Some(&json!({"message": "moving you"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());

    page.wait("a", "connected and subscribed again", |l| {
        in_state(l, "connected").len() == 2 && events(l, "subscribed").len() == 4
    });
    publish(&gw, "news", "after");
    publish(&gw, "alerts", "alert after");
    let log = page.wait("a", "the messages after the reconnect", |l| {
        messages(l, "news").len() == 3 && messages(l, "alerts").len() == 1
    });
    assert_eq!(
        messages(&log, "news"),
        ["before", "bytes:255,0", "after"],
        "{log:#?}"
    );
    let pushes = events(&log, "push");
    assert_eq!(pushes.len(), 1, "{log:#?}");
    assert_eq!(pushes[0]["payload"], "a push");
    assert_eq!(messages(&log, "alerts"), ["alert after"], "{log:#?}");
    assert_eq!(
        states(&log),
        [
            "connecting",
            "connected",
            "disconnected",
            "connecting",
            "connected"
        ],
        "{log:#?}"
    );
    let kick = events(&log, "kick");
    assert_eq!(kick.len(), 1, "{log:#?}");
    assert_eq!(kick[0]["reason"], "admin");
    assert_eq!(kick[0]["message"], "moving you");
    let down = in_state(&log, "disconnected");
    assert_eq!(down[0]["reason"], "admin", "{log:#?}");
    assert_eq!(down[0]["code"], 4000, "{log:#?}");
    assert_ne!(in_state(&log, "connected")[1]["id"], first_id);
    // `recover: true` without history: said once, lost after the reconnect.
    let nohistory = events(&log, "nohistory");
    assert_eq!(nohistory.len(), 1, "{log:#?}");
    assert_eq!(nohistory[0]["topic"], "alerts");
    let lost = events(&log, "lost");
    assert_eq!(lost.len(), 1, "{log:#?}");
    assert_eq!(lost[0]["topic"], "alerts");
    assert_eq!(lost[0]["reason"], "no-history");
    assert!(time(lost[0]) > time(down[0]), "{log:#?}");
}

#[test]
fn the_client_reconnects_to_a_gateway_killed_and_restarted_on_its_port_at_once_when_online() {
    let Some((mut page, gw)) = Page::with_gateway(&[]) else {
        return;
    };
    let ws = gw.ws_addr();
    page.start(
        "a",
        &[ws_url(ws)],
        json!({"user": "kim", "minDelay": 200, "maxDelay": 1000}),
        &[("news", false), ("mine", false)],
    );
    // This one would wait 4 s before its first reconnect, but for the
    // browser's `online` event.
    page.start(
        "b",
        &[ws_url(ws)],
        json!({"user": "kit", "minDelay": 4000, "maxDelay": 4000}),
        &[("news", false)],
    );
    for (name, subscriptions) in [("a", 2), ("b", 1)] {
        page.wait(name, "subscribed", |l| {
            events(l, "subscribed").len() == subscriptions
        });
    }
    // SIGKILL: the kernel closes the sockets, with no Close frame.
    drop(gw);
    for name in ["a", "b"] {
        let log = page.wait(name, "disconnected", |l| {
            !in_state(l, "disconnected").is_empty()
        });
        assert_eq!(in_state(&log, "disconnected")[0]["code"], 1006, "{log:#?}");
    }
    // Published while disconnected: queued, sent once subscribed again.
    page.browser
        .eval("window.clients.a.publish('mine', 'queued while down'), true");
    let gw = page.gateway_on(&ws.to_string(), &[]);
    let online = page.now();
    page.browser
        .eval("window.dispatchEvent(new Event('online')), true");
    for (name, subscriptions) in [("a", 4), ("b", 2)] {
        page.wait(name, "subscribed again", |l| {
            events(l, "subscribed").len() == subscriptions
        });
    }
    let log = page.wait("a", "what it published while down", |l| {
        !messages(l, "mine").is_empty()
    });
    assert_eq!(messages(&log, "mine"), ["queued while down"], "{log:#?}");
    publish(&gw, "news", "after the restart");
    for name in ["a", "b"] {
        let log = page.wait(name, "the message", |l| !messages(l, "news").is_empty());
        assert_eq!(messages(&log, "news"), ["after the restart"], "{log:#?}");
    }
    let log = page.log("b");
    let back = in_state(&log, "connected")[1];
    let down = in_state(&log, "disconnected");
    assert_eq!(down[0]["delay"], 4000, "{log:#?}");
    assert!(
        time(back) - online < 2000.0,
        "b reconnected {} ms after the online event; its log: {log:#?}",
        time(back) - online
    );
}

#[test]
fn the_client_reconnects_after_its_connection_is_cut_without_a_close_frame() {
    let Some((mut page, gw)) = Page::with_gateway(&[]) else {
        return;
    };
    let proxy = CutProxy::start(gw.ws_addr());
    page.start(
        "a",
        &[ws_url(proxy.addr())],
        json!({"user": "cy", "minDelay": 100, "maxDelay": 400}),
        &[("news", false)],
    );
    page.wait("a", "subscribed", |l| events(l, "subscribed").len() == 1);
    publish(&gw, "news", "before");
    page.wait("a", "the first message", |l| {
        !messages(l, "news").is_empty()
    });
    proxy.cut();
    page.wait("a", "subscribed again", |l| {
        events(l, "subscribed").len() == 2
    });
    publish(&gw, "news", "after");
    let log = page.wait("a", "the second message", |l| {
        messages(l, "news").len() == 2
    });
    assert_eq!(messages(&log, "news"), ["before", "after"], "{log:#?}");
    let down = in_state(&log, "disconnected");
    assert_eq!(down.len(), 1, "{log:#?}");
    assert_eq!(down[0]["code"], 1006, "{log:#?}");
    assert_eq!(down[0]["reason"], "cut", "{log:#?}");
    assert!(events(&log, "kick").is_empty(), "{log:#?}");
}

#[test]
fn the_heartbeat_replaces_a_connection_the_network_silently_dropped() {
    let Some((mut page, gw)) = Page::with_gateway(&[]) else {
        return;
    };
    let proxy = CutProxy::start(gw.ws_addr());
    page.start(
        "a",
        &[ws_url(proxy.addr())],
        json!({"user": "zed", "minDelay": 100, "maxDelay": 400,
               "heartbeat": 300, "heartbeatTimeout": 300}),
        &[("news", false)],
    );
    page.wait("a", "subscribed", |l| events(l, "subscribed").len() == 1);
    // Both sockets stay open; nothing crosses any more.
    proxy.freeze();
    let frozen = page.now();
    let log = page.wait("a", "subscribed again", |l| {
        events(l, "subscribed").len() == 2
    });
    let down = in_state(&log, "disconnected");
    assert_eq!(down.len(), 1, "{log:#?}");
    assert_eq!(down[0]["reason"], "timeout", "{log:#?}");
    // Silent for 300 ms, then 300 ms for an answer to its PING.
    let noticed = time(down[0]) - frozen;
    assert!(
        (100.0..=600.0 + LATE).contains(&noticed),
        "the dead connection was given up {noticed} ms after the network froze: {log:#?}"
    );
    publish(&gw, "news", "after");
    let log = page.wait("a", "the message", |l| !messages(l, "news").is_empty());
    assert_eq!(messages(&log, "news"), ["after"], "{log:#?}");
}

#[test]
fn kick_replaced_ends_the_client_without_a_reconnect() {
    let Some((mut page, gw)) = Page::with_gateway(&[]) else {
        return;
    };
    page.start(
        "a",
        &[ws_url(gw.ws_addr())],
        json!({"user": "rep", "minDelay": 50, "maxDelay": 100}),
        &[("news", false)],
    );
    page.wait("a", "subscribed", |l| events(l, "subscribed").len() == 1);
    let mut newer = gw.connect();
    newer.send("HELLO rep");
    let reply = newer.recv();
    assert!(reply.starts_with(b"OK HELLO "), "{reply:?}");
    page.wait("a", "closed", |l| !in_state(l, "closed").is_empty());
    // A closed client refuses to publish rather than queue for nothing.
    let refused = page.browser.eval(
        "(() => { try { window.clients.a.publish('news', 'x'); return 'sent'; } \
         catch (e) { return e.code; } })()",
    );
    assert_eq!(refused, "closed");
    // A reconnect would come within 100 ms and take the login back.
    std::thread::sleep(Duration::from_millis(600));
    let log = page.log("a");
    assert_eq!(
        states(&log),
        ["connecting", "connected", "closed"],
        "{log:#?}"
    );
    assert_eq!(in_state(&log, "closed")[0]["reason"], "replaced");
    assert_eq!(events(&log, "kick")[0]["reason"], "replaced");
    newer.send("PING");
    newer.expect("PONG");
    let held = get_ok(&gw, "/api/v1/connections?user=rep");
    assert_eq!(
        held["connections"].as_array().map(Vec::len),
        Some(1),
        "{held}"
    );
    assert_eq!(held["connections"][0]["transport"], "tcp", "{held}");
}

const SECRET: &str = "browser-client-token-secret";

fn token(user: &str, exp_from_now: i64, secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let exp = now.saturating_add_signed(exp_from_now);
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a token")
}

#[test]
fn an_expired_token_is_renewed_through_get_token_and_a_refused_one_is_not_retried() {
    let Some((mut page, gw)) = Page::with_gateway(&["--client-token-secret", SECRET]) else {
        return;
    };
    let url = ws_url(gw.ws_addr());
    // Past its `exp` but within the leeway: accepted, then kicked at once.
    let expired = token("tok", -5, SECRET);
    let fresh = token("tok", 600, SECRET);
    page.start(
        "renewed",
        std::slice::from_ref(&url),
        json!({"user": "tok", "tokens": [expired, fresh], "minDelay": 100, "maxDelay": 400}),
        &[("news", false)],
    );
    page.start(
        "fixed",
        std::slice::from_ref(&url),
        json!({"user": "fix", "token": token("fix", -5, SECRET), "minDelay": 50, "maxDelay": 100}),
        &[],
    );
    page.start(
        "refused",
        std::slice::from_ref(&url),
        json!({"user": "bad", "token": token("bad", 600, "another secret"), "minDelay": 50, "maxDelay": 100}),
        &[],
    );
    // The first connection may answer its SUB before its kick: wait for
    // the SUB of the second.
    page.wait("renewed", "subscribed with the fresh token", |l| {
        subscribed_after(l, 2)
    });
    publish(&gw, "news", "for a fresh token");
    let log = page.wait("renewed", "the message", |l| {
        !messages(l, "news").is_empty()
    });
    assert_eq!(events(&log, "getToken").len(), 2, "{log:#?}");
    assert_eq!(events(&log, "kick")[0]["reason"], "expired", "{log:#?}");
    assert_eq!(in_state(&log, "disconnected")[0]["code"], 1008, "{log:#?}");
    assert_eq!(in_state(&log, "connected").len(), 2, "{log:#?}");

    for name in ["fixed", "refused"] {
        page.wait(name, "closed", |l| !in_state(l, "closed").is_empty());
    }
    // A reconnect would come within 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    for (name, reason) in [("fixed", "expired"), ("refused", "unauthorized")] {
        let log = page.log(name);
        assert_eq!(in_state(&log, "connecting").len(), 1, "{name}: {log:#?}");
        let closed = in_state(&log, "closed");
        assert_eq!(closed.len(), 1, "{name}: {log:#?}");
        assert_eq!(closed[0]["reason"], reason, "{name}: {log:#?}");
        assert_eq!(closed[0]["code"], 1008, "{name}: {log:#?}");
    }
    let refused = page.log("refused");
    assert!(
        events(&refused, "error")
            .iter()
            .any(|e| e["code"] == "unauthorized"),
        "{refused:#?}"
    );
}

#[test]
fn reconnect_attempts_back_off_within_their_bounds_while_the_gateway_is_down() {
    let Some(mut page) = Page::open_if_chromium() else {
        return;
    };
    let ws = free_port();
    let url = ws_url(ws);
    // At the top of the jitter: each wait is exactly min + ceiling, capped.
    page.start(
        "top",
        std::slice::from_ref(&url),
        json!({"user": "b1", "minDelay": 100, "maxDelay": 800, "fixedRandom": 0.999_999}),
        &[],
    );
    page.start(
        "jitter",
        std::slice::from_ref(&url),
        json!({"user": "b2", "minDelay": 100, "maxDelay": 800}),
        &[],
    );
    page.wait("top", "six attempts", |l| {
        in_state(l, "connecting").len() >= 6
    });
    let gw = page.gateway_on(&ws.to_string(), &[]);
    for name in ["top", "jitter"] {
        let log = page.wait(name, "connected once the gateway is up", |l| {
            !in_state(l, "connected").is_empty()
        });
        let tries = in_state(&log, "connecting");
        let waits = in_state(&log, "disconnected");
        assert!(waits.len() >= 5, "{name}: {log:#?}");
        for (i, wait) in waits.iter().enumerate() {
            let delay = wait["delay"].as_f64().expect("a delay");
            assert!(
                (100.0..=800.0).contains(&delay),
                "{name}: wait {i} is {delay} ms, outside [100, 800]: {log:#?}"
            );
            let gap = time(tries[i + 1]) - time(wait);
            assert!(
                gap >= delay - 20.0 && gap <= delay + LATE,
                "{name}: attempt {} came {gap} ms after a wait of {delay} ms: {log:#?}",
                i + 1
            );
        }
        if name == "top" {
            let delays: Vec<f64> = waits
                .iter()
                .take(5)
                .map(|w| w["delay"].as_f64().expect("a delay"))
                .collect();
            assert_eq!(delays, [200.0, 300.0, 500.0, 800.0, 800.0], "{log:#?}");
        }
    }
    drop(gw);
}

#[test]
fn a_url_list_fails_over_to_the_next_gateway() {
    let Some(mut page) = Page::open_if_chromium() else {
        return;
    };
    let first = page.gateway(&[]);
    let second = page.gateway(&[]);
    let urls = [ws_url(first.ws_addr()), ws_url(second.ws_addr())];
    page.start(
        "a",
        &urls,
        json!({"user": "fo", "minDelay": 100, "maxDelay": 400}),
        &[("news", false)],
    );
    let log = page.wait("a", "subscribed", |l| events(l, "subscribed").len() == 1);
    assert_eq!(in_state(&log, "connected")[0]["url"], urls[0].as_str());
    drop(first);
    page.wait("a", "subscribed on the second", |l| {
        events(l, "subscribed").len() == 2
    });
    publish(&second, "news", "from the second");
    let log = page.wait("a", "the message", |l| !messages(l, "news").is_empty());
    assert_eq!(messages(&log, "news"), ["from the second"], "{log:#?}");
    assert_eq!(in_state(&log, "connected")[1]["url"], urls[1].as_str());
    // A PING answered: the round trip in ms.
    page.browser.eval(
        "window.clients.a.ping().then(ms => { window.rtt = ms; }, e => { window.rtt = e.code; }), true",
    );
    let rtt = eventually(PAGE_TIMEOUT, || {
        let rtt = page.browser.eval("window.rtt");
        (!rtt.is_null()).then_some(rtt)
    });
    assert!(
        rtt.as_ref()
            .and_then(Value::as_f64)
            .is_some_and(|ms| ms >= 0.0),
        "ping: {rtt:?}"
    );
}

/// A single node that keeps history: 100 messages per topic.
const HISTORY: [&str; 2] = ["--history-size", "100"];

/// The offsets of the messages delivered on `topic`, in order.
fn offsets(log: &[Value], topic: &str) -> Vec<u64> {
    events(log, "message")
        .iter()
        .filter(|e| e["topic"] == topic)
        .map(|e| e["offset"].as_u64().expect("a positioned message"))
        .collect()
}

/// Where in the log the first event satisfying `is` stands.
#[track_caller]
fn index_of(log: &[Value], is: impl Fn(&Value) -> bool) -> usize {
    log.iter()
        .position(is)
        .unwrap_or_else(|| panic!("not in the log: {log:#?}"))
}

/// Starts client `name` on `url` with a `recover: true` subscription to
/// `news`, waits until it got "one", and returns its first connection's id.
/// Each reconnect waits 1 s: what is published at once after a disconnect
/// lands while the page is away.
fn start_recovering(page: &mut Page, gw: &Gateway, name: &str, url: String) -> String {
    page.start(
        name,
        &[url],
        json!({"user": name, "minDelay": 1000, "maxDelay": 1000}),
        &[("news", true)],
    );
    page.wait(name, "subscribed", |l| events(l, "subscribed").len() == 1);
    publish(gw, "news", "one");
    let log = page.wait(name, "the first message", |l| {
        messages(l, "news").len() == 1
    });
    in_state(&log, "connected")[0]["id"]
        .as_str()
        .expect("a connection id")
        .to_owned()
}

/// Once client `name` is disconnected: three messages published while it
/// is away arrive after its reconnect, replayed as `RECOVERED 3`, exactly
/// once and in order, before a live one.
#[track_caller]
fn recovers_what_it_missed(page: &mut Page, gw: &Gateway, name: &str) -> Vec<Value> {
    page.wait(name, "disconnected", |l| {
        !in_state(l, "disconnected").is_empty()
    });
    for data in ["two", "three", "four"] {
        publish(gw, "news", data);
    }
    let log = page.log(name);
    assert_eq!(
        in_state(&log, "connected").len(),
        1,
        "published while the page was away: {log:#?}"
    );
    page.wait(name, "the recovery", |l| !events(l, "recovered").is_empty());
    publish(gw, "news", "five");
    let log = page.wait(name, "the live message", |l| {
        messages(l, "news").iter().any(|m| m == "five")
    });
    assert_eq!(
        messages(&log, "news"),
        ["one", "two", "three", "four", "five"],
        "{log:#?}"
    );
    let at = offsets(&log, "news");
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "offsets {at:?}: {log:#?}"
    );
    let subscribed = events(&log, "subscribed");
    assert_eq!(subscribed.len(), 2, "{log:#?}");
    assert_eq!(subscribed[1]["recovered"], 3, "RECOVERED 3: {log:#?}");
    let recovered = events(&log, "recovered");
    assert_eq!(recovered.len(), 1, "{log:#?}");
    assert_eq!(recovered[0]["count"], 3, "{log:#?}");
    // The replay, then the end of the recovery, then the live message.
    let back = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "state" && e["state"] == "connected")
        .nth(1)
        .map(|(at, _)| at)
        .expect("a second connection");
    let two = index_of(&log, |e| e["payload"] == "two");
    let done = index_of(&log, |e| e["event"] == "recovered");
    let five = index_of(&log, |e| e["payload"] == "five");
    assert!(back < two && two < done && done < five, "{log:#?}");
    assert!(events(&log, "lost").is_empty(), "{log:#?}");
    log
}

#[test]
fn after_an_admin_close_the_client_recovers_what_it_missed_exactly_once_in_order() {
    let Some((mut page, gw)) = Page::with_gateway(&HISTORY) else {
        return;
    };
    let id = start_recovering(&mut page, &gw, "adm", ws_url(gw.ws_addr()));
    let r = api(
        &gw,
        "POST",
        &format!("/api/v1/connections/{id}/close"),
        Some(&json!({})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let log = recovers_what_it_missed(&mut page, &gw, "adm");
    assert_eq!(in_state(&log, "disconnected")[0]["reason"], "admin");
}

#[test]
fn after_a_cut_without_a_close_frame_the_client_recovers_what_it_missed_exactly_once_in_order() {
    let Some((mut page, gw)) = Page::with_gateway(&HISTORY) else {
        return;
    };
    let proxy = CutProxy::start(gw.ws_addr());
    start_recovering(&mut page, &gw, "cut", ws_url(proxy.addr()));
    proxy.cut();
    let log = recovers_what_it_missed(&mut page, &gw, "cut");
    let down = in_state(&log, "disconnected");
    assert_eq!(down[0]["code"], 1006, "{log:#?}");
    assert_eq!(down[0]["reason"], "cut", "{log:#?}");
}

#[test]
fn after_a_restart_a_new_epoch_fires_lost_then_live_messages_flow() {
    let Some((mut page, gw)) = Page::with_gateway(&HISTORY) else {
        return;
    };
    let ws = gw.ws_addr();
    start_recovering(&mut page, &gw, "rst", ws_url(ws));
    // SIGKILL: the history in its memory is gone with it.
    drop(gw);
    page.wait("rst", "disconnected", |l| {
        !in_state(l, "disconnected").is_empty()
    });
    let gw = page.gateway_on(&ws.to_string(), &HISTORY);
    // Published in the new epoch while the page is still away: history
    // holds it, but not after the page's position, which is of the old epoch.
    publish(&gw, "news", "during");
    let log = page.log("rst");
    assert_eq!(in_state(&log, "connected").len(), 1, "{log:#?}");
    page.wait("rst", "lost after the reconnect", |l| {
        !events(l, "lost").is_empty()
    });
    publish(&gw, "news", "after");
    let log = page.wait("rst", "the live message", |l| {
        messages(l, "news").iter().any(|m| m == "after")
    });
    assert_eq!(messages(&log, "news"), ["one", "after"], "{log:#?}");
    let lost = events(&log, "lost");
    assert_eq!(lost.len(), 1, "{log:#?}");
    assert_eq!(lost[0]["reason"], "lost", "{log:#?}");
    assert!(events(&log, "recovered").is_empty(), "{log:#?}");
    let subscribed = events(&log, "subscribed");
    assert_eq!(subscribed.len(), 2, "{log:#?}");
    let epoch = |e: &Value| {
        let position = e["position"].as_str().expect("a position").to_owned();
        position.split(':').next().map(str::to_owned)
    };
    assert_ne!(epoch(subscribed[0]), epoch(subscribed[1]), "{log:#?}");
    let back = time(in_state(&log, "connected")[1]);
    let lost_at = index_of(&log, |e| e["event"] == "lost");
    let after = index_of(&log, |e| e["payload"] == "after");
    assert!(time(lost[0]) >= back && lost_at < after, "{log:#?}");
}

#[test]
fn in_a_cluster_the_page_fails_over_to_node_2_and_recovers_what_was_published_meanwhile() {
    if !gateway_tests::nats::nats_present() {
        return;
    }
    let Some(mut page) = Page::open_if_chromium() else {
        return;
    };
    let nats = gateway_tests::nats::NatsServer::start_jetstream();
    let url = nats.url();
    let node =
        |id: &str| page.gateway(&["--nats-url", &url, "--node-id", id, "--history-size", "100"]);
    let (one, two) = (node("n1"), node("n2"));
    crate::cluster::wait_members(&[&one, &two], &["n1", "n2"]);
    let urls = [ws_url(one.ws_addr()), ws_url(two.ws_addr())];
    page.start(
        "fo",
        &urls,
        json!({"user": "fo", "minDelay": 1000, "maxDelay": 1000}),
        &[("news", true)],
    );
    page.wait("fo", "subscribed", |l| events(l, "subscribed").len() == 1);
    publish(&two, "news", "one");
    page.wait("fo", "the first message", |l| {
        messages(l, "news").len() == 1
    });
    // Node 1 stops (SIGKILL); what node 2 publishes meanwhile is in the
    // stream, and the page, back on node 2, recovers it.
    drop(one);
    let log = recovers_what_it_missed(&mut page, &two, "fo");
    let connected = in_state(&log, "connected");
    assert_eq!(connected[0]["url"], urls[0].as_str(), "{log:#?}");
    assert_eq!(connected[1]["url"], urls[1].as_str(), "{log:#?}");
}
