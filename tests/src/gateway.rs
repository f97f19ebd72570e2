//! Running the real `gateway` binary as a child process (contract section 1).
//!
//! [`Gateway::start`] passes `--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0`
//! plus the test's flags, waits for the single `READY client=.. admin=..` line
//! on stdout, and kills the process on drop. Its stdout and stderr are kept
//! for assertions. The child's environment is the test's minus every
//! `GATEWAY_*` variable, plus what a test passes in; the test process's own
//! environment is never changed. [`run_to_exit`] runs the binary with exactly
//! the given arguments, for start-up failures.

use crate::client::Client;
use crate::framing::Framing;
use crate::http::{self, Response};
use crate::metrics::{Metrics, show_labels};
use crate::poll::eventually;
use crate::tls::ClientTls;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the gateway may take to print `READY`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running gateway; killed when dropped.
pub struct Gateway {
    child: Child,
    client_addr: SocketAddr,
    admin_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    framing: Framing,
    stdout: Arc<Pipe>,
    stderr: Arc<Pipe>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
    client_tls: Option<ClientTls>,
}

/// What a process that ran to its end left behind.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

/// Output captured from one pipe by a reader thread.
#[derive(Default)]
struct Pipe {
    state: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
}

impl Pipe {
    fn spawn(mut from: impl Read + Send + 'static) -> (Arc<Pipe>, JoinHandle<()>) {
        let pipe = Arc::new(Pipe::default());
        let writer = Arc::clone(&pipe);
        let handle = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                let n = from.read(&mut chunk).unwrap_or(0);
                let mut state = writer.state.lock().expect("pipe lock");
                if n == 0 {
                    state.1 = true;
                } else {
                    state.0.extend_from_slice(&chunk[..n]);
                }
                writer.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        (pipe, handle)
    }

    fn bytes(&self) -> Vec<u8> {
        self.state.lock().expect("pipe lock").0.clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Waits until the pipe holds a whole first line or is closed.
    fn first_line(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().expect("pipe lock");
        loop {
            if let Some(end) = state.0.iter().position(|&b| b == b'\n') {
                return Some(String::from_utf8_lossy(&state.0[..end]).into_owned());
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .expect("pipe lock")
                .0;
        }
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(crate::binary::gateway_bin());
    // Neither a developer's `GATEWAY_*` variables nor their `RUST_LOG`
    // change what a test sees; a test that wants one passes it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEWAY_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the gateway with exactly `args` (no listen flags added) and waits for
/// it to exit; panics if it is still running after `timeout`.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Exited {
    let mut child = command(args, env).spawn().expect("spawn the gateway");
    let (stdout, out_reader) = Pipe::spawn(child.stdout.take().expect("stdout"));
    let (stderr, err_reader) = Pipe::spawn(child.stderr.take().expect("stderr"));
    let status = eventually(timeout, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "gateway {args:?} still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
            stdout.text(),
            stderr.text()
        );
    };
    let _ = out_reader.join();
    let _ = err_reader.join();
    Exited {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

impl Gateway {
    /// Starts the gateway on loopback port 0 with these extra flags.
    pub fn start(flags: &[&str]) -> Gateway {
        Gateway::start_with_env(flags, &[])
    }

    /// Starts it with extra flags and extra environment variables.
    pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut args = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        Gateway::start_exact(&args, env)
    }

    /// Starts it with exactly these arguments (no listen flags added); the
    /// environment must then name loopback listeners.
    pub fn start_exact(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let flags = args;
        let mut child = command(args, env).spawn().expect("spawn the gateway");
        let (stdout, out_reader) = Pipe::spawn(child.stdout.take().expect("stdout"));
        let (stderr, err_reader) = Pipe::spawn(child.stderr.take().expect("stderr"));
        let line = stdout.first_line(READY_TIMEOUT);
        let Some(line) = line else {
            let _ = child.kill();
            let status = child.wait().ok();
            let _ = err_reader.join();
            panic!(
                "gateway {args:?} printed no READY line (exit: {status:?}); stdout:\n{}\nstderr:\n{}",
                stdout.text(),
                stderr.text()
            );
        };
        let (client_addr, admin_addr, ws_addr) = parse_ready_ws(&line)
            .unwrap_or_else(|| panic!("malformed READY line `{line}`; stderr:\n{}", stderr.text()));
        Gateway {
            child,
            client_addr,
            admin_addr,
            ws_addr,
            framing: framing_of(flags, env),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
            exit: None,
            client_tls: None,
        }
    }

    /// The client listener's address from `READY`.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The admin listener's address from `READY`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// A WebSocket client on the listener's default path `/ws` (`wss`
    /// after [`Gateway::use_tls`]).
    pub fn ws_connect(&self) -> crate::ws::WsClient {
        match &self.client_tls {
            None => crate::ws::WsClient::connect(self.ws_addr(), "/ws"),
            Some(tls) => crate::ws::WsClient::connect_tls(self.ws_addr(), "/ws", tls),
        }
    }

    /// The WebSocket listener's address from `READY`; panics when the
    /// gateway was started without `--ws-listen`.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
            .expect("READY names no ws= address: start the gateway with --ws-listen")
    }

    /// The framing the gateway was started with.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From now on [`Gateway::connect`] and [`Gateway::ws_connect`] speak
    /// TLS, with this client configuration (for a gateway started with
    /// `--tls-cert`).
    pub fn use_tls(&mut self, tls: ClientTls) {
        self.client_tls = Some(tls);
    }

    /// A new client speaking the gateway's framing (over TLS after
    /// [`Gateway::use_tls`]).
    pub fn connect(&self) -> Client {
        match &self.client_tls {
            None => Client::connect(self.client_addr, self.framing),
            Some(tls) => Client::tls(self.client_addr, self.framing, tls),
        }
    }

    /// Like [`Gateway::connect`], with a small receive buffer, for a client
    /// meant to fall behind.
    pub fn connect_small_rcvbuf(&self, rcvbuf: usize) -> Client {
        match &self.client_tls {
            None => Client::connect_small_rcvbuf(self.client_addr, self.framing, rcvbuf),
            Some(tls) => Client::tls_small_rcvbuf(self.client_addr, self.framing, rcvbuf, tls),
        }
    }

    /// Everything on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Waits for the process to exit; `None` if it is still running after
    /// `timeout`. Once it has exited, stdout and stderr are complete.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            let child = &mut self.child;
            self.exit = eventually(timeout, || child.try_wait().expect("try_wait"));
            if self.exit.is_some() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
            }
        }
        self.exit
    }

    /// Waits for the process to exit; panics after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.try_wait_exit(timeout).unwrap_or_else(|| {
            panic!("gateway still running {timeout:?} after being asked to stop")
        })
    }

    /// The resident set size from `/proc/PID/status`, in bytes.
    pub fn vm_rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or_else(|| panic!("no VmRSS in {path}"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad VmRSS line `{line}`"));
        kb * 1024
    }

    /// `GET path` on the admin listener.
    pub fn http_get(&self, path: &str) -> Response {
        http::get(self.admin_addr, path)
    }

    /// Fetches and parses `GET /metrics`, asserting a 200.
    #[track_caller]
    pub fn metrics(&self) -> Metrics {
        let response = self.http_get("/metrics");
        assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
        Metrics::parse(&response.text())
    }

    /// One metric's current value; panics when it is not exported.
    #[track_caller]
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics().value(name, labels)
    }

    /// Polls `/metrics` until the metric satisfies `ok`, for at most
    /// `timeout`; panics with the last value otherwise.
    #[track_caller]
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        what: &str,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let mut last = None;
        let found = eventually(timeout, || {
            let value = self.metrics().get(name, labels);
            last = value;
            value.filter(|v| ok(*v))
        });
        found.unwrap_or_else(|| {
            panic!(
                "metric {name}{} should be {what} within {timeout:?}; last value: {last:?}",
                show_labels(labels)
            )
        })
    }

    /// Polls until the metric equals `expected` exactly.
    #[track_caller]
    pub fn wait_metric_eq(&self, name: &str, labels: &[(&str, &str)], expected: f64) -> f64 {
        self.wait_metric(
            name,
            labels,
            Duration::from_secs(5),
            &format!("{expected}"),
            |v| v == expected,
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let stderr = self.stderr.text();
            let tail: String = {
                let chars: Vec<char> = stderr.chars().collect();
                chars[chars.len().saturating_sub(4000)..].iter().collect()
            };
            eprintln!("--- gateway stderr (tail) ---\n{tail}\n--- end of gateway stderr ---");
        }
    }
}

