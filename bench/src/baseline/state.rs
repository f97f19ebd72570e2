//! What all connections share: the connection, user and topic maps (each
//! behind a mutex) and the counters for `/metrics`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_bench::frame::Framing;
use tokio::sync::mpsc;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub framing: Framing,
    pub max_frame: usize,
    pub max_pending: usize,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub close_timeout: Duration,
}

/// An entry in a connection's mailbox, already framed.
#[derive(Debug)]
pub enum Out {
    /// A frame to write.
    Frame(Bytes),
    /// Write this last frame (if any), then shut the write side.
    Close(Option<Bytes>),
}

/// The sending side of a connection's mailbox.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Out>,
    /// Bytes queued and not yet written.
    pub pending: Arc<AtomicUsize>,
    /// Set once a close was asked for.
    pub closing: Arc<AtomicBool>,
    /// Set when the connection overran its pending limit.
    pub slow: Arc<AtomicBool>,
}

/// Why [`Handle::send`] did not queue a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closing.
    Closing,
}

impl Handle {
    /// A new mailbox and its receiving end.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                pending: Arc::new(AtomicUsize::new(0)),
                closing: Arc::new(AtomicBool::new(false)),
                slow: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// Queues a framed frame; past `max_pending` the connection is marked
    /// slow and closed (its writer drops what is queued).
    pub fn send(&self, frame: Bytes, max_pending: usize) -> Result<(), SendError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SendError::Closing);
        }
        let len = frame.len();
        if self.pending.fetch_add(len, Ordering::AcqRel) + len > max_pending {
            self.pending.fetch_sub(len, Ordering::AcqRel);
            self.slow.store(true, Ordering::Release);
            self.close(None);
            return Ok(());
        }
        if self.tx.send(Out::Frame(frame)).is_err() {
            self.pending.fetch_sub(len, Ordering::AcqRel);
            return Err(SendError::Closing);
        }
        Ok(())
    }

    /// Asks for a graceful close with `last` as the final frame; false when
    /// a close was already asked for.
    pub fn close(&self, last: Option<Bytes>) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.tx.send(Out::Close(last));
        true
    }
}

/// One registered connection.
#[derive(Debug)]
pub struct Entry {
    pub handle: Handle,
    pub user: Option<Vec<u8>>,
    pub topics: HashSet<Vec<u8>>,
}

/// Shared server state.
#[derive(Debug)]
pub struct State {
    pub limits: Limits,
    next_id: AtomicU64,
    pub conns: Mutex<HashMap<u64, Entry>>,
    pub users: Mutex<HashMap<Vec<u8>, u64>>,
    pub topics: Mutex<HashMap<Vec<u8>, HashMap<u64, Handle>>>,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub closed: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
}

/// Locks a mutex, ignoring poisoning (the maps stay consistent per call).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
        }
    }

    /// Encodes one frame in the server's framing.
    pub fn frame(&self, parts: &[&[u8]]) -> Bytes {
        let mut out = BytesMut::new();
        self.limits.framing.encode_parts(parts, &mut out);
        out.freeze()
    }

    /// Registers a connection; `None` when the server is full.
    pub fn register(&self, handle: Handle) -> Option<u64> {
        let mut conns = lock(&self.conns);
        if conns.len() >= self.limits.max_connections {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conns.insert(
            id,
            Entry {
                handle,
                user: None,
                topics: HashSet::new(),
            },
        );
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// Removes a connection from every map.
    pub fn unregister(&self, id: u64) {
        let Some(entry) = lock(&self.conns).remove(&id) else {
            return;
        };
        if let Some(user) = entry.user {
            let mut users = lock(&self.users);
            if users.get(&user) == Some(&id) {
                users.remove(&user);
            }
        }
        if !entry.topics.is_empty() {
            let mut topics = lock(&self.topics);
            for t in entry.topics {
                if let Some(subs) = topics.get_mut(&t) {
                    subs.remove(&id);
                    if subs.is_empty() {
                        topics.remove(&t);
                    }
                }
            }
        }
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// The handle of connection `id`.
    pub fn handle(&self, id: u64) -> Option<Handle> {
        lock(&self.conns).get(&id).map(|e| e.handle.clone())
    }

    /// Open connections.
    pub fn active(&self) -> usize {
        lock(&self.conns).len()
    }
}
