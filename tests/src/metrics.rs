//! Reading the Prometheus text exposition from `GET /metrics` (contract
//! section 8): samples by name and exact label set, and the `# HELP` /
//! `# TYPE` lines of each family. It checks no semantics of its own. The
//! load generator reads its counters through it too.
//!
//! Written here rather than taken from `prometheus-parse`, which skips a line
//! it cannot read, keeps no `# TYPE` of a family, and splits label values on
//! `,` and `=`: a contract test must see each of those.

use std::collections::HashMap;

/// The `reason` values of `gateway_connections_closed_total` (contract
/// section 8), written out here so the tests hold the gateway to the
/// contract rather than to its own list.
pub const CLOSE_REASONS: [&str; 11] = [
    "client",
    "quit",
    "replaced",
    "admin",
    "idle",
    "slow",
    "shutdown",
    "frame_too_large",
    "error",
    "unauthorized",
    "expired",
];

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with any `_total`/`_bucket` suffix as written.
    pub name: String,
    /// The labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The text as served.
    pub text: String,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# HELP` text by family name.
    pub help: HashMap<String, String>,
    /// `# TYPE` by family name.
    pub types: HashMap<String, String>,
}

impl Metrics {
    /// Parses exposition text; panics on a line it cannot read.
    pub fn parse(text: &str) -> Metrics {
        Metrics::try_parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses exposition text; `Err` names the first line it cannot read.
    pub fn try_parse(text: &str) -> Result<Metrics, String> {
        let mut metrics = Metrics {
            text: text.to_string(),
            samples: Vec::new(),
            help: HashMap::new(),
            types: HashMap::new(),
        };
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                metrics.help.insert(name.to_string(), help.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                metrics
                    .types
                    .insert(name.to_string(), kind.trim().to_string());
            } else if line.starts_with('#') {
                continue;
            } else {
                let sample = parse_sample(line)
                    .ok_or_else(|| format!("unreadable metrics line `{line}`"))?;
                metrics.samples.push(sample);
            }
        }
        Ok(metrics)
    }

    /// The sum over every label set of the samples named `name`, or `None`
    /// when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }

    /// The value of the sample with exactly this name and these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Metrics::get`], panicking with the family's lines when missing.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let family: Vec<&str> = self.text.lines().filter(|l| l.contains(name)).collect();
            panic!(
                "metric {name}{} not exported; lines naming it:\n{}",
                show_labels(labels),
                family.join("\n")
            )
        })
    }
}

/// `{a="b",...}` for messages.
pub fn show_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let (labels, used) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, &line[open + 1 + used..])
        }
        _ => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let mut labels = labels;
    labels.sort();
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",...}`; returns the labels and the bytes used, `}` included.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, usize)> {
    let bytes = text.as_bytes();
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        while bytes.get(i) == Some(&b',') || bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if bytes.get(i) == Some(&b'}') {
            return Some((labels, i + 1));
        }
        let eq = text[i..].find('=')? + i;
        let key = text[i..eq].trim().to_string();
        i = eq + 1;
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut value = String::new();
        loop {
            match *bytes.get(i)? {
                b'\\' => {
                    match *bytes.get(i + 1)? {
                        b'n' => value.push('\n'),
                        other => value.push(char::from(other)),
                    }
                    i += 2;
                }
                b'"' => {
                    i += 1;
                    break;
                }
                _ => {
                    let ch = text[i..].chars().next()?;
                    value.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        labels.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn reads_samples_help_and_type() {
        let m = Metrics::parse(
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{reason=\"x\",b=\"q\\\"\"} 3\n\
             g 1.5e3\nh_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(
            m.get("a_total", &[("b", "q\""), ("reason", "x")]),
            Some(3.0)
        );
        assert_eq!(m.get("a_total", &[("reason", "x")]), None);
        assert_eq!(m.get("g", &[]), Some(1500.0));
        assert_eq!(m.get("h_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(m.types.get("a_total").map(String::as_str), Some("counter"));
        assert_eq!(m.help.get("a_total").map(String::as_str), Some("Things."));
        assert!(Metrics::try_parse("a_total{reason=\"x} 3\n").is_err());
    }

    #[test]
    fn sums_label_sets_of_one_name_only() {
        let m = Metrics::parse(
            "pool_reused_total 41\npool_reused_total_extra 5\n\
             closed_total{reason=\"a\"} 1\nclosed_total{reason=\"b}\"} 2.5\n",
        );
        assert_eq!(m.sum("pool_reused_total"), Some(41.0));
        assert_eq!(m.sum("closed_total"), Some(3.5));
        assert_eq!(m.sum("missing"), None);
    }
}
