//! The context a worker thread's connections run in: their limits, their
//! codec and the parts of the gateway they talk to. Built once per worker
//! thread, behind an `Arc`. Configuration is read elsewhere; this is what
//! it became.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use client_token::Verifier;
use gateway_metrics::GatewayMetrics;
use pool_manager::Checkin;

use crate::admission::Admission;
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
    /// Topic history is on: `SUB <topic> <position>` is a positioned
    /// subscription rather than a bad topic (section 13).
    pub history: bool,
}

/// Everything the connections of one worker thread need besides their
/// sockets and states: the per-worker connection context.
pub struct WorkerContext {
    pub(crate) limits: Limits,
    pub(crate) codec: FrameCodec,
    pub(crate) hub: Arc<dyn Hub>,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) admission: Arc<Admission>,
    /// The pool manager of this thread.
    pub(crate) pool: Recipient<Checkin<ConnState>>,
    /// Where set, `HELLO` needs a client token that this verifies.
    pub(crate) tokens: Option<Arc<Verifier>>,
}

impl WorkerContext {
    /// Bundles the limits with the registry, the metrics, the process-wide
    /// connection slots, this thread's pool and, where `HELLO` needs a
    /// client token, its verifier.
    pub fn new(
        limits: Limits,
        hub: Arc<dyn Hub>,
        metrics: GatewayMetrics,
        admission: Arc<Admission>,
        pool: Recipient<Checkin<ConnState>>,
        tokens: Option<Arc<Verifier>>,
    ) -> Arc<Self> {
        let codec = FrameCodec::new(limits.framing, limits.max_frame_bytes);
        Arc::new(Self {
            limits,
            codec,
            hub,
            metrics,
            admission,
            pool,
            tokens,
        })
    }

    /// The limits every connection keeps to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The codec every connection speaks.
    pub fn codec(&self) -> FrameCodec {
        self.codec
    }

    /// The process-wide connection slots.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }
}
