//! The benchmark scenarios and what they share: the run's settings, the
//! result each returns, and small client helpers.

pub mod admin;
pub mod churn;
pub mod cluster;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod kick;
pub mod recover;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::frame::{FrameReader, Framing};
use crate::net;

/// Largest frame the load generator accepts from the server.
pub const MAX_FRAME_IN: usize = 1 << 20;

/// How long one setup step (connect, a reply to `HELLO`/`SUB`) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every scenario.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The client port.
    pub target: SocketAddr,
    /// The admin HTTP port, when known.
    pub admin: Option<SocketAddr>,
    /// Frame format the server was started with.
    pub framing: Framing,
    /// Measured part of a timed run.
    pub duration: Duration,
    /// Unmeasured part before it.
    pub warmup: Duration,
    /// The server's process id, for its memory.
    pub pid: Option<u32>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Speak TLS to the target, with this client configuration.
    pub tls: Option<Tls>,
    /// Most bytes a client takes in one read (`--read-buffer`); `None`: up
    /// to the room in its 16 KiB buffer.
    pub read_buffer: Option<usize>,
}

/// How a client splits what it has to send into writes (`--write-split`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteSplit {
    /// Everything ready at once in one write.
    Batch,
    /// One write per frame, as a client without a write buffer does.
    Frame,
}

/// A TLS client configuration for a run.
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// The read half of a client's stream, plain or TLS.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a client's stream, plain or TLS.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The scenario's own parameters, echoed in the result line.
    pub params: Value,
    /// The figures.
    pub results: Value,
    /// Broken correctness conditions (missing messages, lost bytes, errors).
    pub failures: Vec<String>,
}

/// One client connection: a frame reader and the write half.
pub struct Client {
    /// Frames from the server.
    pub rd: FrameReader<ReadHalf>,
    /// Bytes to the server.
    pub wr: WriteHalf,
    /// Frame format.
    pub framing: Framing,
}

impl Client {
    /// Connects to the scenario's target (and completes the TLS handshake
    /// when the run speaks TLS).
    pub async fn connect(ctx: &Ctx, spread: bool) -> Result<Self> {
        let connect = async {
            let s = net::connect(ctx.target, spread)
                .await
                .with_context(|| format!("connect to {}", ctx.target))?;
            let halves: (ReadHalf, WriteHalf) = match &ctx.tls {
                None => {
                    let (r, w) = s.into_split();
                    (Box::new(r), Box::new(w))
                }
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(net::TLS_SERVER_NAME)
                        .context("the TLS server name")?;
                    let s = tls
                        .0
                        .connect(name, s)
                        .await
                        .with_context(|| format!("TLS handshake with {}", ctx.target))?;
                    let (r, w) = tokio::io::split(s);
                    (Box::new(r), Box::new(w))
                }
            };
            anyhow::Ok(halves)
        };
        let (r, w) = tokio::time::timeout(STEP_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow!("connect to {} timed out", ctx.target))??;
        let (mut r, mut w): (ReadHalf, WriteHalf) = (r, w);
        let early = match ctx.framing {
            Framing::WebSocket => {
                tokio::time::timeout(STEP_TIMEOUT, ws_upgrade(&mut r, &mut w, ctx.target))
                    .await
                    .map_err(|_| anyhow!("WebSocket upgrade on {} timed out", ctx.target))??
            }
            Framing::Lines | Framing::Length => Vec::new(),
        };
        let mut rd = FrameReader::with_buffered(r, ctx.framing, MAX_FRAME_IN, &early);
        if let Some(n) = ctx.read_buffer {
            rd.set_read_chunk(n);
        }
        Ok(Self {
            rd,
            wr: w,
            framing: ctx.framing,
        })
    }

    /// Sends frames in one write.
    pub async fn send(&mut self, frames: &[&[u8]]) -> Result<()> {
        let mut out = BytesMut::new();
        for f in frames {
            self.framing.encode(f, &mut out);
        }
        self.wr.write_all(&out).await?;
        Ok(())
    }

    /// The next frame within [`STEP_TIMEOUT`]; EOF is an error.
    pub async fn recv(&mut self) -> Result<Bytes> {
        match tokio::time::timeout(STEP_TIMEOUT, self.rd.next_frame()).await {
            Err(_) => bail!("no frame from the server within {STEP_TIMEOUT:?}"),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(None)) => bail!("the server closed the connection"),
            Ok(Ok(Some(f))) => Ok(f),
        }
    }

    /// The next frame, which must start with `prefix`; returns the rest.
    pub async fn expect(&mut self, prefix: &str) -> Result<Bytes> {
        let f = self.recv().await?;
        if !f.starts_with(prefix.as_bytes()) {
            bail!(
                "expected {prefix:?}, got {:?}",
                String::from_utf8_lossy(&f[..f.len().min(200)])
            );
        }
        Ok(f.slice(prefix.len()..))
    }

    /// `HELLO user`, returning the connection id from `OK HELLO <id>`.
    pub async fn hello(&mut self, user: &str) -> Result<String> {
        self.send(&[format!("HELLO {user}").as_bytes()]).await?;
        let id = self.expect("OK HELLO ").await?;
        Ok(String::from_utf8_lossy(&id).into_owned())
    }
}

