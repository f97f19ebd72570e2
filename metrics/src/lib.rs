//! The gateway's metric families: their names, help texts, label values and
//! registration. Every family of the contract (section 8) lives here, so a
//! name is written once.
//!
//! This crate records nothing by itself: components hold a [`GatewayMetrics`]
//! (cheap to clone) and count where things happen. It knows nothing of
//! sockets, actors or HTTP; [`encode`] renders a registry for `/metrics`.

#![warn(missing_docs)]

pub mod cluster;
mod labels;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use labels::{
    AppendResult, ByLabel, CloseReason, CounterBy, DropReason, EvictReason, GapResult, GaugeBy,
    LabelValue, RecoveryResult, RejectReason, Transport,
};
pub use prometheus::Registry as MetricsRegistry;

/// Buckets of the close-flush histogram: 50 µs to 10 s, about three per
/// decade, so both a loopback flush and a `--close-timeout` cut-off resolve.
pub const FLUSH_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Buckets of the history read histogram: 10 µs to 2.5 s.
pub const READ_BUCKETS: [f64; 15] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.5, 2.5,
];

/// Handles to every gateway metric. Cloning shares the same families.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// `gateway_connections_active`
    pub connections_active: IntGauge,
    /// `gateway_connections_by_transport{transport}`
    pub connections_by_transport: GaugeBy<Transport>,
    /// `gateway_connections_accepted_total`
    pub connections_accepted: IntCounter,
    /// `gateway_connections_rejected_total{reason}`
    pub connections_rejected: CounterBy<RejectReason>,
    /// `gateway_connections_closed_total{reason}`
    pub connections_closed: CounterBy<CloseReason>,
    /// `gateway_frames_received_total`
    pub frames_received: IntCounter,
    /// `gateway_frames_sent_total`
    pub frames_sent: IntCounter,
    /// `gateway_bytes_received_total`
    pub bytes_received: IntCounter,
    /// `gateway_bytes_sent_total`
    pub bytes_sent: IntCounter,
    /// `gateway_writes_dropped_total{reason}`
    pub writes_dropped: CounterBy<DropReason>,
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
    /// `gateway_tls_handshake_failures_total`
    pub tls_handshake_failures: IntCounter,
    /// `gateway_history_appends_total{result}`
    pub history_appends: CounterBy<AppendResult>,
    /// `gateway_history_messages`
    pub history_messages: IntGauge,
    /// `gateway_history_bytes`
    pub history_bytes: IntGauge,
    /// `gateway_history_evicted_total{reason}`
    pub history_evicted: CounterBy<EvictReason>,
    /// `gateway_recoveries_total{result}`
    pub recoveries: CounterBy<RecoveryResult>,
    /// `gateway_recovered_messages_total`
    pub recovered_messages: IntCounter,
    /// `gateway_history_read_duration_seconds`
    pub history_read_duration: Histogram,
    /// `gateway_history_gaps_total{result}`
    pub history_gaps: CounterBy<GapResult>,
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
        let close_flush_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_close_flush_duration_seconds",
                "Time from a close request until the last queued byte is written and the write side shut.",
            )
            .buckets(FLUSH_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(close_flush_duration.clone()))?;
        let history_read_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_history_read_duration_seconds",
                "A read of history, for a recovery or the admin API.",
            )
            .buckets(READ_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(history_read_duration.clone()))?;

        Ok(Self {
            connections_active: gauge("gateway_connections_active", "Open client connections.")?,
            connections_by_transport: gauge_by(
                registry,
                "gateway_connections_by_transport",
                "Open client connections, by transport.",
            )?,
            connections_accepted: counter(
                "gateway_connections_accepted_total",
                "Client connections accepted and served.",
            )?,
            connections_rejected: counter_by(
                registry,
                "gateway_connections_rejected_total",
                "Client connections refused, by reason.",
            )?,
            connections_closed: counter_by(
                registry,
                "gateway_connections_closed_total",
                "Client connections closed, by what started the close.",
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
            writes_dropped: counter_by(
                registry,
                "gateway_writes_dropped_total",
                "Frames dropped instead of written, by reason.",
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
            tls_handshake_failures: counter(
                "gateway_tls_handshake_failures_total",
                "Client TLS handshakes that failed or did not finish within --close-timeout.",
            )?,
            history_appends: counter_by(
                registry,
                "gateway_history_appends_total",
                "Messages given to history, by what became of them.",
            )?,
            history_messages: gauge("gateway_history_messages", "Messages held in history.")?,
            history_bytes: gauge(
                "gateway_history_bytes",
                "Payload bytes of the messages held in history.",
            )?,
            history_evicted: counter_by(
                registry,
                "gateway_history_evicted_total",
                "Messages that left history, by why.",
            )?,
            recoveries: counter_by(
                registry,
                "gateway_recoveries_total",
                "Positioned SUBs, by how they were answered.",
            )?,
            recovered_messages: counter(
                "gateway_recovered_messages_total",
                "Messages replayed by recoveries.",
            )?,
            history_read_duration,
            history_gaps: counter_by(
                registry,
                "gateway_history_gaps_total",
                "Offset gaps seen on a cluster's history stream, by what became of them.",
            )?,
        })
    }

    /// Counts a closed connection under what started its close.
    pub fn closed(&self, reason: CloseReason) {
        self.connections_closed.inc(reason);
    }

    /// Counts a refused client.
    pub fn rejected(&self, reason: RejectReason) {
        self.connections_rejected.inc(reason);
    }

    /// Counts `frames` dropped instead of written.
    pub fn dropped(&self, reason: DropReason, frames: u64) {
        if frames > 0 {
            self.writes_dropped.inc_by(reason, frames);
        }
    }
}

