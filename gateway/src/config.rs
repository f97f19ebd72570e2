//! Flags and `GATEWAY_*` variables (contract section 1), parsed into a
//! validated [`Config`]. Every problem is collected and reported on one
//! line, before anything binds.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use client_token::Verifier;
use conn_actor::{Framing, Limits};
use ws_protocol::handshake::{Origins, Policy};

use crate::tls::TlsFiles;

mod report;
pub use report::{ParseError, parse};

/// Raw command line, as clap reads it from flags and the environment.
#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "A connection gateway for long-lived TCP, TLS and WebSocket clients, with an admin API"
)]
pub struct Args {
    /// Client TCP listener.
    #[arg(
        long,
        env = "GATEWAY_LISTEN",
        default_value = "0.0.0.0:7000",
        value_name = "ADDR"
    )]
    listen: String,
    /// Admin HTTP API, /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "GATEWAY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9000",
        value_name = "ADDR"
    )]
    admin_listen: String,
    /// Frame format, both directions.
    #[arg(long, env = "GATEWAY_FRAMING", value_enum, default_value = "lines")]
    framing: FramingArg,
    /// Largest frame accepted from a client.
    #[arg(
        long,
        env = "GATEWAY_MAX_FRAME_BYTES",
        default_value_t = 65536,
        value_name = "N"
    )]
    max_frame_bytes: u64,
    /// Open client connections at once.
    #[arg(
        long,
        env = "GATEWAY_MAX_CONNECTIONS",
        default_value_t = 10000,
        value_name = "N"
    )]
    max_connections: u64,
    /// Open client connections from one IP address; 0 is no limit.
    #[arg(
        long,
        env = "GATEWAY_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    max_connections_per_ip: u64,
    /// Output queued for one connection past which it is a slow consumer.
    #[arg(
        long,
        env = "GATEWAY_MAX_PENDING_BYTES",
        default_value_t = 1048576,
        value_name = "N"
    )]
    max_pending_bytes: u64,
    /// Topics one connection may hold.
    #[arg(
        long,
        env = "GATEWAY_MAX_SUBSCRIPTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    max_subscriptions: u64,
    /// Seconds without a frame before `KICK idle`; 0 turns it off.
    #[arg(
        long,
        env = "GATEWAY_IDLE_TIMEOUT",
        default_value_t = 300,
        value_name = "SECS"
    )]
    idle_timeout: u64,
    /// Bound on one graceful close, flush and linger together, in seconds.
    #[arg(
        long,
        env = "GATEWAY_CLOSE_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS"
    )]
    close_timeout: u64,
    /// Bound on draining everything at SIGTERM or /api/v1/drain, in seconds.
    #[arg(
        long,
        env = "GATEWAY_SHUTDOWN_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS"
    )]
    shutdown_timeout: u64,
    /// Recycled connection states kept ready.
    #[arg(
        long,
        env = "GATEWAY_POOL_MAX_IDLE",
        default_value_t = 1024,
        value_name = "N"
    )]
    pool_max_idle: u64,
    /// Threads that run connection actors [default: CPU count].
    #[arg(long, env = "GATEWAY_WORKERS", value_name = "N")]
    workers: Option<u64>,
    /// When set, /api/* needs `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "GATEWAY_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// PEM certificate chain: the client listener speaks TLS 1.2 and 1.3.
    #[arg(long, env = "GATEWAY_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GATEWAY_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM certificate chain: the admin listener speaks HTTPS.
    #[arg(long, env = "GATEWAY_ADMIN_TLS_CERT", value_name = "FILE")]
    admin_tls_cert: Option<PathBuf>,
    /// PEM private key for --admin-tls-cert.
    #[arg(long, env = "GATEWAY_ADMIN_TLS_KEY", value_name = "FILE")]
    admin_tls_key: Option<PathBuf>,
    /// HS256 key: with it, `HELLO` needs a client token (a JWT).
    #[arg(
        long,
        env = "GATEWAY_CLIENT_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    client_token_secret: Option<String>,
    /// PEM RSA or EC (P-256) public key: RS256 or ES256 client tokens; with
    /// it, `HELLO` needs a token.
    #[arg(long, env = "GATEWAY_CLIENT_TOKEN_PUBLIC_KEY", value_name = "FILE")]
    client_token_public_key: Option<std::path::PathBuf>,
    /// Log lines on stderr; RUST_LOG filters them.
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Which values came from a `GATEWAY_*` variable, for the errors.
    #[arg(skip)]
    origins: report::Origins,
    /// A WebSocket listener (RFC 6455) for browsers [default: none].
    #[arg(long, env = "GATEWAY_WS_LISTEN", value_name = "ADDR")]
    ws_listen: Option<String>,
    /// The one path of the WebSocket listener that upgrades.
    #[arg(
        long,
        env = "GATEWAY_WS_PATH",
        default_value = "/ws",
        value_name = "PATH"
    )]
    ws_path: String,
    /// Comma-separated origins allowed to connect over WebSocket, or `*`.
    #[arg(
        long,
        env = "GATEWAY_WS_ALLOWED_ORIGINS",
        default_value = "*",
        value_name = "LIST"
    )]
    ws_allowed_origins: String,
    /// NATS server(s), comma separated: with it this gateway is a node of
    /// a cluster.
    #[arg(
        long,
        env = "GATEWAY_NATS_URL",
        value_name = "URLS",
        hide_env_values = true
    )]
    nats_url: Option<String>,
    /// This node's name in ids, logs, metrics and the cluster API
    /// [default: generated at start].
    #[arg(long, env = "GATEWAY_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// Every subject the cluster uses starts with `P.`.
    #[arg(
        long,
        env = "GATEWAY_NATS_SUBJECT_PREFIX",
        default_value = "gateway",
        value_name = "P"
    )]
    nats_subject_prefix: String,
    /// Bound on waiting for other nodes, in milliseconds.
    #[arg(
        long,
        env = "GATEWAY_CLUSTER_TIMEOUT",
        default_value_t = 1000,
        value_name = "MS"
    )]
    cluster_timeout: u64,
    /// Cross-node traffic held while NATS is slow or unreachable.
    #[arg(
        long,
        env = "GATEWAY_NATS_PENDING_BYTES",
        default_value_t = 8388608,
        value_name = "N"
    )]
    nats_pending_bytes: u64,
    /// Messages kept per topic for recovery; 0 turns history off.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_SIZE",
        default_value_t = 0,
        value_name = "N"
    )]
    history_size: u64,
    /// A message older than this leaves history.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_TTL",
        default_value_t = 300,
        value_name = "SECS"
    )]
    history_ttl: u64,
    /// Comma-separated topics with history; a name ending in * is a prefix.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_TOPICS",
        default_value = "*",
        value_name = "PATTERNS"
    )]
    history_topics: String,
    /// What history may hold in all: payloads and per-message overhead.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_MAX_BYTES",
        default_value_t = 67108864,
        value_name = "N"
    )]
    history_max_bytes: u64,
    /// The most messages one recovery replays.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_RECOVER_MAX",
        default_value_t = 1000,
        value_name = "N"
    )]
    history_recover_max: u64,
    /// Cluster: replicas of the JetStream stream that holds history.
    #[arg(
        long,
        env = "GATEWAY_HISTORY_REPLICAS",
        default_value_t = 1,
        value_name = "N"
    )]
    history_replicas: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FramingArg {
    Lines,
    Length,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub limits: Limits,
    pub max_connections: usize,
    /// 0: no limit.
    pub max_connections_per_ip: usize,
    pub shutdown_timeout: Duration,
    pub pool_max_idle: usize,
    pub workers: usize,
    pub admin_token: Option<String>,
    /// TLS on the client listener.
    pub tls: Option<TlsFiles>,
    /// TLS on the admin listener.
    pub admin_tls: Option<TlsFiles>,
    /// Where set, `HELLO` needs a client token that this verifies.
    pub client_tokens: Option<Arc<Verifier>>,
    pub log_format: LogFormat,
    /// The WebSocket listener and what it upgrades, when asked for.
    pub ws: Option<WsConfig>,
    /// This node's name (`--node-id`, or generated).
    pub node_id: String,
    /// Set with `--nats-url`: this gateway is a node of a cluster.
    pub cluster: Option<gateway_cluster::Settings>,
    /// Set with `--history-size` above 0: topic history (section 13).
    pub history: Option<gateway_history::Settings>,
}

