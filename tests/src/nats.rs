//! A real `nats-server` for the cluster tests (contract section 10):
//! [`NatsServer::start`] runs it on free loopback ports (`-p -1 -m -1`,
//! the ports read back from `--ports_file_dir`), [`NatsServer::kill`] and
//! [`NatsServer::restart`] stop it and bring it back on the same port, and
//! [`NatsServer::varz`] reads its monitoring endpoint. Killed on drop.
//!
//! `nats-server` is found on `PATH` (Debian: `apt-get install nats-server`).
//! Without it the cluster tests say so and pass, unless
//! `GATEWAY_TEST_REQUIRE_NATS=1` is set, as CI does: then they fail.

use crate::http;
use crate::poll::eventually;
use crate::prometheus::missing_tools;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the server may take to write its ports file.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    dir: PathBuf,
    config: Option<PathBuf>,
    port: u16,
    monitor: SocketAddr,
}

/// Whether `nats-server` is there; when not, either skips (false) or fails
/// under `GATEWAY_TEST_REQUIRE_NATS=1`.
pub fn nats_present() -> bool {
    if missing_tools(&["nats-server"]).is_empty() {
        return true;
    }
    let required = std::env::var("GATEWAY_TEST_REQUIRE_NATS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "GATEWAY_TEST_REQUIRE_NATS=1 but nats-server is not on PATH (apt-get install nats-server)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping: nats-server not installed (apt-get install nats-server)"
    );
    false
}

impl NatsServer {
    /// Starts a server on free loopback ports.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config("")
    }

    /// Starts a server with JetStream (section 13's history), its store
    /// in the server's own scratch directory, kept across
    /// [`NatsServer::restart`].
    pub fn start_jetstream() -> NatsServer {
        NatsServer::start_with_config("jetstream { store_dir: \"{dir}/js\" }")
    }

    /// Starts a server with extra configuration lines (e.g.
    /// `max_payload: 2048`); `{dir}` stands for the server's scratch
    /// directory.
    pub fn start_with_config(config: &str) -> NatsServer {
        let dir = crate::scratch::fresh_dir("nats");
        let config = (!config.is_empty()).then(|| {
            let path = dir.join("nats.conf");
            let text = config.replace("{dir}", &dir.display().to_string());
            std::fs::write(&path, text).expect("write nats.conf");
            path
        });
        let mut server = NatsServer {
            child: None,
            dir,
            config,
            port: 0,
            monitor: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.spawn(None);
        server
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports_dir = self.dir.join(format!("ports-{}", port.unwrap_or(0)));
        std::fs::create_dir_all(&ports_dir).expect("create the ports directory");
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-m", "-1"])
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command.spawn().expect("spawn nats-server");
        let pid = child.id();
        self.child = Some(child);
        let ports: Value = eventually(START_TIMEOUT, || {
            let path = ports_dir.join(format!("nats-server_{pid}.ports"));
            let text = std::fs::read_to_string(path).ok()?;
            serde_json::from_str(&text).ok()
        })
        .expect("nats-server wrote no ports file");
        let url = |key: &str| -> String {
            ports[key][0]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} port in {ports}"))
                .to_owned()
        };
        let client = url("nats");
        self.port = client
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a client port");
        let monitor = url("monitoring");
        self.monitor = monitor
            .trim_start_matches("http://")
            .parse()
            .expect("a monitoring address");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (nothing flushed, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same client port.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(Some(port));
    }

    /// The monitoring endpoint's `/varz`.
    pub fn varz(&self) -> Value {
        http::fetch(self.monitor, "/varz", &[])
            .unwrap_or_else(|e| panic!("GET /varz on {}: {e}", self.monitor))
            .json()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
