//! The comparison tables: reads result lines of both servers (several rounds
//! and configurations allowed), pairs the two servers' runs of each round,
//! and prints per configuration a Markdown table of medians, per-round
//! gateway/baseline ratios with their range, and the targets; with several
//! `workers-N` configurations, also how CPU per unit of work scales.

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
        Target::RatioAtLeast(1.1),
    ),
    row(
        "echo",
        None,
        "server CPU µs/msg",
        "/server_cpu_us_per",
        Target::RatioAtMost(0.8),
    ),
    row(
        "echo",
        None,
        "server user-space CPU µs/msg",
        "/server_user_cpu_us_per",
        Target::Info,
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
        "server sends per 1000 msgs",
        "/syscalls_per_1000/sendto",
        Target::Info,
    ),
    row(
        "echo",
        None,
        "server reads per 1000 msgs",
        "/syscalls_per_1000/recvfrom",
        Target::Info,
    ),
    row(
        "churn",
        None,
        "cycles/s",
        "/cycles_per_sec",
        Target::RatioAtLeast(1.2),
    ),
    row(
        "churn",
        None,
        "server CPU µs/cycle",
        "/server_cpu_us_per",
        Target::Info,
    ),
    row("churn", None, "p99 µs", "/latency/p99_us", Target::Info),
    row(
        "churn",
        None,
        "pool reuse",
        "/pool_reuse",
        Target::AtLeast(0.99),
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
        baseline_variant: None,
        metric: "server CPU µs/cycle (pool off)",
        pointer: "/server_cpu_us_per",
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
        Target::RatioAtLeast(1.3),
    ),
    row(
        "fanout",
        None,
        "server CPU µs/delivery",
        "/server_cpu_us_per",
        Target::RatioAtMost(0.8),
    ),
    row(
        "fanout",
        None,
        "server user-space CPU µs/delivery",
        "/server_user_cpu_us_per",
        Target::Info,
    ),
    row("fanout", None, "p50 µs", "/latency/p50_us", Target::Info),
    row("fanout", None, "p99 µs", "/latency/p99_us", Target::Info),
    row("fanout", None, "missing", "/missing", Target::AtMost(0.0)),
    row(
        "fanout",
        None,
        "reordered",
        "/reordered",
        Target::AtMost(0.0),
    ),
    row(
        "fanout",
        None,
        "server sends per 1000 deliveries",
        "/syscalls_per_1000/sendto",
        Target::Info,
    ),
    row(
        "fanout",
        None,
        "server reads per 1000 deliveries",
        "/syscalls_per_1000/recvfrom",
        Target::Info,
    ),
    row(
        "idle",
        None,
        "RSS KiB/conn",
        "/rss_per_conn_kib",
        Target::AtMost(1.5),
    ),
    row(
        "idle",
        None,
        "connects/s",
        "/connects_per_sec",
        Target::Info,
    ),
    row(
        "idle",
        None,
        "server CPU µs/connect",
        "/server_cpu_us_per",
        Target::Info,
    ),
    // The gateway alone over TLS and over WebSocket on TLS, beside its
    // plain idle rows above (`run.sh` cases idle-tls and idle-wss).
    Row {
        scenario: "idle",
        variant: Some("tls"),
        baseline_variant: Some("none"),
        metric: "RSS KiB/conn (TLS)",
        pointer: "/rss_per_conn_kib",
        target: Target::AtMost(4.0),
    },
    Row {
        scenario: "idle",
        variant: Some("tls"),
        baseline_variant: Some("none"),
        metric: "server CPU µs/connect (TLS)",
        pointer: "/server_cpu_us_per",
        target: Target::Info,
    },
    Row {
        scenario: "idle",
        variant: Some("wss"),
        baseline_variant: Some("none"),
        metric: "RSS KiB/conn (wss)",
        pointer: "/rss_per_conn_kib",
        target: Target::AtMost(4.5),
    },
    Row {
        scenario: "idle",
        variant: Some("wss"),
        baseline_variant: Some("none"),
        metric: "server CPU µs/connect (wss)",
        pointer: "/server_cpu_us_per",
        target: Target::Info,
    },
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
        "push MiB/s",
        "/push_mib_per_sec",
        Target::Info,
    ),
    row(
        "kick",
        None,
        "server CPU µs/MiB",
        "/server_cpu_us_per",
        Target::Info,
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

/// The per-unit CPU figures the scaling table compares across worker counts.
const SCALING: &[(&str, &str)] = &[
    ("echo", "server CPU µs/msg"),
    ("churn", "server CPU µs/cycle"),
    ("fanout", "server CPU µs/delivery"),
    ("idle", "server CPU µs/connect"),
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

/// Reads result lines from `files` and prints the tables on stdout, with
/// the targets and their verdicts where `verdicts`.
pub fn print_files(files: &[PathBuf], verdicts: bool) -> Result<()> {
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
    emit(&render(&lines, verdicts));
    Ok(())
}

#[allow(clippy::print_stdout)]
fn emit(s: &str) {
    print!("{s}");
}

/// The figure `pointer` of every run of `server` in `config`, in run order
/// (a run that produced no figure is kept as `None`, so that the i-th runs
/// of the two servers, taken side by side in one round, stay paired).
fn series(
    lines: &[Value],
    config: Option<&str>,
    server: &str,
    scenario: &str,
    variant: Option<&str>,
    pointer: &str,
) -> Vec<Option<f64>> {
    lines
        .iter()
        .filter(|v| {
            v["config"].as_str() == config
                && v["server"] == server
                && v["scenario"] == scenario
                && v["variant"].as_str() == variant
        })
        .map(|v| v["results"].pointer(pointer).and_then(Value::as_f64))
        .collect()
}

/// Median, lowest and highest of the values present.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(xs: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
    let mut xs: Vec<f64> = xs.into_iter().flatten().filter(|x| x.is_finite()).collect();
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    let median = if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    };
    Some(Spread {
        median,
        min: xs[0],
        max: xs[xs.len() - 1],
        n: xs.len(),
    })
}

