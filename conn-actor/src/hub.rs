//! The seam between connections and the topic and user registry.
//!
//! A connection reports logins, subscriptions, publishes and its own life
//! through [`Hub`]; the registry reaches a connection only through a
//! [`ConnHandle`], which wraps its mailbox. A hub that also fans out to other
//! gateway nodes (over a message bus) implements the same trait, so
//! connections never know where their topics' other subscribers live.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::mailbox::MailSlot;
use crate::messages::{CloseReason, ConnInfo};
use crate::relay::{Job, Relay};

/// A connection id: unique for the life of the process, never reused.
pub type ConnId = u64;

/// A validated user or topic name.
pub type Name = Arc<str>;

/// The topics one connection follows. Most clients follow one: it is held
/// inline, in the 24 bytes a `Vec` takes anyway, instead of in a 64-byte
/// allocation of its own (twice per connection: its state and its
/// registry entry).
pub type TopicList = smallvec::SmallVec<[Name; 1]>;

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
    /// that carry it to other nodes.
    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId);
    /// A close was asked for: route nothing more to `conn`.
    fn closing(&self, conn: ConnId);
    /// The socket is closed: forget `conn`.
    fn closed(&self, conn: ConnId);
    /// `conn`'s id as clients and the admin API see it.
    fn conn_name(&self, conn: ConnId) -> String {
        conn.to_string()
    }
}

/// The one way to reach a connection from another actor or thread.
/// Deliveries, closes and inspections go through the relay of the worker
/// thread that runs the connection, in the order they were made
/// (`relay.rs`), to its mailbox there (`mailbox.rs`). A handle is a few
/// words with nothing of its own on the heap: the registry keeps several
/// per connection.
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    slot: MailSlot,
    relay: Relay,
}

impl ConnHandle {
    /// A handle for a connection started on the current worker thread.
    pub(crate) fn new(id: ConnId, slot: MailSlot) -> Self {
        Self {
            id,
            slot,
            relay: Relay::current(),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The worker thread that runs the connection: [`crate::fan_out`] wants
    /// each worker's connections listed together.
    pub fn worker(&self) -> usize {
        self.relay.worker()
    }

    pub(crate) fn slot(&self) -> MailSlot {
        self.slot
    }

    pub(crate) fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Queues a frame body (unframed: the connection frames it for its own
    /// transport) behind everything queued before. Returns `false` when
    /// the connection's worker is gone; a connection that closes before
    /// the frame reaches it drops it, as it drops anything sent after a
    /// close.
    pub fn deliver(&self, frame: Bytes) -> bool {
        self.relay.send(Job::Deliver(self.slot, frame))
    }

    /// Queues a graceful close behind everything queued before.
    pub fn close(&self, reason: CloseReason, message: Option<Bytes>) {
        self.relay.send(Job::Close(self.slot, reason, message));
    }

    /// A snapshot of the connection, taken behind everything queued
    /// before; `None` once it is gone.
    pub async fn inspect(&self) -> Option<ConnInfo> {
        let (reply, answer) = oneshot::channel();
        self.relay.send(Job::Inspect(self.slot, reply));
        answer.await.ok()
    }
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle").field("id", &self.id).finish()
    }
}
