//! The comparison table: reads result lines of both servers (several rounds
//! allowed), takes the median of each figure per server, and prints a
//! Markdown table with gateway/baseline ratios and the targets.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// What a row's gateway figure is held to.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// gateway / baseline >= x.
    RatioAtLeast(f64),
    /// gateway / baseline <= x.
    RatioAtMost(f64),
    /// gateway >= x.
    AtLeast(f64),
    /// gateway <= x.
    AtMost(f64),
    /// No target; shown for context.
    Info,
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    variant: Option<&'static str>,
    /// The baseline's variant to compare with (the pool-off control has no
    /// baseline run of its own).
    baseline_variant: Option<&'static str>,
    metric: &'static str,
    pointer: &'static str,
    target: Target,
}

const ROWS: &[Row] = &[
    row(
        "echo",
        None,
        "msgs/s",
        "/msgs_per_sec",
        Target::RatioAtLeast(0.9),
    ),
    row("echo", None, "p50 µs", "/latency/p50_us", Target::Info),
    row(
        "echo",
        None,
        "p99 µs",
        "/latency/p99_us",
        Target::RatioAtMost(1.2),
    ),
    row("echo", None, "p99.9 µs", "/latency/p999_us", Target::Info),
    row(
        "echo",
        None,
        "msgs per server CPU-s",
        "/per_server_cpu_sec",
        Target::Info,
    ),
    row(
        "churn",
        None,
        "cycles/s",
        "/cycles_per_sec",
        Target::RatioAtLeast(1.0),
    ),
    row("churn", None, "p99 µs", "/latency/p99_us", Target::Info),
    row(
        "churn",
        None,
        "pool reuse",
        "/pool_reuse",
        Target::AtLeast(0.99),
    ),
    row(
        "churn",
        None,
        "cycles per server CPU-s",
        "/per_server_cpu_sec",
        Target::Info,
    ),
    Row {
        scenario: "churn",
        variant: Some("pool-off"),
        baseline_variant: None,
        metric: "cycles/s (pool off)",
        pointer: "/cycles_per_sec",
        target: Target::Info,
    },
    Row {
        scenario: "churn",
        variant: Some("pool-off"),
        baseline_variant: Some("none"),
        metric: "pool reuse (pool off)",
        pointer: "/pool_reuse",
        target: Target::Info,
    },
    row(
        "fanout",
        None,
        "deliveries/s",
        "/deliveries_per_sec",
        Target::RatioAtLeast(1.0),
    ),
    row("fanout", None, "p50 µs", "/latency/p50_us", Target::Info),
    row("fanout", None, "p99 µs", "/latency/p99_us", Target::Info),
    row(
        "fanout",
        None,
        "deliveries per server CPU-s",
        "/per_server_cpu_sec",
        Target::Info,
    ),
    row("fanout", None, "missing", "/missing", Target::AtMost(0.0)),
    row(
        "fanout",
        None,
        "reordered",
        "/reordered",
        Target::AtMost(0.0),
    ),
    row(
        "idle",
        None,
        "RSS KiB/conn",
        "/rss_per_conn_kib",
        Target::AtMost(4.0),
    ),
    row(
        "idle",
        None,
        "connects/s",
        "/connects_per_sec",
        Target::Info,
    ),
    row(
        "kick",
        None,
        "bytes lost",
        "/bytes_lost",
        Target::AtMost(0.0),
    ),
    row(
        "kick",
        None,
        "close→EOF p50 µs",
        "/close_to_eof/p50_us",
        Target::Info,
    ),
    row(
        "kick",
        None,
        "close→EOF p99 µs",
        "/close_to_eof/p99_us",
        Target::Info,
    ),
];

const fn row(
    scenario: &'static str,
    variant: Option<&'static str>,
    metric: &'static str,
    pointer: &'static str,
    target: Target,
) -> Row {
    Row {
        scenario,
        variant,
        baseline_variant: variant,
        metric,
        pointer,
        target,
    }
}