/// Parses `READY client=IP:PORT admin=IP:PORT`, exactly.
pub fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("READY client=")?;
    let (client, admin) = rest.split_once(" admin=")?;
    let client: SocketAddr = client.parse().ok()?;
    let admin: SocketAddr = admin.parse().ok()?;
    Some((client, admin))
}

/// Parses `READY client=IP:PORT admin=IP:PORT`, optionally followed by
/// ` ws=IP:PORT` (contract section 12), exactly.
pub fn parse_ready_ws(line: &str) -> Option<(SocketAddr, SocketAddr, Option<SocketAddr>)> {
    match line.split_once(" ws=") {
        Some((head, ws)) => {
            let (client, admin) = parse_ready(head)?;
            Some((client, admin, Some(ws.parse().ok()?)))
        }
        None => parse_ready(line).map(|(client, admin)| (client, admin, None)),
    }
}

fn framing_of(flags: &[&str], env: &[(&str, &str)]) -> Framing {
    let mut value = env
        .iter()
        .find(|(k, _)| *k == "GATEWAY_FRAMING")
        .map(|(_, v)| *v);
    for (i, flag) in flags.iter().enumerate() {
        if *flag == "--framing" {
            value = flags.get(i + 1).copied();
        } else if let Some(v) = flag.strip_prefix("--framing=") {
            value = Some(v);
        }
    }
    match value {
        Some("length") => Framing::Length,
        _ => Framing::Lines,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_ready, parse_ready_ws};

    #[test]
    fn ready_line() {
        let (c, a) =
            parse_ready("READY client=127.0.0.1:40123 admin=127.0.0.1:40124").expect("parse");
        assert_eq!((c.port(), a.port()), (40123, 40124));
        assert!(parse_ready("READY client=127.0.0.1:1  admin=127.0.0.1:2").is_none());
        assert!(parse_ready("READY client=127.0.0.1:1 admin=127.0.0.1:2 x").is_none());
        let (_, _, ws) =
            parse_ready_ws("READY client=127.0.0.1:1 admin=127.0.0.1:2 ws=127.0.0.1:3")
                .expect("parse with ws");
        assert_eq!(ws.map(|a| a.port()), Some(3));
        assert!(
            parse_ready_ws("READY client=127.0.0.1:1 ws=127.0.0.1:3 admin=127.0.0.1:2").is_none()
        );
        assert!(parse_ready_ws("READY client=127.0.0.1:1 admin=127.0.0.1:2 ws=x").is_none());
    }
}
