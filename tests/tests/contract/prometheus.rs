//! Contract section 8 against the real consumers of `/metrics`: a Prometheus
//! server scrapes the gateway every second and reads back exactly what the
//! gateway serves (every `gateway_*` series, value for value), PromQL over
//! the close-flush histogram gives a finite quantile, and `promtool check
//! metrics` accepts the exposition.
//!
//! Both need `prometheus` and `promtool` on `PATH` (Debian: `apt-get install
//! prometheus`). Without them the tests say so on stderr and pass, unless
//! `GATEWAY_TEST_REQUIRE_PROMETHEUS=1` is set, as CI does: then a missing
//! binary fails them.

use crate::common::start;
use gateway_tests::prometheus::{Prometheus, missing_tools, promtool_check_metrics};
use gateway_tests::{Client, Framing, Gateway, Metrics};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether the tools are there; when not, either skips (returns false) or
/// fails under `GATEWAY_TEST_REQUIRE_PROMETHEUS=1`.
fn tools_present(tools: &[&'static str]) -> bool {
    let missing = missing_tools(tools);
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GATEWAY_TEST_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "GATEWAY_TEST_REQUIRE_PROMETHEUS=1 but {missing:?} not found on PATH \
         (apt-get install prometheus)"
    );
    // Straight to the process's stderr: libtest captures `eprintln!` of a
    // passing test, and a skip should be seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: prometheus not installed (apt-get install prometheus); missing {missing:?}"
    );
    false
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Traffic that leaves every kind of series non-trivial: subscribers that
/// stay open, a publish, `QUIT`s and a replaced login (both observed by the
/// close-flush histogram). Returns the clients kept open.
fn traffic(gw: &Gateway) -> Vec<Client> {
    let mut keepers: Vec<Client> = (0..3).map(|_| gw.connect()).collect();
    for (i, keeper) in keepers.iter_mut().enumerate() {
        keeper.hello(&format!("keeper-{i}"));
        keeper.sub("news");
    }
    let mut publisher = gw.connect();
    publisher.send("PUB news hello");
    publisher.sync();
    for keeper in &mut keepers {
        keeper.expect("MSG news hello");
    }
    publisher.quit();
    let mut quitter = gw.connect();
    quitter.check("PING", "PONG");
    quitter.quit();
    let mut old = gw.connect();
    old.hello("twice");
    let mut new = gw.connect();
    new.hello("twice");
    old.expect("KICK replaced");
    old.expect_eof();
    drop(old);
    new.quit();
    keepers
}

