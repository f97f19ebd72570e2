//! The gateway's metric families: their names, help texts, label values and
//! registration. Every family of the contract (section 8) lives here, so a
//! name is written once.
//!
//! This crate records nothing by itself: components hold a [`GatewayMetrics`]
//! (cheap to clone) and count where things happen. It knows nothing of
//! sockets, actors or HTTP; [`encode`] renders a registry for `/metrics`.

#![warn(missing_docs)]

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub use prometheus::Registry as MetricsRegistry;

/// Why a connection was closed; the `reason` label of
/// `gateway_connections_closed_total`.
pub const CLOSE_REASONS: [&str; 9] = [
    "client",
    "quit",
    "replaced",
    "admin",
    "idle",
    "slow",
    "shutdown",
    "frame_too_large",
    "error",
];

/// Why a client was refused; the `reason` label of
/// `gateway_connections_rejected_total`.
pub const REJECT_REASONS: [&str; 2] = ["full", "draining"];

/// Why queued frames were dropped; the `reason` label of
/// `gateway_writes_dropped_total`: `closed` for frames that came after a
/// close or that the close could not write (a reset, the close timeout),
/// `slow` for a slow consumer's queue.
pub const DROP_REASONS: [&str; 2] = ["closed", "slow"];

/// Buckets of the close-flush histogram: 50 µs to 10 s, about three per
/// decade, so both a loopback flush and a `--close-timeout` cut-off resolve.
pub const FLUSH_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Handles to every gateway metric. Cloning shares the same families.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// `gateway_connections_active`
    pub connections_active: IntGauge,
    /// `gateway_connections_accepted_total`
    pub connections_accepted: IntCounter,
    /// `gateway_connections_rejected_total{reason}`
    pub connections_rejected: IntCounterVec,
    /// `gateway_connections_closed_total{reason}`
    pub connections_closed: IntCounterVec,
    /// `gateway_frames_received_total`
    pub frames_received: IntCounter,
    /// `gateway_frames_sent_total`
    pub frames_sent: IntCounter,
    /// `gateway_bytes_received_total`
    pub bytes_received: IntCounter,
    /// `gateway_bytes_sent_total`
    pub bytes_sent: IntCounter,
    /// `gateway_writes_dropped_total{reason}`
    pub writes_dropped: IntCounterVec,
    /// `gateway_pool_reused_total`
    pub pool_reused: IntCounter,
    /// `gateway_pool_allocated_total`
    pub pool_allocated: IntCounter,
    /// `gateway_pool_discarded_total`
    pub pool_discarded: IntCounter,
    /// `gateway_pool_idle`
    pub pool_idle: IntGauge,
    /// `gateway_close_flush_duration_seconds`
    pub close_flush_duration: Histogram,
    /// `gateway_close_flush_timeouts_total`
    pub close_flush_timeouts: IntCounter,
    /// `gateway_topics`
    pub topics: IntGauge,
    /// `gateway_subscriptions`
    pub subscriptions: IntGauge,
}

