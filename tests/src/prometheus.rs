//! A real Prometheus server and `promtool` next to the gateway (contract
//! section 8): [`Prometheus::start`] writes a configuration that scrapes one
//! target every second, runs `prometheus` on a free loopback port with its
//! storage in a fresh temporary directory, and kills it and removes the
//! directory on drop. [`Prometheus::query`] runs an instant PromQL query
//! through `/api/v1/query`; [`promtool_check_metrics`] lints an exposition.
//!
//! Both binaries are found on `PATH`; [`missing_tools`] tells a test which
//! are absent so that it can skip (or fail where they are required).

use crate::http;
use crate::poll::eventually;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Prometheus may take to answer its readiness endpoint.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Prometheus server; killed (and its directory removed) on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

/// The result of an instant query that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub metric: serde_json::Map<String, Value>,
    /// The value, parsed (`NaN`, `+Inf` included).
    pub value: f64,
}

/// The tools named here that are not on `PATH`.
pub fn missing_tools(tools: &[&'static str]) -> Vec<&'static str> {
    tools
        .iter()
        .copied()
        .filter(|tool| find_on_path(tool).is_none())
        .collect()
}

/// The first executable file called `name` in a `PATH` directory.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (an admin listener serving
    /// `/metrics`) every second, and waits until it answers `/-/ready`.
    pub fn start(target: SocketAddr) -> Prometheus {
        let dir = crate::scratch::fresh_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: gateway\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let data = dir.join("data");
        let mut last_log = String::new();
        // A free port can be taken by someone else before Prometheus binds
        // it: try a few.
        for _ in 0..5 {
            let addr = free_port();
            let log_path = dir.join("prometheus.log");
            let log = std::fs::File::create(&log_path).expect("create the prometheus log");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let mut server = Prometheus {
                child,
                addr,
                dir: dir.clone(),
            };
            let ready = eventually(START_TIMEOUT, || {
                if let Ok(Some(_)) = server.child.try_wait() {
                    return Some(false);
                }
                match http::fetch(addr, "/-/ready", &[]) {
                    Ok(r) if r.status == 200 => Some(true),
                    _ => None,
                }
            });
            if ready == Some(true) {
                return server;
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = server.child.kill();
            let _ = server.child.wait();
            // Keep the directory for the next try.
            server.dir = PathBuf::new();
            if ready.is_none() {
                break;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("prometheus did not become ready; its log:\n{last_log}");
    }

    /// Its web address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Prometheus has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; returns the whole JSON answer, whatever its
    /// status, so a test can assert on `status` and `error`.
    pub fn query_raw(&self, promql: &str) -> Value {
        let response = http::fetch(self.addr, "/api/v1/query", &[("query", promql)])
            .unwrap_or_else(|e| panic!("query `{promql}`: {e}\nprometheus log:\n{}", self.log()));
        response.json()
    }

    /// Runs an instant query that must succeed with a vector (possibly
    /// empty); returns its samples.
    #[track_caller]
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let answer = self.query_raw(promql);
        assert_eq!(
            answer["status"], "success",
            "query `{promql}` failed: {answer}"
        );
        assert_eq!(
            answer["data"]["resultType"], "vector",
            "query `{promql}`: {answer}"
        );
        let result = answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query `{promql}`: no result array in {answer}"));
        result
            .iter()
            .map(|series| {
                let metric = series["metric"].as_object().cloned().unwrap_or_default();
                let text = series["value"][1]
                    .as_str()
                    .unwrap_or_else(|| panic!("query `{promql}`: bad sample {series}"));
                Sample {
                    metric,
                    value: parse_value(text)
                        .unwrap_or_else(|| panic!("query `{promql}`: bad value `{text}`")),
                }
            })
            .collect()
    }

    /// Runs a query expected to give at most one series; its value, if any.
    #[track_caller]
    pub fn query_one(&self, promql: &str) -> Option<f64> {
        let samples = self.query(promql);
        assert!(
            samples.len() <= 1,
            "query `{promql}` gave {} series: {samples:?}",
            samples.len()
        );
        samples.first().map(|s| s.value)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let chars: Vec<char> = log.chars().collect();
            let tail: String = chars[chars.len().saturating_sub(4000)..].iter().collect();
            eprintln!("--- prometheus log (tail) ---\n{tail}\n--- end of prometheus log ---");
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What `promtool check metrics` made of an exposition.
#[derive(Debug)]
pub struct PromtoolOutcome {
    /// Whether it exited 0.
    pub success: bool,
    /// Its exit status, for messages.
    pub status: String,
    /// Its stdout and stderr together.
    pub output: String,
}

/// Runs `promtool check metrics` with `exposition` on stdin.
pub fn promtool_check_metrics(exposition: &str) -> PromtoolOutcome {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    let text = exposition.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let mut stdout = child.stdout.take().expect("promtool stdout");
    let mut stderr = child.stderr.take().expect("promtool stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut output = String::new();
    let _ = stdout.read_to_string(&mut output);
    output.push_str(&err_reader.join().unwrap_or_default());
    let _ = writer.join();
    let status = eventually(Duration::from_secs(20), || {
        child.try_wait().expect("wait for promtool")
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("promtool check metrics still running after 20s; output:\n{output}");
    };
    PromtoolOutcome {
        success: status.success(),
        status: status.to_string(),
        output,
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// A Prometheus sample value: a float, `NaN`, `+Inf` or `-Inf`.
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_value;

    #[test]
    fn reads_values() {
        assert_eq!(parse_value("3"), Some(3.0));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("x"), None);
    }
}
