//! Runs every scenario briefly against the baseline server, in both
//! framings, the load generator's WebSocket clients against the real
//! gateway's WebSocket listener, and the admin publishers against the real
//! gateway's admin API; checks each result line reports a clean run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

struct Server {
    child: Child,
    client: String,
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server on free loopback ports with one worker plus `args`, and
/// reads its `READY` line; `client_field` names the address the load
/// generator is to use (`client=`, or `ws=` for the WebSocket listener).
fn start_server(program: &Path, args: &[&str], client_field: &str) -> Server {
    let mut child = Command::new(program)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--workers", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("READY line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .expect("READY field")
    };
    let (client, admin) = (field(client_field), field("admin="));
    Server {
        child,
        client,
        admin,
    }
}

/// The gateway, found beside this package's binaries: the README's test
/// command builds it first (`cargo build -p gateway`).
fn gateway_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_gateway-bench"));
    let gateway = bench.with_file_name("gateway");
    assert!(
        gateway.is_file(),
        "{} not found: build it first with `cargo build -p gateway`",
        gateway.display()
    );
    gateway
}

fn start_baseline(framing: &str) -> Server {
    start_server(
        Path::new(env!("CARGO_BIN_EXE_gateway-baseline")),
        &["--framing", framing],
        "client=",
    )
}

