//! The routing seam: what the admin API asks of the connections, wherever
//! they live. Payloads travel unencoded: the node that holds a connection
//! frames them in its own framing, so nothing from another node can reach
//! a client as a malformed frame.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use conn_actor::{CloseReason, Name};
use serde::{Deserialize, Serialize};

/// The answer of a routed request, to be awaited on the caller's thread.
pub type Routed<'a, T> = Pin<Box<dyn Future<Output = Result<T, RouteError>> + 'a>>;

/// How the admin API names a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// By id, as the API spells it.
    Conn(String),
    /// By the user bound to it.
    User(Name),
}

/// Why a routed request was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No node has the target.
    NotFound,
    /// The target is closing.
    Closing,
    /// The target is not local and the other nodes cannot be reached.
    Unavailable,
    /// The request is too large to cross to the other nodes.
    TooLarge,
    /// A node that may hold the target did not answer in time: the outcome
    /// is unknown (it may still be carried out when that node wakes).
    Timeout,
    /// A publish on a topic with history could not be stored (a
    /// cluster's stream is unreachable): it was delivered nowhere.
    HistoryUnavailable,
}

/// Nodes that answered a cluster-wide request, of those expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCount {
    /// Answered within the cluster timeout, this node included.
    pub answered: usize,
    /// Live nodes known, this node included.
    pub expected: usize,
}

/// The answer of a publish or broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Connections the message was queued for.
    pub count: usize,
    /// Set in a cluster.
    pub nodes: Option<NodeCount>,
    /// Set for a publish on a topic with history: where it was stored.
    pub stored: Option<StoredAt>,
}

/// Where history stored a publish (docs/protocol.md section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAt {
    /// Its offset (the first one, for a repeated idempotency key).
    pub offset: u64,
    /// The epoch the offset belongs to.
    pub epoch: String,
}

/// A connection as the admin API shows it (CONN, contract section 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    pub id: String,
    pub peer: String,
    pub user: Option<String>,
    pub topics: Vec<String>,
    /// `open` or `closing`.
    pub state: String,
    /// RFC 3339.
    pub connected_at: String,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pending_bytes: u64,
    /// `tcp` or `ws`.
    pub transport: String,
}

/// What the admin API asks of the connections. Every request is answered
/// only once it is queued in the target's mailbox (or refused), so
/// requests made one after another keep their order.
pub trait Router: Send + Sync + 'static {
    /// Queues `PUSH <payload>` for one connection.
    fn send(&self, to: Address, payload: Bytes) -> Routed<'_, ()>;
    /// Queues a graceful close; the target is `closing` once this answers.
    fn close(&self, to: Address, reason: CloseReason, message: Option<Bytes>) -> Routed<'_, ()>;
    /// A snapshot of one connection, closing ones included.
    fn get(&self, id: String) -> Routed<'_, ConnView>;
    /// Queues `MSG <topic> <payload>` for every subscriber of `topic`; on a
    /// topic with history, stores it first, once per `idempotency_key`
    /// within the window, and says where.
    fn publish(
        &self,
        topic: Name,
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Routed<'_, Delivered>;
    /// Queues `PUSH <payload>` for every open connection.
    fn broadcast(&self, payload: Bytes) -> Routed<'_, Delivered>;
}
