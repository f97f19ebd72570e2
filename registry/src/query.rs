//! What the admin API asks the registry, and what it answers.

use bytes::Bytes;
use conn_actor::{CloseReason, ConnId, Name};

/// How the admin API names a connection.
#[derive(Debug, Clone)]
pub enum Target {
    /// By id.
    Conn(ConnId),
    /// By the user bound to it.
    User(Name),
}

/// Why a target cannot take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// No such connection (or no connection holds the user).
    NotFound,
    /// It is closing.
    Closing,
}

/// What to do to a connection.
pub enum Action {
    /// Queue a frame.
    Deliver(Bytes),
    /// Queue a close.
    Close {
        reason: CloseReason,
        message: Option<Bytes>,
    },
}

/// A page request: connections by ascending id.
pub struct List {
    pub user: Option<String>,
    pub topic: Option<String>,
    /// Only ids greater than this.
    pub after: Option<ConnId>,
    pub limit: usize,
}

/// A page of [`List`].
pub struct Page<H> {
    pub conns: Vec<H>,
    /// Set while more connections match.
    pub more: bool,
}

/// Topic and subscription counts.
#[derive(Debug, Clone, Copy)]
pub struct RegistryCounts {
    pub topics: usize,
    pub subscriptions: usize,
}
