//! What a node tells about the cluster (`GET /api/v1/cluster`): plain
//! serializable data, re-exported from the crate's root.
//!
//! Not here: how it is gathered (`Shared::info`, from the membership
//! table and the NATS connection).

use serde::Serialize;

/// A node's view of the cluster (`GET /api/v1/cluster`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub node: String,
    pub nats: Option<NatsInfo>,
    pub nodes: Vec<NodeInfo>,
}

/// The NATS connection.
#[derive(Debug, Clone, Serialize)]
pub struct NatsInfo {
    pub connected: bool,
    /// The server connected to, `nats://host:port`.
    pub server: Option<String>,
}

/// One live node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub connections: u64,
    pub last_seen_seconds: f64,
}
