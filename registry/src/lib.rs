//! The topic and user registry, and the seam through which the admin API
//! reaches connections.
//!
//! - [`Directory`] is the plain data: connections by id, users and topic
//!   subscribers, generic over how a connection is reached, so its rules
//!   are unit-tested without sockets or actors.
//! - [`Registry`] shares one directory behind a lock. Connections talk to
//!   it as their `conn_actor::Hub`, in their own turn, so causality holds
//!   without further care: once a client has the answer to a command that
//!   followed its `PUB`, the `MSG` is in every local subscriber's mailbox.
//! - [`Router`] is what the admin API asks to send, close, inspect, publish
//!   and broadcast. It is asynchronous because a target may live on another
//!   gateway node; `Registry` is the local implementation, and a cluster
//!   implementation wraps it.

mod directory;
mod history;
mod local;
pub mod query;
pub mod rfc3339;
mod router;

pub use directory::{Directory, Endpoint};
pub use history::{HistoryPage, HistoryReadError, LocalHistory, positioned_frame};
pub use local::Registry;
pub use router::{Address, ConnView, Delivered, NodeCount, RouteError, Routed, Router, StoredAt};
