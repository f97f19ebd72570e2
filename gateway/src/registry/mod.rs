//! The topic and user registry: which connections exist, which user each
//! holds and which topics each follows.
//!
//! One `Directory` (see `state.rs`) behind a lock, shared by every
//! worker. A connection's `SUB`, `HELLO` and `PUB` take effect in the
//! connection's own turn, so causality holds without further care: once a
//! client has the answer to a command that followed its `PUB`, the `MSG` is
//! already in every subscriber's mailbox, ahead of anything they do next.
//! Publishes from two workers only read the directory and run in parallel.
//!
//! Connections reach it through [`Registry`]'s `conn_actor::Hub`
//! implementation; the admin API through its methods and the types in
//! [`query`]. Fanning out to other gateway nodes belongs behind the same
//! two seams.

pub mod query;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use conn_actor::{CloseReason, ConnHandle, ConnId, Hub, Name};
use gateway_metrics::GatewayMetrics;

use query::*;
use state::Directory;

/// The registry, shared by connections (as their `Hub`) and the admin API.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    dir: RwLock<Directory>,
    metrics: GatewayMetrics,
    draining: AtomicBool,
}

impl Registry {
    /// An empty registry counting into `metrics`.
    pub fn new(metrics: GatewayMetrics) -> Self {
        Self(Arc::new(Inner {
            dir: RwLock::new(Directory::default()),
            metrics,
            draining: AtomicBool::new(false),
        }))
    }

    // Nothing panics while holding the lock, and every write leaves the
    // directory consistent, so a poisoned lock is still sound to use.
    fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.0.dir.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        self.0.dir.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn update_gauges(&self, dir: &Directory) {
        let metrics = &self.0.metrics;
        metrics.topics.set(dir.topic_count() as i64);
        metrics.subscriptions.set(dir.subscription_count() as i64);
    }

    /// Looks a target up.
    pub fn find(&self, target: &Target) -> Result<ConnHandle, TargetError> {
        self.read().find(target)
    }

    /// Queues `action` for an open target. A close makes it `closing` at
    /// once, so a request right behind it gets 409.
    pub fn send_to(&self, target: &Target, action: Action) -> Result<(), TargetError> {
        match action {
            Action::Deliver(frame) => match self.find(target)?.deliver(frame) {
                true => Ok(()),
                false => Err(TargetError::NotFound),
            },
            Action::Close { reason, message } => {
                let mut dir = self.write();
                let conn = dir.find(target)?.id();
                dir.close(conn, reason, message);
                self.update_gauges(&dir);
                Ok(())
            }
        }
    }

    /// Queues an encoded `MSG` for the topic's subscribers but `from`.
    pub fn publish_frame(&self, topic: &str, frame: &Bytes, from: Option<ConnId>) -> usize {
        self.read().publish(topic, frame, from)
    }

    /// Queues a frame for every open connection.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        self.read().broadcast(frame)
    }

    /// One page of connections.
    pub fn list(&self, query: &List) -> Page<ConnHandle> {
        self.read().list(query)
    }

    /// A connection by id, closing ones included.
    pub fn get(&self, conn: ConnId) -> Option<ConnHandle> {
        self.read().get(conn)
    }

    /// Topics with subscribers.
    pub fn topics(&self) -> Vec<(Name, usize)> {
        self.read().topics()
    }

    /// Topic and subscription counts.
    pub fn counts(&self) -> RegistryCounts {
        let dir = self.read();
        RegistryCounts {
            topics: dir.topic_count(),
            subscriptions: dir.subscription_count(),
        }
    }

    /// Kicks every connection with `KICK shutdown`, and every later one.
    pub fn drain_all(&self) {
        let mut dir = self.write();
        self.0.draining.store(true, Ordering::SeqCst);
        dir.close_all(CloseReason::Shutdown);
        self.update_gauges(&dir);
    }
}

impl Hub for Registry {
    fn opened(&self, conn: ConnHandle) {
        let mut dir = self.write();
        // Checked under the lock, so a connection opening while the drain
        // begins is either kicked here or by `drain_all`.
        if self.0.draining.load(Ordering::SeqCst) {
            conn.close(CloseReason::Shutdown, None);
        }
        dir.open(conn);
    }

    fn login(&self, user: Name, conn: ConnId) {
        let mut dir = self.write();
        dir.login(user, conn);
        self.update_gauges(&dir);
    }

    fn subscribe(&self, topic: Name, conn: ConnId) {
        let mut dir = self.write();
        dir.subscribe(topic, conn);
        self.update_gauges(&dir);
    }

    fn unsubscribe(&self, topic: Name, conn: ConnId) {
        let mut dir = self.write();
        dir.unsubscribe(&topic, conn);
        self.update_gauges(&dir);
    }

    fn publish(&self, topic: &str, frame: Bytes, from: ConnId) {
        self.publish_frame(topic, &frame, Some(from));
    }

    fn closing(&self, conn: ConnId) {
        let mut dir = self.write();
        dir.closing(conn);
        self.update_gauges(&dir);
    }

    fn closed(&self, conn: ConnId) {
        self.write().closed(conn);
    }
}
