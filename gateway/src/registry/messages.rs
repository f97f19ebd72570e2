//! The registry actor's messages: the admin API's requests.

use actix::Message;
use bytes::Bytes;
use conn_actor::{CloseReason, ConnHandle, ConnId, Name};

/// A publish from a client or the admin API; answers how many connections
/// the frame was queued for.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Publish {
    pub topic: Name,
    pub frame: Bytes,
    /// The publishing connection, which delivers its own copy.
    pub from: Option<ConnId>,
}

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

/// Looks a target up.
#[derive(Message)]
#[rtype(result = "Result<ConnHandle, TargetError>")]
pub struct Find(pub Target);

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

/// Queues `action` for an open target, in the registry's order.
#[derive(Message)]
#[rtype(result = "Result<(), TargetError>")]
pub struct SendTo {
    pub target: Target,
    pub action: Action,
}

/// Queues a frame for every open connection; answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Broadcast(pub Bytes);

/// One page of connections, by ascending id.
#[derive(Message)]
#[rtype(result = "Page<ConnHandle>")]
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

/// Topics with subscribers, and how many each has.
#[derive(Message)]
#[rtype(result = "Vec<(Name, usize)>")]
pub struct Topics;

/// The registry's own counts.
#[derive(Message)]
#[rtype(result = "RegistryCounts")]
pub struct Counts;

/// See [`Counts`].
#[derive(Debug, Clone, Copy)]
pub struct RegistryCounts {
    pub topics: usize,
    pub subscriptions: usize,
}

/// Close every connection with `KICK shutdown`, and every later one too.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainAll;
