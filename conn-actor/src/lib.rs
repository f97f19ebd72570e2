//! The connection actor and everything a connection needs: framing, client
//! commands, the ordered write queue and the graceful close.
//!
//! This crate knows nothing of HTTP, flags or files. It reaches the rest of
//! the gateway through three seams: the [`Hub`] (topic and user registry),
//! the pool manager (a `Recipient` of [`pool_manager::Checkin`]) and the
//! metrics it counts into. Below it is the [`Transport`] it reads from and
//! writes to; frames reach a connection unframed, and only its codec frames
//! them as they are written.

#![warn(missing_docs)]

mod admission;
pub mod codec;
pub mod command;
mod connection;
mod context;
mod hub;
mod mailbox;
pub mod messages;
mod names;
pub mod park;
mod refusals;
mod state;
mod throttle;
pub mod transport;

pub use admission::{Admission, Refusal, Slot};
pub use codec::{FrameCodec, Framing, body};
pub use connection::Connection;
pub use context::{Limits, WorkerContext};
pub use hub::{
    HistoryRefusal, Hub, Pending, Published, Replay, Resume, Settled, Subscribed, Subscribing,
};
pub use mailbox::{ConnHandle, fan_out};
pub use messages::{CloseReason, ConnInfo};
pub use names::{ConnId, Name, TopicList};
pub use state::{ConnState, Counters};
pub use throttle::Throttle;
pub use transport::Transport;
pub use transport::WsStream;
