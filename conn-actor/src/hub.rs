//! The seam between connections and the topic and user registry.
//!
//! A connection reports logins, subscriptions, publishes and its own life
//! through [`Hub`]; the registry reaches a connection only through a
//! [`ConnHandle`], the address of its mailbox (`mailbox/`). A hub that also fans out to other
//! gateway nodes (over a message bus) implements the same trait, so
//! connections never know where their topics' other subscribers live.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::mailbox::ConnHandle;
use crate::names::{ConnId, Name};

/// Where a positioned `SUB` starts (section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// `SUB <topic> LATEST`: at the newest position.
    Latest,
    /// `SUB <topic> <epoch>:<offset>`: after that position.
    After(gateway_history::Position),
}

/// The answer to a positioned `SUB`.
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// The newest position: the recovery replays up to it, live messages
    /// follow it.
    pub newest: gateway_history::Position,
    /// What comes before the live messages.
    pub replay: Replay,
}

/// What a positioned `SUB` replays before the live messages.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Nothing: `LATEST`.
    Latest,
    /// Every message after the position, as `MSG <topic>@<offset>` bodies,
    /// oldest first: `RECOVERED <n>`.
    Recovered(Vec<Bytes>),
    /// History could not replay them: `LOST`.
    Lost,
}

/// Why a positioned `SUB` or a `PUB` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRefusal {
    /// The topic has no history (`ERR no-history`).
    NoHistory,
    /// History cannot be reached (`ERR history-unavailable`).
    Unavailable,
}

/// What a connection waits for before it acts on its next frame.
pub type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// What a `PUB` did with history.
pub enum Published {
    /// The topic has no history: its subscribers got the plain frame.
    Live,
    /// Stored first; positioned subscribers got this `MSG <topic>@<offset>`
    /// body, plain ones the plain frame.
    Stored(Bytes),
    /// History could not store it: delivered nowhere.
    Refused(HistoryRefusal),
    /// Being stored in a cluster's stream, from where every node delivers
    /// it, this one included: the connection acts on its next frame only
    /// once this completes, by when its own copy (where it subscribes) is
    /// in its mailbox. `Err`: not stored, delivered nowhere.
    Storing(Pending<Result<(), HistoryRefusal>>),
}

/// The answer to a positioned `SUB`, now or once history has been read.
pub enum Subscribing {
    /// Answered at once (a single node's history).
    Now(Result<Subscribed, HistoryRefusal>),
    /// A cluster's stream is being read: the connection holds its frames
    /// until this completes. It is subscribed already (or unsubscribed
    /// again on `Err`), so live messages may reach its mailbox meanwhile;
    /// it drops those at or below the newest offset the answer gives.
    Later(Pending<Result<Subscribed, HistoryRefusal>>),
}

/// Completes once a `HELLO` or `SUB` has taken effect beyond this process
/// (other gateway nodes told, and answered or timed out). The connection
/// sends the answer, and acts on its next frame, only then.
pub type Settled = Pin<Box<dyn Future<Output = ()>>>;

/// The registry as a connection sees it. Calls are notifications: they
/// return at once and take effect in the order one connection made them.
pub trait Hub: Send + Sync + 'static {
    /// A connection is open and may be listed and addressed.
    fn opened(&self, conn: ConnHandle);
    /// `HELLO user`: bind the user to `conn`, replacing another holder.
    /// `Some` holds the `OK HELLO` back until it completes.
    fn login(&self, user: Name, conn: ConnId) -> Option<Settled>;
    /// `SUB topic`. `Some` holds the `OK SUB` back until it completes.
    fn subscribe(&self, topic: Name, conn: ConnId) -> Option<Settled>;
    /// `UNSUB topic`.
    fn unsubscribe(&self, topic: Name, conn: ConnId);
    /// `PUB` from `from`: deliver `frame` (the body `MSG topic payload`,
    /// unframed) to the topic's subscribers other than `from`, which queues
    /// its own copy at once so that it comes before the answers to its
    /// later commands. `payload` is the message's payload alone, for hubs
    /// that carry it to other nodes and for history, which stores it
    /// first on a topic that has it.
    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId) -> Published;
    /// `SUB <topic> <position>` (with history on): subscribe `conn` so that
    /// the topic's messages reach it with their offset, and say what comes
    /// before the live ones. A hub without history refuses it.
    fn subscribe_at(&self, topic: Name, conn: ConnId, from: Resume) -> Subscribing {
        let _ = (topic, conn, from);
        Subscribing::Now(Err(HistoryRefusal::NoHistory))
    }
    /// A close was asked for: route nothing more to `conn`.
    fn closing(&self, conn: ConnId);
    /// The socket is closed: forget `conn`.
    fn closed(&self, conn: ConnId);
    /// `conn`'s id as clients and the admin API see it.
    fn conn_name(&self, conn: ConnId) -> String {
        conn.to_string()
    }
}