/// Registers a counter family labelled by `L`, every value exported at 0.
fn counter_by<L: LabelValue>(
    registry: &Registry,
    name: &str,
    help: &str,
) -> prometheus::Result<CounterBy<L>> {
    let family = IntCounterVec::new(Opts::new(name, help), &[L::NAME])?;
    registry.register(Box::new(family.clone()))?;
    Ok(CounterBy::new(|value| family.with_label_values(&[value])))
}

/// Registers a gauge family labelled by `L`, every value exported at 0.
fn gauge_by<L: LabelValue>(
    registry: &Registry,
    name: &str,
    help: &str,
) -> prometheus::Result<GaugeBy<L>> {
    let family = IntGaugeVec::new(Opts::new(name, help), &[L::NAME])?;
    registry.register(Box::new(family.clone()))?;
    Ok(GaugeBy::new(|value| family.with_label_values(&[value])))
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
        for reason in CloseReason::ALL {
            let line = format!("gateway_connections_closed_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "missing {line}");
        }
        for reason in RejectReason::ALL {
            assert!(text.contains(&format!(
                "gateway_connections_rejected_total{{reason=\"{reason}\"}} 0"
            )));
        }
        for reason in DropReason::ALL {
            assert!(text.contains(&format!(
                "gateway_writes_dropped_total{{reason=\"{reason}\"}} 0"
            )));
        }
        for transport in Transport::ALL {
            assert!(text.contains(&format!(
                "gateway_connections_by_transport{{transport=\"{transport}\"}} 0"
            )));
        }
        assert!(text.contains("# TYPE gateway_connections_by_transport gauge"));
        assert!(text.contains("# TYPE gateway_close_flush_duration_seconds histogram"));
        assert!(text.contains("# HELP gateway_pool_idle "));
    }

    #[test]
    fn counts_land_under_their_label() {
        let (registry, metrics) = new_registry().expect("registry");
        metrics.closed(CloseReason::Slow);
        metrics.dropped(DropReason::Closed, 3);
        metrics.dropped(DropReason::Slow, 0);
        let text = encode(&registry).expect("encode");
        assert!(text.contains("gateway_connections_closed_total{reason=\"slow\"} 1"));
        assert!(text.contains("gateway_writes_dropped_total{reason=\"closed\"} 3"));
        assert!(text.contains("gateway_writes_dropped_total{reason=\"slow\"} 0"));
    }
}