/// The WebSocket opening handshake on `/ws` (RFC 6455 section 4.1);
/// returns what the server sent after its answer.
async fn ws_upgrade(r: &mut ReadHalf, w: &mut WriteHalf, target: SocketAddr) -> Result<Vec<u8>> {
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    w.write_all(request.as_bytes()).await?;
    let mut read = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = read.windows(4).position(|x| x == b"\r\n\r\n") {
            if !read.starts_with(b"HTTP/1.1 101 ") {
                bail!(
                    "no WebSocket upgrade: {:?}",
                    String::from_utf8_lossy(&read[..end])
                );
            }
            return Ok(read.split_off(end + 4));
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 || read.len() > 8192 {
            bail!("no answer to the WebSocket upgrade");
        }
        read.extend_from_slice(&chunk[..n]);
    }
}

/// Runs `make(i)` for `i` in `0..n`, at most `parallel` at once, and returns
/// the results in index order.
pub async fn run_indexed<T, F, Fut>(n: usize, parallel: usize, make: F) -> Vec<Result<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let fut = make(i);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => {
                if let Some(slot) = out.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(Err(anyhow!("task failed: {e}")));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("not run"))))
        .collect()
}

/// Splits results into the values and a failure line for the errors.
pub fn collect_ok<T>(what: &str, results: Vec<Result<T>>, failures: &mut Vec<String>) -> Vec<T> {
    let mut ok = Vec::with_capacity(results.len());
    let mut errors = 0usize;
    let mut first = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                errors += 1;
                first.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if let Some(first) = first {
        failures.push(format!("{errors} {what} failed; first: {first}"));
    }
    ok
}

/// The measured window of a timed run.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Start of the measured part (end of warm-up).
    pub start: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Window {
    /// A window starting after `ctx.warmup` from now.
    pub fn from_now(ctx: &Ctx) -> Self {
        let start = Instant::now() + ctx.warmup;
        Self {
            start,
            end: start + ctx.duration,
        }
    }

    /// Whether `t` falls inside.
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    /// Measured seconds.
    pub fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// What a timed run counts with: its measured window, the server's CPU over
/// it, and a progress bar of `done` units.
pub struct Timed {
    /// The measured window, after the warm-up.
    pub window: Window,
    /// The server's CPU over the window.
    pub cpu: CpuProbe,
    /// The progress bar, ticking with `done`.
    pub bar: crate::progress::Progress,
    /// Units of work done, warm-up included.
    pub done: Arc<std::sync::atomic::AtomicU64>,
}

impl Timed {
    /// Starts the warm-up now; `label` and `unit` name the progress bar's
    /// run and what it counts.
    pub fn start(ctx: &Ctx, label: &str, unit: &'static str) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let window = Window::from_now(ctx);
        let cpu = CpuProbe::start(ctx.pid, window);
        let bar = crate::progress::Progress::timed(
            ctx.progress,
            label,
            &[("warm-up", ctx.warmup), ("measured", ctx.duration)],
            done.clone(),
            unit,
        );
        Self {
            window,
            cpu,
            bar,
            done,
        }
    }
}

/// CPU use of the server and of the load generator over a window, to tell
/// which side limited a figure.
#[derive(Debug)]
pub struct CpuProbe {
    task: tokio::task::JoinHandle<Value>,
}

impl CpuProbe {
    /// Samples at `window.start` and `window.end`.
    pub fn start(pid: Option<u32>, window: Window) -> Self {
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(window.start).await;
            let s0 = pid.and_then(|p| crate::procfs::cpu_ticks_split(p).ok());
            let l0 = crate::procfs::own_cpu_ticks().ok();
            let c0 = crate::procfs::cpu_jiffies().unwrap_or_default();
            tokio::time::sleep_until(window.end).await;
            let s1 = pid.and_then(|p| crate::procfs::cpu_ticks_split(p).ok());
            let l1 = crate::procfs::own_cpu_ticks().ok();
            let c1 = crate::procfs::cpu_jiffies().unwrap_or_default();
            // How busy each core was, whoever kept it busy.
            let cores: Vec<Value> = c0
                .iter()
                .zip(c1.iter())
                .map(|((b0, t0), (b1, t1))| {
                    let t = t1.saturating_sub(*t0).max(1) as f64;
                    serde_json::json!((b1.saturating_sub(*b0) as f64 * 100.0 / t).round() as i64)
                })
                .collect();
            let pct = |a: Option<u64>, b: Option<u64>| {
                a.zip(b)
                    .map(|(a, b)| ((b.saturating_sub(a)) as f64 / window.secs()).round() as i64)
            };
            let total = |ticks: Option<(u64, u64)>| ticks.map(|(user, system)| user + system);
            let user = |ticks: Option<(u64, u64)>| ticks.map(|(user, _)| user);
            let secs = |a: Option<u64>, b: Option<u64>| {
                a.zip(b).map(|(a, b)| b.saturating_sub(a) as f64 / 100.0)
            };
            serde_json::json!({
                "server_cpu_secs": secs(total(s0), total(s1)),
                "server_user_cpu_secs": secs(user(s0), user(s1)),
                "server_cpu_pct": pct(total(s0), total(s1)),
                "loadgen_cpu_pct": pct(l0, l1),
                "core_busy_pct": cores,
            })
        });
        Self { task }
    }

    /// The percentages (100 = one core busy), or nulls.
    pub async fn finish(self) -> Value {
        self.task.await.unwrap_or(Value::Null)
    }
}