impl GatewayMetrics {
    /// Creates every family, registers it in `registry` and exports each
    /// listed label value at 0, so dashboards see them before they happen.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let labelled =
            |name: &str, help: &str, values: &[&str]| -> prometheus::Result<IntCounterVec> {
                let v = IntCounterVec::new(Opts::new(name, help), &["reason"])?;
                registry.register(Box::new(v.clone()))?;
                for value in values {
                    v.with_label_values(&[*value]);
                }
                Ok(v)
            };
        let close_flush_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_close_flush_duration_seconds",
                "Time from a close request until the last queued byte is written and the write side shut.",
            )
            .buckets(FLUSH_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(close_flush_duration.clone()))?;

        Ok(Self {
            connections_active: gauge("gateway_connections_active", "Open client connections.")?,
            connections_accepted: counter(
                "gateway_connections_accepted_total",
                "Client connections accepted and served.",
            )?,
            connections_rejected: labelled(
                "gateway_connections_rejected_total",
                "Client connections refused, by reason.",
                &REJECT_REASONS,
            )?,
            connections_closed: labelled(
                "gateway_connections_closed_total",
                "Client connections closed, by what started the close.",
                &CLOSE_REASONS,
            )?,
            frames_received: counter(
                "gateway_frames_received_total",
                "Frames received from clients.",
            )?,
            frames_sent: counter("gateway_frames_sent_total", "Frames written to clients.")?,
            bytes_received: counter(
                "gateway_bytes_received_total",
                "Bytes read from client sockets.",
            )?,
            bytes_sent: counter(
                "gateway_bytes_sent_total",
                "Bytes written to client sockets.",
            )?,
            writes_dropped: labelled(
                "gateway_writes_dropped_total",
                "Frames dropped instead of written, by reason.",
                &DROP_REASONS,
            )?,
            pool_reused: counter(
                "gateway_pool_reused_total",
                "Connections served from a recycled state.",
            )?,
            pool_allocated: counter(
                "gateway_pool_allocated_total",
                "Connections that needed a newly allocated state.",
            )?,
            pool_discarded: counter(
                "gateway_pool_discarded_total",
                "Returned states dropped instead of kept.",
            )?,
            pool_idle: gauge("gateway_pool_idle", "Recycled states waiting in the pool.")?,
            close_flush_duration,
            close_flush_timeouts: counter(
                "gateway_close_flush_timeouts_total",
                "Graceful closes cut off by --close-timeout.",
            )?,
            topics: gauge("gateway_topics", "Topics with at least one subscriber.")?,
            subscriptions: gauge("gateway_subscriptions", "Subscriptions over all topics.")?,
        })
    }

    /// Counts a closed connection under `reason` (one of [`CLOSE_REASONS`]).
    pub fn closed(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    /// Counts a refused client under `reason` (one of [`REJECT_REASONS`]).
    pub fn rejected(&self, reason: &str) {
        self.connections_rejected.with_label_values(&[reason]).inc();
    }

    /// Counts `frames` dropped under `reason` (one of [`DROP_REASONS`]).
    pub fn dropped(&self, reason: &str, frames: u64) {
        if frames > 0 {
            self.writes_dropped
                .with_label_values(&[reason])
                .inc_by(frames);
        }
    }
}

/// A registry holding the gateway's families and the process collector.
pub fn new_registry() -> prometheus::Result<(Registry, GatewayMetrics)> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let metrics = GatewayMetrics::register(&registry)?;
    Ok((registry, metrics))
}

/// Renders `registry` in the Prometheus text exposition format.
pub fn encode(registry: &Registry) -> prometheus::Result<String> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_label_value_is_exported_at_zero() {
        let (registry, _metrics) = new_registry().expect("registry");
        let text = encode(&registry).expect("encode");
        for reason in CLOSE_REASONS {
            let line = format!("gateway_connections_closed_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "missing {line}");
        }
        for reason in REJECT_REASONS {
            assert!(text.contains(&format!(
                "gateway_connections_rejected_total{{reason=\"{reason}\"}} 0"
            )));
        }
        for reason in DROP_REASONS {
            assert!(text.contains(&format!(
                "gateway_writes_dropped_total{{reason=\"{reason}\"}} 0"
            )));
        }
        assert!(text.contains("# TYPE gateway_close_flush_duration_seconds histogram"));
        assert!(text.contains("# HELP gateway_pool_idle "));
    }

    #[test]
    fn counts_land_under_their_label() {
        let (registry, metrics) = new_registry().expect("registry");
        metrics.closed("slow");
        metrics.dropped("closed", 3);
        metrics.dropped("slow", 0);
        let text = encode(&registry).expect("encode");
        assert!(text.contains("gateway_connections_closed_total{reason=\"slow\"} 1"));
        assert!(text.contains("gateway_writes_dropped_total{reason=\"closed\"} 3"));
        assert!(text.contains("gateway_writes_dropped_total{reason=\"slow\"} 0"));
    }
}
