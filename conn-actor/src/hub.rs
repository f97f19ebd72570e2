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