/// The figures of a timed scenario that did `count` units of work in
/// `window` (reported as `per_sec` per second and as `total`), with the
/// server's CPU per unit and the latency of each unit.
pub fn timed_results(
    (per_sec, total): (&str, &str),
    count: u64,
    window: &Window,
    cpu: Value,
    latency: Value,
) -> Value {
    let secs = window.secs();
    let mut results = serde_json::Map::new();
    results.insert(
        per_sec.into(),
        crate::stats::round2(count as f64 / secs).into(),
    );
    results.insert(total.into(), count.into());
    results.insert("seconds".into(), crate::stats::round2(secs).into());
    results.insert(
        "per_server_cpu_sec".into(),
        per_server_cpu_sec(count, &cpu, window).into(),
    );
    results.insert(
        "server_cpu_us_per".into(),
        server_cpu_us_per(count, &cpu, window).into(),
    );
    results.insert(
        "server_user_cpu_us_per".into(),
        server_user_cpu_us_per(count, &cpu).into(),
    );
    results.insert("cpu".into(), cpu);
    results.insert("latency".into(), latency);
    Value::Object(results)
}

/// `count` per second of server CPU time over the window: how much work the
/// server does per unit of CPU, which other load on the machine disturbs
/// less than the raw rate. `None` without a CPU reading.
pub fn per_server_cpu_sec(count: u64, cpu: &Value, window: &Window) -> Option<f64> {
    let cpu_secs = server_cpu_secs(cpu, window)?;
    (cpu_secs > 0.0).then(|| (count as f64 / cpu_secs).round())
}

/// Microseconds of server CPU time per unit of work (message, delivery,
/// cycle) over the window: the efficiency figure the benchmarks hold the
/// gateway to. `None` without a CPU reading or without work.
pub fn server_cpu_us_per(count: u64, cpu: &Value, window: &Window) -> Option<f64> {
    micros_per(server_cpu_secs(cpu, window)?, count)
}

/// Microseconds of the server's user-space CPU time per unit of work: the
/// part of [`server_cpu_us_per`] the server's own code spends, outside the
/// kernel. `None` without a reading (older result lines) or without work.
pub fn server_user_cpu_us_per(count: u64, cpu: &Value) -> Option<f64> {
    micros_per(cpu.get("server_user_cpu_secs")?.as_f64()?, count)
}

/// `secs` per unit of `count`, in microseconds to three places; `None`
/// without work.
fn micros_per(secs: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| (secs * 1e6 / count as f64 * 1000.0).round() / 1000.0)
}

/// The server's CPU seconds in the window, from the exact tick count when
/// the probe has it (older result lines carry only the rounded percentage).
fn server_cpu_secs(cpu: &Value, window: &Window) -> Option<f64> {
    cpu.get("server_cpu_secs")
        .and_then(Value::as_f64)
        .or_else(|| Some(cpu.get("server_cpu_pct")?.as_f64()? / 100.0 * window.secs()))
}
