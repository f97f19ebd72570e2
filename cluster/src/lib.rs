//! Several gateway nodes as one service over NATS (contract section 10),
//! and history in a cluster (section 13). With the history crate's stream
//! store (`gateway_history::StreamHistory`), the only crate that knows NATS.
//!
//! A [`Cluster`] wraps the node's `gateway_registry::Registry` on both
//! sides of the routing seam: [`Cluster::hub`] is the connections' `Hub`
//! (it also tells the other nodes about logins, subscriptions and
//! publishes) and [`Cluster::router`] is the admin API's `Router` (a target
//! on another node gets a request and waits for its answer).
//!
//! Threads: the NATS client (`async-nats`, tokio) runs on a thread of its
//! own with a current-thread runtime, so it is always polled whatever the
//! actix arbiters do. Two tasks there: the engine (incoming messages,
//! subscriptions, membership) and the outbox (everything sent, in one
//! order, held in a bounded buffer while NATS is away). Connections and the
//! admin API reach them through channels and never wait on NATS, except
//! for what the contract makes wait (`OK HELLO`, `OK SUB`, cross-node admin
//! answers), each bounded by `--cluster-timeout`.
//!
//! `docs/cluster.md` describes the subjects, the message format and the
//! login protocol.

mod engine;
mod feed;
mod heartbeat;
mod hub;
mod inbox;
mod info;
mod login;
mod members;
mod outbox;
mod router;
mod routing;
mod sequence;
pub mod settings;
mod settle;
mod shared;
mod start;
mod stored;
mod topics;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use conn_actor::Hub;
use gateway_metrics::MetricsRegistry;
use gateway_metrics::cluster::ClusterMetrics;
use gateway_registry::{Registry, Router};

pub use info::{ClusterInfo, NatsInfo, NodeInfo};
pub use settings::Settings;
pub use start::StartError;
pub use stored::HistoryRouteError;

use crate::shared::Shared;

/// This node's part of the cluster.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Starts the NATS thread. When NATS answers at the first try it first
    /// checks that no live node holds this node's id; when it does not,
    /// the node starts anyway and keeps trying.
    pub fn start(
        settings: Settings,
        run: String,
        registry: Registry,
        prometheus: &MetricsRegistry,
        history: Option<gateway_history::Settings>,
    ) -> Result<Self, StartError> {
        let metrics = ClusterMetrics::register(prometheus)
            .map_err(|err| StartError::Internal(err.to_string()))?;
        let (shared, cmds, outbox, feed) = Shared::new(settings, run, registry, metrics, history);
        let shared = Arc::new(shared);
        start::spawn(shared.clone(), cmds, outbox, feed)?;
        Ok(Self { shared })
    }

    /// Whether history is on and `topic` has it.
    pub fn has_history(&self, topic: &str) -> bool {
        self.shared.history_of(topic).is_some()
    }

    /// `GET /api/v1/topics/{topic}/history` from the stream.
    pub async fn history_read(
        &self,
        topic: &str,
        since: Option<&gateway_history::Position>,
        limit: usize,
    ) -> Result<gateway_registry::HistoryPage, HistoryRouteError> {
        match &self.shared.history {
            Some(history) => history.read(topic, since, limit).await,
            None => Err(HistoryRouteError::NoHistory),
        }
    }

    /// `DELETE /api/v1/topics/{topic}/history` in the stream.
    pub async fn history_delete(&self, topic: &str) -> Result<(), HistoryRouteError> {
        match &self.shared.history {
            Some(history) => history.delete(topic).await,
            None => Err(HistoryRouteError::NoHistory),
        }
    }

    /// The connections' hub.
    pub fn hub(&self) -> Arc<dyn Hub> {
        Arc::new(hub::ClusterHub::new(self.shared.clone()))
    }

    /// The admin API's router.
    pub fn router(&self) -> Arc<dyn Router> {
        Arc::new(router::ClusterRouter::new(self.shared.clone()))
    }

    /// Whether NATS is connected now.
    pub fn nats_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Whether this node has heard from the cluster once since it started
    /// (or found NATS unreachable at start): `/readyz` is 503 until then.
    pub fn knows_cluster(&self) -> bool {
        self.shared.knows_cluster()
    }

    /// This node and the live nodes it knows of.
    pub fn info(&self) -> ClusterInfo {
        self.shared.info()
    }

    /// Tells the other nodes this one is leaving; waits at most `bound`.
    pub fn leave(&self, bound: Duration) {
        self.shared.leave(bound);
    }
}
