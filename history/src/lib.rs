//! Topic history (docs/protocol.md section 13): what lets a client that
//! comes back get every message it missed on a topic, or be told plainly
//! that it cannot.
//!
//! This crate owns the vocabulary of history (an [`Epoch`] naming one
//! history, a [`Position`] in it, the messages [`Read`] after one) and its
//! two stores, each with the same four operations: append, read after a
//! position, the newest position, delete. [`MemoryHistory`] is a single
//! node's store ([`History`]), bounded by message count per topic, age and
//! bytes in all; it is synchronous, so the registry appends and delivers
//! under one lock. [`StreamHistory`] is a cluster's, a JetStream stream
//! shared by every node, and asynchronous: each operation is a round trip
//! to NATS, awaited by the one that asked (`gateway-cluster`).
//! Neither store knows connections or frames, and only the stream knows
//! the network: the registry (single node) or the cluster calls them on
//! publish, and the connection side only ever sees positioned frames.
//!
//! Time is passed in (`now`) rather than read, so every rule about age is
//! unit-tested without waiting.

#![warn(missing_docs)]

mod memory;
mod position;
pub mod stream;
mod topics;

pub use memory::{KEY_OVERHEAD, Limits, MESSAGE_OVERHEAD, MemoryHistory};
pub use position::{Epoch, InvalidEpoch, InvalidPosition, Position};
pub use stream::{StreamHistory, StreamRead};
pub use topics::{InvalidPatterns, TopicPatterns};

/// History as the flags set it up (`--history-*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store's bounds.
    pub limits: Limits,
    /// The topics with history.
    pub topics: TopicPatterns,
    /// The most messages one recovery replays.
    pub recover_max: usize,
    /// Cluster: replicas of the stream (`--history-replicas`).
    pub replicas: usize,
}

use std::time::Instant;

use bytes::Bytes;

/// A message held in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its offset on its topic: from 1 up, strictly increasing.
    pub offset: u64,
    /// The payload, as published.
    pub payload: Bytes,
    /// When it was stored.
    pub at: Instant,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this offset.
    Stored(u64),
    /// The idempotency key was seen on this topic within the window: not
    /// stored again; the first offset.
    Duplicate(u64),
}

impl Appended {
    /// The message's offset, stored now or before.
    pub fn offset(self) -> u64 {
        match self {
            Appended::Stored(offset) | Appended::Duplicate(offset) => offset,
        }
    }
}

/// What a read after a position found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The newest offset on the topic (0 when nothing was ever stored).
    pub newest: u64,
    /// Whether history still held every message after the position: none
    /// evicted, expired or deleted in between.
    pub complete: bool,
    /// The messages after the position, oldest first, at most the limit.
    pub messages: Vec<Stored>,
}

/// Messages that left history, by why (`gateway_history_evicted_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Past `--history-size` on their topic.
    pub size: u64,
    /// Older than `--history-ttl`.
    pub ttl: u64,
    /// Past `--history-max-bytes` in all, oldest first across topics.
    pub bytes: u64,
    /// Deleted with their topic's history.
    pub deleted: u64,
}

/// What history holds now (`gateway_history_messages`, `_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Messages held.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// Why history could not do what it was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    /// The store cannot be reached (a cluster's stream); nothing was
    /// stored.
    #[error("history is unavailable: {0}")]
    Unavailable(String),
    /// A cluster's stream is not there (deleted): it is made anew, under
    /// a new epoch, before the next try.
    #[error("the history stream is missing")]
    StreamMissing,
}

/// A history store: one per process, shared by every topic with history.
pub trait History: Send + Sync {
    /// The epoch the store's offsets belong to.
    fn epoch(&self) -> &Epoch;
    /// Stores `payload` on `topic`, once per `idempotency_key` within the
    /// store's window; says what left history to make room.
    fn append(
        &self,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
        now: Instant,
    ) -> Result<(Appended, Evicted), HistoryError>;
    /// The messages after offset `after` on `topic`, at most `limit`.
    fn read_after(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
        now: Instant,
    ) -> Result<(Read, Evicted), HistoryError>;
    /// The newest `limit` messages on `topic`.
    fn newest(
        &self,
        topic: &str,
        limit: usize,
        now: Instant,
    ) -> Result<(Read, Evicted), HistoryError>;
    /// Drops every message of `topic`; its offsets go on from where they
    /// were, so a position from before recovers as lost.
    fn delete(&self, topic: &str) -> Result<Evicted, HistoryError>;
    /// What the store holds now.
    fn held(&self) -> Held;
}
