//! What every connection shares: its limits, its codec and the parts of the
//! gateway it talks to. Built once, shared behind an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use gateway_metrics::GatewayMetrics;
use pool_manager::Checkin;

use crate::codec::{FrameCodec, Framing};
use crate::hub::Hub;
use crate::state::ConnState;

/// Per-connection limits (contract section 1).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The frame format.
    pub framing: Framing,
    /// Largest frame accepted from a client.
    pub max_frame_bytes: usize,
    /// Queued output past which a client is a slow consumer.
    pub max_pending_bytes: usize,
    /// Topics one connection may hold.
    pub max_subscriptions: usize,
    /// Silence before `KICK idle`; `None` turns it off.
    pub idle_timeout: Option<Duration>,
    /// Bound on one graceful close, flush and linger together.
    pub close_timeout: Duration,
}

/// Everything a connection needs besides its socket and state.
pub struct Shared {
    pub(crate) limits: Limits,
    pub(crate) codec: FrameCodec,
    pub(crate) hub: Arc<dyn Hub>,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) pool: Recipient<Checkin<ConnState>>,
}

impl Shared {
    /// Bundles the limits with the registry, the metrics and the pool.
    pub fn new(
        limits: Limits,
        hub: Arc<dyn Hub>,
        metrics: GatewayMetrics,
        pool: Recipient<Checkin<ConnState>>,
    ) -> Arc<Self> {
        let codec = FrameCodec::new(limits.framing, limits.max_frame_bytes);
        Arc::new(Self {
            limits,
            codec,
            hub,
            metrics,
            pool,
        })
    }

    /// The codec every connection speaks.
    pub fn codec(&self) -> FrameCodec {
        self.codec
    }
}