/// Connect, `QUIT`, read `BYE` and EOF, over and over until stopped: each
/// cycle is one observation of the close-flush histogram.
fn churn(gw: &Gateway, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    let addr = gw.client_addr();
    std::thread::spawn(move || {
        let mut cycles = 0;
        while !stop.load(Ordering::Relaxed) {
            Client::connect(addr, Framing::Lines).quit();
            cycles += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        cycles
    })
}

/// A series' identity without the labels Prometheus adds.
fn series_key(name: &str, labels: impl IntoIterator<Item = (String, String)>) -> String {
    let mut labels: Vec<(String, String)> = labels
        .into_iter()
        .filter(|(k, _)| k != "job" && k != "instance" && k != "__name__")
        .collect();
    labels.sort();
    format!("{name}{labels:?}")
}

/// Polls a query until its single value satisfies `ok`; panics with the
/// last answer after `timeout`.
#[track_caller]
fn wait_query(
    prom: &Prometheus,
    promql: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let mut last = None;
    let found = gateway_tests::poll::eventually(timeout, || {
        let value = prom.query_one(promql);
        last = value;
        value.filter(|v| ok(*v))
    });
    found.unwrap_or_else(|| {
        panic!("query `{promql}` should be {what} within {timeout:?}; last value: {last:?}")
    })
}

#[test]
fn prometheus_scrapes_the_same_values_and_computes_flush_quantiles() {
    if !tools_present(&["prometheus"]) {
        return;
    }
    let gw = start(Framing::Lines, &[]);
    let keepers = traffic(&gw);
    gw.wait_metric_eq("gateway_connections_active", &[], 3.0);
    gw.wait_metric_eq("gateway_close_flush_duration_seconds_count", &[], 4.0);
    let settled = unix_now();

    let prom = Prometheus::start(gw.admin_addr());
    let instance = gw.admin_addr().to_string();
    let up = format!("up{{job=\"gateway\",instance=\"{instance}\"}}");
    wait_query(&prom, &up, Duration::from_secs(20), "1", |v| v == 1.0);

    // A scrape taken after the traffic settled: every gateway_* series in
    // it equals what the gateway serves now, as nothing has moved since.
    wait_query(
        &prom,
        "timestamp(gateway_connections_active)",
        Duration::from_secs(10),
        "a scrape after the traffic settled",
        |t| t > settled,
    );
    let served = gw.metrics();
    assert_eq!(served.value("gateway_connections_active", &[]), 3.0);
    assert_eq!(
        prom.query_one("gateway_connections_active"),
        Some(3.0),
        "gateway_connections_active as scraped"
    );
    let scraped = prom.query("{__name__=~\"gateway_.*\",job=\"gateway\"}");
    let scraped: std::collections::HashMap<String, f64> = scraped
        .into_iter()
        .map(|s| {
            let name = s.metric["__name__"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let labels = s
                .metric
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()));
            (series_key(&name, labels), s.value)
        })
        .collect();
    let gateway_samples: Vec<_> = served
        .samples
        .iter()
        .filter(|s| s.name.starts_with("gateway_"))
        .collect();
    for sample in &gateway_samples {
        let key = series_key(&sample.name, sample.labels.iter().cloned());
        assert_eq!(
            scraped.get(&key).copied(),
            Some(sample.value),
            "{key}: scraped by Prometheus vs served on /metrics"
        );
    }
    assert_eq!(
        scraped.len(),
        gateway_samples.len(),
        "Prometheus holds gateway_* series that /metrics does not serve"
    );

    // Closes keep coming while Prometheus scrapes, so the rate is positive.
    let stop = Arc::new(AtomicBool::new(false));
    let closer = churn(&gw, Arc::clone(&stop));
    let churn_started = unix_now();
    let quantile =
        "histogram_quantile(0.99, rate(gateway_close_flush_duration_seconds_bucket[1m]))";
    let answer = prom.query_raw(quantile);
    assert_eq!(answer["status"], "success", "`{quantile}`: {answer}");
    // Two scrapes after the churn began, each with more closes behind it.
    wait_query(
        &prom,
        "timestamp(gateway_close_flush_duration_seconds_count)",
        Duration::from_secs(10),
        "two scrapes into the churn",
        |t| t > churn_started + 2.0,
    );
    let rate = wait_query(
        &prom,
        "rate(gateway_close_flush_duration_seconds_count[1m])",
        Duration::from_secs(10),
        "positive",
        |v| v > 0.0,
    );
    let p99 = wait_query(
        &prom,
        quantile,
        Duration::from_secs(10),
        "a finite number of seconds",
        f64::is_finite,
    );
    stop.store(true, Ordering::Relaxed);
    let cycles = closer.join().expect("the closing client panicked");
    assert!(
        (0.0..=10.0).contains(&p99),
        "p99 close flush {p99}s (rate {rate}/s over {cycles} closes) outside 0..=10s"
    );
    drop(keepers);
}

#[test]
fn promtool_accepts_the_exposition() {
    if !tools_present(&["promtool"]) {
        return;
    }
    let gw = start(Framing::Lines, &[]);
    let keepers = traffic(&gw);
    gw.wait_metric_eq("gateway_close_flush_duration_seconds_count", &[], 4.0);
    let response = gw.http_get("/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
    let text = response.text();
    // What is linted has the traffic in it.
    assert_eq!(
        Metrics::parse(&text).value("gateway_connections_active", &[]),
        3.0
    );
    let outcome = promtool_check_metrics(&text);
    assert!(
        outcome.success,
        "promtool check metrics exited {}:\n{}\n--- exposition ---\n{text}",
        outcome.status, outcome.output
    );
    drop(keepers);
}