fn bench(server: &Server, framing: &str, args: &[&str]) -> Value {
    let pid = server.child.id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway-bench"))
        .args([
            "--target",
            &server.client,
            "--admin",
            &server.admin,
            "--pid",
            &pid,
            "--framing",
            framing,
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--quiet",
            "--label",
            "baseline",
        ])
        .args(args)
        .output()
        .expect("run gateway-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(
        line["ok"],
        true,
        "{args:?}: {line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

fn all_scenarios(framing: &str) {
    let s = start_baseline(framing);
    let echo = bench(&s, framing, &["echo", "--connections", "4", "--depth", "4"]);
    assert!(echo["results"]["messages"].as_u64().unwrap_or(0) > 0);
    // The server's user-space share of its CPU per message, read with it.
    let total = echo["results"]["server_cpu_us_per"].as_f64();
    let user = echo["results"]["server_user_cpu_us_per"].as_f64();
    assert!(
        user.zip(total).is_some_and(|(u, t)| u <= t),
        "user {user:?}, total {total:?}"
    );
    let churn = bench(&s, framing, &["churn", "--concurrency", "2"]);
    assert!(churn["results"]["cycles"].as_u64().unwrap_or(0) > 0);
    let fanout = bench(
        &s,
        framing,
        &["fanout", "--subscribers", "20", "--publishers", "2"],
    );
    assert_eq!(fanout["results"]["missing"], 0);
    assert!(fanout["results"]["deliveries"].as_u64().unwrap_or(0) > 0);
    let idle = bench(
        &s,
        framing,
        &["idle", "--connections", "50", "--settle-ms", "50"],
    );
    assert_eq!(idle["results"]["connected"], 50);
    let kick = bench(
        &s,
        framing,
        &["kick", "--connections", "5", "--bytes", "40000"],
    );
    assert_eq!(kick["results"]["bytes_lost"], 0);
    assert_eq!(kick["results"]["bytes_read"], 200_000);
}

#[test]
fn scenarios_run_clean_against_the_baseline_with_lines() {
    all_scenarios("lines");
}

#[test]
fn scenarios_run_clean_against_the_baseline_with_length_prefixes() {
    all_scenarios("length");
}

/// The gateway's WebSocket listener, for `--transport ws`. The gateway is
/// found beside this package's binaries, built by the README's test command
/// (`cargo build -p gateway` first).
fn start_gateway_ws() -> Server {
    start_server(&gateway_binary(), &["--ws-listen", "127.0.0.1:0"], "ws=")
}

#[test]
fn scenarios_run_clean_against_the_gateway_over_websocket() {
    let s = start_gateway_ws();
    let ws = |args: &[&str]| {
        let mut all = vec!["--transport", "ws"];
        all.extend_from_slice(args);
        let line = bench(&s, "lines", &all);
        assert_eq!(line["framing"], "websocket", "{line}");
        line
    };
    let echo = ws(&["echo", "--connections", "4", "--depth", "4"]);
    assert!(echo["results"]["messages"].as_u64().unwrap_or(0) > 0);
    let churn = ws(&["churn", "--concurrency", "2"]);
    assert!(churn["results"]["cycles"].as_u64().unwrap_or(0) > 0);
    let fanout = ws(&["fanout", "--subscribers", "20", "--publishers", "2"]);
    assert_eq!(fanout["results"]["missing"], 0);
    let idle = ws(&["idle", "--connections", "50", "--settle-ms", "50"]);
    assert_eq!(idle["results"]["connected"], 50);
}

#[test]
fn the_admin_scenario_publishes_kept_alive_and_one_connection_per_request() {
    let s = start_server(&gateway_binary(), &[], "client=");
    for mode in [&[][..], &["--per-request"][..]] {
        let mut args = vec!["admin", "--connections", "2"];
        args.extend_from_slice(mode);
        let line = bench(&s, "lines", &args);
        assert!(
            line["results"]["publishes"].as_u64().unwrap_or(0) > 0,
            "{line}"
        );
        assert_eq!(line["params"]["per_request"], !mode.is_empty(), "{line}");
    }
}

#[test]
fn the_recover_scenario_replays_what_each_client_missed() {
    let s = start_server(&gateway_binary(), &["--history-size", "100"], "client=");
    let line = bench(
        &s,
        "lines",
        &["recover", "--clients", "20", "--missed", "30"],
    );
    assert_eq!(line["results"]["recovered_clients"], 20, "{line}");
    assert_eq!(line["results"]["missing_or_duplicated"], 0, "{line}");
}

/// A running `nats-server` on free ports, with its monitoring endpoint.
struct Nats {
    child: Child,
    url: String,
    monitor: String,
    _dir: TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_nats() -> Nats {
    let dir = std::env::temp_dir().join(format!("gateway-bench-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("ports dir");
    let dir = TempDir(dir);
    let child = Command::new("nats-server")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
        ])
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server (apt-get install nats-server)");
    let mut ports = None;
    for _ in 0..100 {
        let file = std::fs::read_dir(&dir.0)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if file.is_some() {
            ports = file;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ports = ports.expect("nats-server ports file");
    let url = ports["nats"][0].as_str().expect("client URL").to_owned();
    let monitor = ports["monitoring"][0]
        .as_str()
        .expect("monitoring URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Nats {
        child,
        url,
        monitor,
        _dir: dir,
    }
}

fn start_node(nats: &Nats, id: &str) -> Server {
    start_server(
        &gateway_binary(),
        &["--nats-url", &nats.url, "--node-id", id],
        "client=",
    )
}

#[test]
fn cluster_scenario_spreads_subscribers_and_counts_nats_messages() {
    let nats = start_nats();
    let (n1, n2) = (start_node(&nats, "bench-n1"), start_node(&nats, "bench-n2"));
    let targets = format!("{},{}", n1.client, n2.client);
    let line = bench(
        &n1,
        "lines",
        &[
            "cluster",
            "--subscribers",
            "20",
            "--publishers",
            "2",
            "--subscriber-targets",
            &targets,
            "--nats-monitor",
            &nats.monitor,
        ],
    );
    assert_eq!(line["params"]["subscriber_nodes"], 2, "{line}");
    assert_eq!(line["results"]["missing"], 0, "{line}");
    assert!(
        line["results"]["deliveries"].as_u64().unwrap_or(0) > 0,
        "{line}"
    );
    // Every publish crossed NATS to n2: at least one message in and out each.
    let out = line["results"]["nats"]["out_per_publish"].as_f64();
    assert!(out.is_some_and(|o| o >= 1.0), "{line}");
}