/// The WebSocket listener (contract section 12).
#[derive(Debug, Clone)]
pub struct WsConfig {
    pub listen: SocketAddr,
    pub policy: Policy,
}

/// The largest frame a 4-byte length prefix can announce.
const MAX_FRAME_LIMIT: u64 = u32::MAX as u64;

impl Args {
    /// Validates the raw values, reporting every problem at once.
    pub fn validate(self) -> Result<Config, String> {
        let mut problems = Vec::new();
        let mut addr = |flag: &str, value: &str| -> Option<SocketAddr> {
            match value.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => Some(addr),
                _ => {
                    problems.push(format!("{flag} '{value}' is not a HOST:PORT address"));
                    None
                }
            }
        };
        let listen = addr("--listen", &self.listen);
        let admin_listen = addr("--admin-listen", &self.admin_listen);
        let ws_listen = self
            .ws_listen
            .as_deref()
            .map(|value| addr("--ws-listen", value));
        let mut positive = |flag: &str, value: u64, max: u64| -> usize {
            if value == 0 || value > max {
                problems.push(format!("{flag} must be between 1 and {max}, not {value}"));
            }
            value.min(max) as usize
        };
        let max_frame_bytes = positive("--max-frame-bytes", self.max_frame_bytes, MAX_FRAME_LIMIT);
        let max_connections = positive("--max-connections", self.max_connections, 1 << 24);
        let max_pending_bytes = positive("--max-pending-bytes", self.max_pending_bytes, 1 << 40);
        let max_subscriptions = positive("--max-subscriptions", self.max_subscriptions, 1 << 20);
        let close_timeout = positive("--close-timeout", self.close_timeout, 86_400);
        let shutdown_timeout = positive("--shutdown-timeout", self.shutdown_timeout, 86_400);
        let workers = match self.workers {
            Some(n) => positive("--workers", n, 1024),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let cluster_timeout = positive("--cluster-timeout", self.cluster_timeout, 600_000);
        let nats_pending_bytes = positive("--nats-pending-bytes", self.nats_pending_bytes, 1 << 40);
        if self.idle_timeout > 86_400 * 365 {
            problems.push(format!("--idle-timeout {} is too large", self.idle_timeout));
        }
        let origins = Origins::parse(&self.ws_allowed_origins)
            .map_err(|e| problems.push(format!("--ws-allowed-origins: {e}")))
            .ok();
        let policy = origins.and_then(|origins| {
            Policy::new(&self.ws_path, origins)
                .map_err(|e| problems.push(format!("--ws-path: {e}")))
                .ok()
        });
        if self.admin_token.as_deref() == Some("") {
            problems.push("--admin-token must not be empty".into());
        }
        let node_id = match &self.node_id {
            Some(id) => gateway_cluster::settings::node_id(id).unwrap_or_else(|err| {
                problems.push(format!("--node-id: {err}"));
                String::new()
            }),
            None => format!("gw-{}", random_hex()),
        };
        let prefix = gateway_cluster::settings::subject_prefix(&self.nats_subject_prefix)
            .unwrap_or_else(|err| {
                problems.push(format!("--nats-subject-prefix: {err}"));
                String::new()
            });
        let cluster = match self.nats_url.as_deref() {
            None => None,
            Some(urls) => match gateway_cluster::settings::nats_urls(urls) {
                Ok(urls) => Some(gateway_cluster::Settings {
                    urls,
                    node_id: node_id.clone(),
                    prefix,
                    timeout: Duration::from_millis(cluster_timeout as u64),
                    pending_bytes: nats_pending_bytes,
                }),
                Err(err) => {
                    problems.push(format!("--nats-url: {err}"));
                    None
                }
            },
        };
        let history = self.history(&mut problems);
        let client_tokens = match client_token_verifier(
            self.client_token_secret.as_deref(),
            self.client_token_public_key.as_deref(),
        ) {
            Ok(verifier) => verifier.map(Arc::new),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let tls = tls_files("--tls-cert", self.tls_cert, "--tls-key", self.tls_key).unwrap_or_else(
            |problem| {
                problems.push(problem);
                None
            },
        );
        let admin_tls = tls_files(
            "--admin-tls-cert",
            self.admin_tls_cert,
            "--admin-tls-key",
            self.admin_tls_key,
        )
        .unwrap_or_else(|problem| {
            problems.push(problem);
            None
        });
        let (Some(listen), Some(admin_listen), Some(policy), true) =
            (listen, admin_listen, policy, problems.is_empty())
        else {
            return Err(self.origins.reword(&problems.join("; ")));
        };
        // An address that did not parse was reported above.
        let ws = ws_listen
            .flatten()
            .map(|listen| WsConfig { listen, policy });
        Ok(Config {
            listen,
            admin_listen,
            limits: Limits {
                framing: match self.framing {
                    FramingArg::Lines => Framing::Lines,
                    FramingArg::Length => Framing::Length,
                },
                max_frame_bytes,
                max_pending_bytes,
                max_subscriptions,
                idle_timeout: (self.idle_timeout > 0)
                    .then(|| Duration::from_secs(self.idle_timeout)),
                close_timeout: Duration::from_secs(close_timeout as u64),
                history: history.is_some(),
            },
            max_connections,
            max_connections_per_ip: self.max_connections_per_ip.min(1 << 24) as usize,
            shutdown_timeout: Duration::from_secs(shutdown_timeout as u64),
            pool_max_idle: self.pool_max_idle.min(1 << 24) as usize,
            workers,
            admin_token: self.admin_token,
            tls,
            admin_tls,
            client_tokens,
            log_format: self.log_format,
            ws,
            node_id,
            cluster,
            history,
        })
    }

    /// The `--history-*` flags, when `--history-size` turns history on.
    fn history(&self, problems: &mut Vec<String>) -> Option<gateway_history::Settings> {
        let mut within = |flag: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!(
                    "{flag} must be between {min} and {max}, not {value}"
                ));
            }
            value.clamp(min, max)
        };
        let size = within("--history-size", self.history_size, 0, 1 << 24);
        let ttl = within("--history-ttl", self.history_ttl, 1, 86_400 * 365);
        let max_bytes = within("--history-max-bytes", self.history_max_bytes, 1024, 1 << 40);
        let recover_max = within(
            "--history-recover-max",
            self.history_recover_max,
            1,
            1 << 20,
        );
        let replicas = within("--history-replicas", self.history_replicas, 1, 5);
        let topics = gateway_history::TopicPatterns::parse(&self.history_topics)
            .map_err(|err| problems.push(format!("--history-topics: {err}")))
            .ok()?;
        if size == 0 {
            return None;
        }
        Some(gateway_history::Settings {
            limits: gateway_history::Limits {
                size: size as usize,
                ttl: Duration::from_secs(ttl),
                max_bytes,
                key_window: Duration::from_secs(120),
            },
            topics,
            recover_max: recover_max as usize,
            replicas: replicas as usize,
        })
    }
}

