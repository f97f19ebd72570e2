//! The cluster's metric families (contract section 10), registered only
//! when the gateway runs as a node of a cluster. Every label value is
//! exported from start-up.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Buckets of the cross-node request histogram: 100 µs to 10 s.
pub const REQUEST_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Whether a cross-node message left or arrived; `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Published to NATS.
    Sent,
    /// Taken from NATS and accepted.
    Received,
}

/// What a cross-node message is for; `route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A topic message (client `PUB`, admin publish).
    Publish,
    /// An admin broadcast.
    Broadcast,
    /// An admin send or close addressed to a user.
    User,
    /// An admin send, close or look-up addressed to a connection id.
    Connection,
    /// A login claim.
    Login,
    /// Heartbeats, answers and the cluster's own bookkeeping.
    Control,
}

/// Why a cross-node message was not sent; `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterDrop {
    /// NATS could not be reached.
    Unreachable,
    /// The pending buffer (`--nats-pending-bytes`) was full.
    Overflow,
    /// Larger than the server's `max_payload`.
    TooLarge,
}

impl Direction {
    const ALL: [Self; 2] = [Self::Sent, Self::Received];
    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
        }
    }
}

impl Route {
    const ALL: [Self; 6] = [
        Self::Publish,
        Self::Broadcast,
        Self::User,
        Self::Connection,
        Self::Login,
        Self::Control,
    ];
    fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Broadcast => "broadcast",
            Self::User => "user",
            Self::Connection => "connection",
            Self::Login => "login",
            Self::Control => "control",
        }
    }
}

impl ClusterDrop {
    const ALL: [Self; 3] = [Self::Unreachable, Self::Overflow, Self::TooLarge];
    fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Overflow => "overflow",
            Self::TooLarge => "too_large",
        }
    }
}

/// Handles to the cluster's metrics. Cloning shares the same families.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// `gateway_nats_connected`
    pub nats_connected: IntGauge,
    /// `gateway_nats_reconnects_total`
    pub nats_reconnects: IntCounter,
    /// `gateway_cluster_nodes`
    pub nodes: IntGauge,
    messages: IntCounterVec,
    dropped: IntCounterVec,
    /// `gateway_cluster_missed_total`
    pub missed: IntCounter,
    /// `gateway_cluster_malformed_total`: messages on the cluster's
    /// subjects that were not understood (garbage, another version).
    pub malformed: IntCounter,
    /// `gateway_cluster_request_duration_seconds`
    pub request_duration: Histogram,
}

impl ClusterMetrics {
    /// Creates and registers every family, each label value at 0.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let messages = IntCounterVec::new(
            Opts::new(
                "gateway_cluster_messages_total",
                "Cross-node messages, by direction and route.",
            ),
            &["direction", "route"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        for direction in Direction::ALL {
            for route in Route::ALL {
                messages.with_label_values(&[direction.as_str(), route.as_str()]);
            }
        }
        let dropped = IntCounterVec::new(
            Opts::new(
                "gateway_cluster_dropped_total",
                "Cross-node messages not sent, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        for reason in ClusterDrop::ALL {
            dropped.with_label_values(&[reason.as_str()]);
        }
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_cluster_request_duration_seconds",
                "Time from a cross-node request until its answer.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        Ok(Self {
            nats_connected: gauge("gateway_nats_connected", "1 while connected to NATS.")?,
            nats_reconnects: counter(
                "gateway_nats_reconnects_total",
                "Connections to NATS after the first.",
            )?,
            nodes: gauge(
                "gateway_cluster_nodes",
                "Live nodes known, this one included.",
            )?,
            messages,
            dropped,
            missed: counter(
                "gateway_cluster_missed_total",
                "Messages from other nodes known missed (sequence gaps).",
            )?,
            malformed: counter(
                "gateway_cluster_malformed_total",
                "Messages on the cluster's subjects dropped as not understood.",
            )?,
            request_duration,
        })
    }

    /// Counts one cross-node message.
    pub fn message(&self, direction: Direction, route: Route) {
        self.messages
            .with_label_values(&[direction.as_str(), route.as_str()])
            .inc();
    }

    /// Counts one cross-node message not sent.
    pub fn dropped(&self, reason: ClusterDrop) {
        self.dropped.with_label_values(&[reason.as_str()]).inc();
    }
}