/// Per-round ratios a[i] / b[i] of two paired series.
fn ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<Option<f64>> {
    a.iter()
        .zip(b)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if *b != 0.0 => Some(a / b),
            _ => None,
        })
        .collect()
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `median ±half-range%` of an absolute figure.
fn fmt_abs(s: Option<Spread>) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s.n < 2 || s.median == 0.0 => num(s.median),
        Some(s) => format!(
            "{} ±{:.0}%",
            num(s.median),
            (s.max - s.min) / 2.0 / s.median.abs() * 100.0
        ),
    }
}

/// `median (lowest–highest)` of a ratio.
fn fmt_ratio(s: Option<Spread>) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s.n < 2 => format!("{:.3}", s.median),
        Some(s) => format!("{:.3} ({:.2}–{:.2})", s.median, s.min, s.max),
    }
}

/// Configurations in the order they first appear.
fn configs(lines: &[Value]) -> Vec<Option<&str>> {
    let mut out: Vec<Option<&str>> = Vec::new();
    for v in lines {
        let c = v["config"].as_str();
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Worker count of a `workers-N` configuration.
fn workers_of(config: Option<&str>) -> Option<u32> {
    config?.strip_prefix("workers-")?.parse().ok()
}

/// One table per configuration, the scaling table when the run had several
/// `workers-N` configurations, then the failures and errors of every run.
/// Without `verdicts` (a quick run, too short for the targets to mean
/// anything) the tables leave the target and verdict columns out.
pub fn render(lines: &[Value], verdicts: bool) -> String {
    let mut out = String::new();
    let all = configs(lines);
    for config in &all {
        if let Some(c) = config {
            let _ = writeln!(out, "#### Configuration `{c}`\n");
        }
        table(&mut out, lines, *config, verdicts);
        out.push('\n');
    }
    let mut scaled: Vec<(u32, Option<&str>)> = all
        .iter()
        .filter_map(|c| workers_of(*c).map(|n| (n, *c)))
        .collect();
    scaled.sort_unstable();
    if scaled.len() >= 2 {
        scaling(&mut out, lines, &scaled);
    }
    let mut notes = String::new();
    for v in lines {
        let who = format!(
            "{}{} {}{}",
            v["config"]
                .as_str()
                .map(|s| format!("[{s}] "))
                .unwrap_or_default(),
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
        let _ = writeln!(out, "Problems seen:\n\n{notes}");
    }
    out
}

/// The gateway/baseline table of one configuration. The ratio is the median
/// of the per-round ratios (each round runs both servers one after the
/// other), with their lowest and highest; absolute figures are medians over
/// rounds with half their range.
fn table(out: &mut String, lines: &[Value], config: Option<&str>, verdicts: bool) {
    let head = "| scenario | figure | gateway | baseline | gateway/baseline (range over rounds) |";
    if verdicts {
        let _ = writeln!(out, "{head} target | verdict |");
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | --- | --- |");
    } else {
        let _ = writeln!(out, "{head}");
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
    }
    for r in ROWS {
        table_row(
            out,
            lines,
            config,
            verdicts,
            r,
            r.variant,
            r.baseline_variant,
        );
    }
    // Variants no row names (a sweep's shapes, the matrix's shallow-queue
    // shapes) get their scenario's rows, held to the shape targets.
    for (scenario, variant) in unnamed_variants(lines, config) {
        for r in ROWS
            .iter()
            .filter(|r| r.scenario == scenario && r.variant.is_none())
        {
            let shaped = Row {
                variant: None,
                baseline_variant: None,
                target: shape_target(r),
                ..*r
            };
            table_row(
                out,
                lines,
                config,
                verdicts,
                &shaped,
                Some(variant),
                Some(variant),
            );
        }
    }
}

/// What a row of a variant no row names is held to. Such a variant is a
/// shape of the load (`--window 4`, one write per ping): the gateway must
/// never spend more CPU per unit of work than the baseline in any shape
/// (the 0.8× of the scenario's own rows is for its deep queues), and
/// correctness holds as everywhere; throughput and latency are shown, not
/// judged.
fn shape_target(r: &Row) -> Target {
    match r.target {
        Target::RatioAtMost(_) if r.pointer == "/server_cpu_us_per" => Target::RatioAtMost(1.0),
        Target::AtMost(x) => Target::AtMost(x),
        Target::AtLeast(x) => Target::AtLeast(x),
        _ => Target::Info,
    }
}

/// (scenario, variant) of the runs in `config` whose variant no row names,
/// in the order they first appear.
fn unnamed_variants<'a>(lines: &'a [Value], config: Option<&str>) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for v in lines.iter().filter(|v| v["config"].as_str() == config) {
        let (Some(scenario), Some(variant)) = (v["scenario"].as_str(), v["variant"].as_str())
        else {
            continue;
        };
        let named = ROWS
            .iter()
            .any(|r| r.scenario == scenario && r.variant == Some(variant));
        if !named && !out.contains(&(scenario, variant)) {
            out.push((scenario, variant));
        }
    }
    out
}

/// One row of [`table`]: `r`'s figure for the gateway's runs of `variant`
/// against the baseline's of `baseline_variant`.
fn table_row(
    out: &mut String,
    lines: &[Value],
    config: Option<&str>,
    verdicts: bool,
    r: &Row,
    variant: Option<&str>,
    baseline_variant: Option<&str>,
) {
    let gs = series(lines, config, "gateway", r.scenario, variant, r.pointer);
    if gs.is_empty() {
        return;
    }
    let bs = if baseline_variant == Some("none") {
        Vec::new()
    } else {
        series(
            lines,
            config,
            "baseline",
            r.scenario,
            baseline_variant,
            r.pointer,
        )
    };
    // A figure only some runs record (system call counts need perf) is left
    // out where none has it, rather than shown as a row of dashes.
    if matches!(r.target, Target::Info) && gs.iter().chain(&bs).all(Option::is_none) {
        return;
    }
    let g = spread(gs.iter().copied());
    let b = spread(bs.iter().copied());
    let ratio = spread(ratios(&gs, &bs));
    let q = ratio.map(|s| s.median);
    let (target, verdict) = match r.target {
        Target::RatioAtLeast(x) => (format!("≥ {x}× baseline"), q.map(|q| q >= x)),
        Target::RatioAtMost(x) => (format!("≤ {x}× baseline"), q.map(|q| q <= x)),
        Target::AtLeast(x) => (format!("≥ {x}"), g.map(|g| g.median >= x)),
        Target::AtMost(x) => (format!("≤ {x}"), g.map(|g| g.max <= x)),
        Target::Info => (String::new(), None),
    };
    let verdict = match (r.target, verdict, g) {
        (Target::Info, _, _) => "",
        (_, Some(true), _) => "PASS",
        (_, Some(false), _) => "FAIL",
        (_, None, None) => "pending",
        (_, None, Some(_)) => "no baseline",
    };
    let name = match variant {
        Some(v) => format!("{} ({v})", r.scenario),
        None => r.scenario.to_owned(),
    };
    let _ = write!(
        out,
        "| {name} | {} | {} | {} | {} |",
        r.metric,
        fmt_abs(g),
        fmt_abs(b),
        fmt_ratio(ratio),
    );
    if verdicts {
        let _ = write!(out, " {target} | {verdict} |");
    }
    out.push('\n');
}

/// CPU per unit of work at each worker count, and how much it grew from the
/// fewest workers to the most (per round, the same server's runs paired).
fn scaling(out: &mut String, lines: &[Value], scaled: &[(u32, Option<&str>)]) {
    let (lo, hi) = (scaled[0], scaled[scaled.len() - 1]);
    let _ = writeln!(out, "#### Scaling: server CPU per unit of work\n");
    let mut head = "| scenario | figure | server |".to_owned();
    let mut rule = "| --- | --- | --- |".to_owned();
    for (n, _) in scaled {
        let _ = write!(head, " {n} worker{} |", if *n == 1 { "" } else { "s" });
        rule.push_str(" ---: |");
    }
    let _ = writeln!(
        out,
        "{head} {} / {} workers (range over rounds) |",
        hi.0, lo.0
    );
    let _ = writeln!(out, "{rule} ---: |");
    for (scenario, metric) in SCALING {
        let Some(r) = ROWS
            .iter()
            .find(|r| r.scenario == *scenario && r.metric == *metric)
        else {
            continue;
        };
        for server in ["gateway", "baseline"] {
            let per: Vec<Vec<Option<f64>>> = scaled
                .iter()
                .map(|(_, c)| series(lines, *c, server, r.scenario, None, r.pointer))
                .collect();
            if per.iter().all(Vec::is_empty) {
                continue;
            }
            let mut line = format!("| {scenario} | {metric} | {server} |");
            for s in &per {
                let _ = write!(line, " {} |", fmt_abs(spread(s.iter().copied())));
            }
            let growth = spread(ratios(&per[per.len() - 1], &per[0]));
            let _ = writeln!(out, "{line} {} |", fmt_ratio(growth));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn ratios_spread_and_pending() {
        let lines = vec![
            json!({"server":"baseline","scenario":"echo","variant":null,"results":{"msgs_per_sec":100.0,"latency":{"p99_us":10}}}),
            json!({"server":"gateway","scenario":"echo","variant":null,"results":{"msgs_per_sec":95.0,"latency":{"p99_us":12}}}),
            json!({"server":"gateway","scenario":"echo","variant":null,"results":{"msgs_per_sec":130.0,"latency":{"p99_us":11}}}),
            json!({"server":"baseline","scenario":"echo","variant":null,"results":{"msgs_per_sec":100.0,"latency":{"p99_us":10}}}),
            json!({"server":"gateway","scenario":"kick","variant":null,"error":"404"}),
        ];
        let t = super::render(&lines, true);
        assert!(
            t.contains("| echo | msgs/s | 112 ±16% | 100 ±0% | 1.125 (0.95–1.30) | ≥ 1.1× baseline | PASS |"),
            "{t}"
        );
        assert!(t.contains("| echo | p99 µs | 11.50 ±4% | 10.00 ±0% | 1.150 (1.10–1.20) | ≤ 1.2× baseline | PASS |"), "{t}");
        assert!(
            t.contains("| kick | bytes lost | – | – | – | ≤ 0 | pending |"),
            "{t}"
        );
        assert!(t.contains("gateway kick: did not run: 404"));
    }

    #[test]
    fn idle_over_tls_and_wss_is_held_to_its_own_bound() {
        let lines = vec![
            json!({"server":"gateway","scenario":"idle","variant":null,"results":{"rss_per_conn_kib":1.9}}),
            json!({"server":"baseline","scenario":"idle","variant":null,"results":{"rss_per_conn_kib":3.0}}),
            json!({"server":"gateway","scenario":"idle","variant":"tls","results":{"rss_per_conn_kib":3.9}}),
            json!({"server":"gateway","scenario":"idle","variant":"wss","results":{"rss_per_conn_kib":4.6}}),
        ];
        let t = super::render(&lines, true);
        assert!(
            t.contains("| idle (tls) | RSS KiB/conn (TLS) | 3.90 | – | – | ≤ 4 | PASS |"),
            "{t}"
        );
        assert!(
            t.contains("| idle (wss) | RSS KiB/conn (wss) | 4.60 | – | – | ≤ 4.5 | FAIL |"),
            "{t}"
        );
    }

    #[test]
    fn a_shape_gets_its_scenarios_rows_held_to_the_baseline() {
        let lines = vec![
            json!({"server":"gateway","scenario":"fanout","variant":"w4","results":{"server_cpu_us_per":1.1,"deliveries_per_sec":90.0,"missing":0}}),
            json!({"server":"baseline","scenario":"fanout","variant":"w4","results":{"server_cpu_us_per":1.0,"deliveries_per_sec":100.0,"missing":0}}),
        ];
        let t = super::render(&lines, true);
        assert!(
            t.contains("| fanout (w4) | server CPU µs/delivery | 1.10 | 1.00 | 1.100 | ≤ 1× baseline | FAIL |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout (w4) | deliveries/s | 90.00 | 100 | 0.900 |  |  |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout (w4) | missing | 0.00 | 0.00 | – | ≤ 0 | PASS |"),
            "{t}"
        );
        // No perf, no rows of system calls.
        assert!(!t.contains("sends per 1000"), "{t}");
    }

    #[test]
    fn without_verdicts_no_target_and_no_verdict() {
        let lines = vec![
            json!({"server":"baseline","scenario":"echo","variant":null,"results":{"msgs_per_sec":100.0}}),
            json!({"server":"gateway","scenario":"echo","variant":null,"results":{"msgs_per_sec":50.0}}),
        ];
        let t = super::render(&lines, false);
        assert!(
            t.contains("| echo | msgs/s | 50.00 | 100 | 0.500 |\n"),
            "{t}"
        );
        for word in ["target", "verdict", "FAIL", "PASS", "baseline |\n"] {
            assert!(!t.contains(word), "{word} in:\n{t}");
        }
    }

    #[test]
    fn one_table_per_config_and_scaling() {
        let mut lines = Vec::new();
        for (config, g, b) in [
            ("workers-1", 1.0, 2.0),
            ("workers-2", 1.5, 2.2),
            ("workers-1", 1.2, 2.0),
            ("workers-2", 1.5, 2.0),
        ] {
            lines.push(json!({"config":config,"server":"gateway","scenario":"fanout","variant":null,"results":{"server_cpu_us_per":g}}));
            lines.push(json!({"config":config,"server":"baseline","scenario":"fanout","variant":null,"results":{"server_cpu_us_per":b}}));
        }
        let t = super::render(&lines, true);
        assert!(t.contains("#### Configuration `workers-1`"), "{t}");
        assert!(t.contains("#### Configuration `workers-2`"), "{t}");
        assert!(
            t.contains("| fanout | server CPU µs/delivery | gateway | 1.10 ±9% | 1.50 ±0% | 1.375 (1.25–1.50) |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout | server CPU µs/delivery | baseline | 2.00 ±0% | 2.10 ±5% | 1.050 (1.00–1.10) |"),
            "{t}"
        );
    }
}