/// Eight hex digits that differ from one start to the next (a generated
/// node id, a run id), without a random-number crate: the standard
/// library's per-process random hash keys, mixed with the time and pid.
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

/// A certificate and its key, named together or not at all. Checked here
/// rather than with clap's `requires`, whose error names neither flag.
fn tls_files(
    cert_flag: &str,
    cert: Option<PathBuf>,
    key_flag: &str,
    key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!("{cert_flag} needs {key_flag}, which is not set")),
        (None, Some(_)) => Err(format!("{key_flag} needs {cert_flag}, which is not set")),
    }
}

/// The client-token verifier the flags ask for: an HS256 secret, or a PEM
/// public key read from its file; not both.
fn client_token_verifier(
    secret: Option<&str>,
    public_key: Option<&std::path::Path>,
) -> Result<Option<Verifier>, String> {
    match (secret, public_key) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            Err("give one of --client-token-secret and --client-token-public-key, not both".into())
        }
        (Some(secret), None) => Verifier::hs256(secret.as_bytes())
            .map(Some)
            .map_err(|err| format!("--client-token-secret: {err}")),
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|err| format!("--client-token-public-key '{}': {err}", path.display()))?;
            Verifier::public_key_pem(&pem)
                .map(Some)
                .map_err(|err| format!("--client-token-public-key '{}': {err}", path.display()))
        }
    }
}