/// Reads result lines from `files` and prints the table on stdout.
pub fn print_files(files: &[PathBuf]) -> Result<()> {
    let mut lines = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for l in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                lines.push(v);
            }
        }
    }
    emit(&render(&lines));
    Ok(())
}

#[allow(clippy::print_stdout)]
fn emit(s: &str) {
    print!("{s}");
}

fn matches(v: &Value, server: &str, scenario: &str, variant: Option<&str>) -> bool {
    v["server"] == server && v["scenario"] == scenario && v["variant"].as_str() == variant
}

/// Median of `pointer` over the runs of one server that produced results.
fn median(lines: &[Value], server: &str, r: &Row, variant: Option<&str>) -> Option<f64> {
    let mut xs: Vec<f64> = lines
        .iter()
        .filter(|v| matches(v, server, r.scenario, variant))
        .filter_map(|v| v["results"].pointer(r.pointer).and_then(Value::as_f64))
        .collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    })
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "–".to_owned(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// The Markdown table, then the failures and errors of every run.
pub fn render(lines: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | figure | gateway | baseline | gateway/baseline | target | verdict |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | --- | --- |");
    for r in ROWS {
        let g = median(lines, "gateway", r, r.variant);
        let b = if r.baseline_variant == Some("none") {
            None
        } else {
            median(lines, "baseline", r, r.baseline_variant)
        };
        let ratio = match (g, b) {
            (Some(g), Some(b)) if b != 0.0 => Some(g / b),
            _ => None,
        };
        let (target, verdict) = match r.target {
            Target::RatioAtLeast(x) => (format!("≥ {x}× baseline"), ratio.map(|q| q >= x)),
            Target::RatioAtMost(x) => (format!("≤ {x}× baseline"), ratio.map(|q| q <= x)),
            Target::AtLeast(x) => (format!("≥ {x}"), g.map(|g| g >= x)),
            Target::AtMost(x) => (format!("≤ {x}"), g.map(|g| g <= x)),
            Target::Info => (String::new(), None),
        };
        let verdict = match (r.target, verdict, g) {
            (Target::Info, _, _) => "",
            (_, Some(true), _) => "PASS",
            (_, Some(false), _) => "FAIL",
            (_, None, None) => "pending",
            (_, None, Some(_)) => "no baseline",
        };
        let name = match r.variant {
            Some(v) => format!("{} ({v})", r.scenario),
            None => r.scenario.to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {target} | {verdict} |",
            r.metric,
            fmt(g),
            fmt(b),
            ratio.map_or("–".to_owned(), |q| format!("{q:.3}")),
        );
    }
    let mut notes = String::new();
    for v in lines {
        let who = format!(
            "{} {}{}",
            v["server"].as_str().unwrap_or("?"),
            v["scenario"].as_str().unwrap_or("?"),
            v["variant"]
                .as_str()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        if let Some(e) = v["error"].as_str() {
            let _ = writeln!(notes, "- {who}: did not run: {e}");
        }
        for f in v["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(notes, "- {who}: {}", f.as_str().unwrap_or("?"));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nProblems seen:\n\n{notes}");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn ratios_and_pending() {
        let lines = vec![
            json!({"server":"baseline","scenario":"echo","variant":null,"results":{"msgs_per_sec":100.0,"latency":{"p99_us":10}}}),
            json!({"server":"gateway","scenario":"echo","variant":null,"results":{"msgs_per_sec":95.0,"latency":{"p99_us":13}}}),
            json!({"server":"gateway","scenario":"kick","variant":null,"error":"404"}),
        ];
        let t = super::render(&lines);
        assert!(t.contains("| echo | msgs/s | 95.00 | 100 | 0.950 | ≥ 0.9× baseline | PASS |"));
        assert!(t.contains("| echo | p99 µs | 13.00 | 10.00 | 1.300 | ≤ 1.2× baseline | FAIL |"));
        assert!(t.contains("| kick | bytes lost | – | – | – | ≤ 0 | pending |"));
        assert!(t.contains("gateway kick: did not run: 404"));
    }
}