/// Whether the command line or environment asks for JSON logs, read
/// leniently so that even a parse error can be reported in that format.
pub fn wants_json_logs(args: &[String]) -> bool {
    let from_args = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    from_args || std::env::var("GATEWAY_LOG_FORMAT").is_ok_and(|v| v == "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("gateway").chain(args.iter().copied());
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn defaults_are_the_contract_defaults() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.limits.framing, Framing::Lines);
        assert_eq!(config.limits.max_frame_bytes, 65536);
        assert_eq!(config.max_connections, 10000);
        assert_eq!(config.max_connections_per_ip, 0);
        assert_eq!(config.limits.max_pending_bytes, 1 << 20);
        assert_eq!(config.limits.max_subscriptions, 1024);
        assert_eq!(config.limits.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(config.limits.close_timeout, Duration::from_secs(10));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(config.pool_max_idle, 1024);
        assert!(config.workers >= 1);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn zero_idle_timeout_turns_it_off() {
        let config = parse(&["--idle-timeout", "0"]).expect("valid");
        assert_eq!(config.limits.idle_timeout, None);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = parse(&[
            "--max-frame-bytes",
            "0",
            "--workers",
            "0",
            "--listen",
            "nowhere",
        ])
        .expect_err("invalid");
        assert!(err.contains("--max-frame-bytes"), "{err}");
        assert!(err.contains("--workers"), "{err}");
        assert!(err.contains("--listen"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn websocket_flags() {
        let config = parse(&[]).expect("valid");
        assert!(config.ws.is_none());
        let config = parse(&["--ws-listen", "127.0.0.1:0"]).expect("valid");
        let ws = config.ws.expect("a ws listener");
        assert_eq!(ws.listen.to_string(), "127.0.0.1:0");
        assert_eq!(ws.policy.path(), "/ws");
        let err = parse(&[
            "--ws-listen",
            "nowhere",
            "--ws-path",
            "ws",
            "--ws-allowed-origins",
            "example.com",
        ])
        .expect_err("invalid");
        assert!(err.contains("--ws-listen"), "{err}");
        assert!(err.contains("--ws-allowed-origins"), "{err}");
        assert!(!err.contains('\n'));
        let err = parse(&["--ws-path", "no-slash"]).expect_err("invalid");
        assert!(err.contains("--ws-path"), "{err}");
    }

    #[test]
    fn tls_files_come_in_pairs() {
        let config = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).expect("valid");
        let files = config.tls.expect("client TLS");
        assert_eq!(files.cert, PathBuf::from("c.pem"));
        assert!(config.admin_tls.is_none());
        let err = parse(&["--tls-cert", "c.pem"]).expect_err("no key");
        assert_eq!(err, "--tls-cert needs --tls-key, which is not set");
        let err = parse(&["--admin-tls-key", "k.pem"]).expect_err("no certificate");
        assert_eq!(
            err,
            "--admin-tls-key needs --admin-tls-cert, which is not set"
        );
    }

    #[test]
    fn unparsable_numbers_are_refused() {
        assert!(parse(&["--max-connections", "many"]).is_err());
        assert!(parse(&["--framing", "xml"]).is_err());
    }
}
