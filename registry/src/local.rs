//! [`Registry`]: one [`Directory`] behind a lock, shared by every worker.
//! A connection's `SUB`, `HELLO` and `PUB` take effect in the connection's
//! own turn; publishes from two workers only read the directory and run in
//! parallel. It is the connections' `Hub` and the local [`Router`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use conn_actor::{
    CloseReason, ConnHandle, ConnId, ConnInfo, FrameCodec, Hub, Name, Published, Resume, Settled,
    Subscribing,
};
use gateway_metrics::GatewayMetrics;

use crate::directory::Directory;
use crate::history::{LocalHistory, StoredPublish};
use crate::query::*;
use crate::rfc3339;
use crate::router::{Address, ConnView, Delivered, RouteError, Routed, Router, StoredAt};

/// The registry, shared by connections (as their `Hub`) and the admin API.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    dir: RwLock<Directory>,
    metrics: GatewayMetrics,
    /// Topic history, on a single node with `--history-size`.
    history: Option<LocalHistory>,
    codec: FrameCodec,
    /// `<node-id>.<run>-` in a cluster; ids are plain numbers otherwise.
    id_prefix: Option<Arc<str>>,
    draining: AtomicBool,
}

impl Registry {
    /// An empty registry counting into `metrics`, framing what it routes
    /// with `codec`, naming connections `<id_prefix><number>`.
    pub fn new(metrics: GatewayMetrics, codec: FrameCodec, id_prefix: Option<Arc<str>>) -> Self {
        Self::with_history(metrics, codec, id_prefix, None)
    }

    /// Like [`Registry::new`], keeping topic history as `history` says.
    pub fn with_history(
        metrics: GatewayMetrics,
        codec: FrameCodec,
        id_prefix: Option<Arc<str>>,
        history: Option<gateway_history::Settings>,
    ) -> Self {
        Self(Arc::new(Inner {
            dir: RwLock::new(Directory::default()),
            metrics,
            history: history.map(LocalHistory::new),
            codec,
            id_prefix,
            draining: AtomicBool::new(false),
        }))
    }

    // Nothing panics while holding the lock, and every write leaves the
    // directory consistent, so a poisoned lock is still sound to use.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.0.dir.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        self.0.dir.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Topic history, where it is on.
    pub fn history(&self) -> Option<&LocalHistory> {
        self.0.history.as_ref()
    }

    /// The gateway's metrics, for what counts beside the registry (a
    /// cluster's history).
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.0.metrics
    }

    pub(crate) fn update_gauges(&self, dir: &Directory) {
        let metrics = &self.0.metrics;
        metrics.topics.set(dir.topic_count() as i64);
        metrics.subscriptions.set(dir.subscription_count() as i64);
    }

    /// A connection's id as clients and the admin API see it.
    pub fn conn_name(&self, conn: ConnId) -> String {
        match &self.0.id_prefix {
            Some(prefix) => format!("{prefix}{conn}"),
            None => conn.to_string(),
        }
    }

    /// The local connection an id names, if it is spelled as this node
    /// spells its ids (exactly: no sign, no leading zeros).
    pub fn parse_id(&self, text: &str) -> Option<ConnId> {
        let number = match &self.0.id_prefix {
            Some(prefix) => text.strip_prefix(&**prefix)?,
            None => text,
        };
        number
            .parse::<ConnId>()
            .ok()
            .filter(|id| id.to_string() == number)
    }

    /// Whether `payload` can be framed for this node's clients: under
    /// `lines` it may hold no `\n` and may not end in `\r`.
    pub fn fits_framing(&self, payload: &[u8]) -> bool {
        self.0.codec.carries(payload)
    }

    /// The body `PUSH <payload>`, unframed: each connection frames it as
    /// it writes it.
    pub fn push_frame(&self, payload: &[u8]) -> Bytes {
        conn_actor::body(&[b"PUSH ", payload])
    }

    /// The body `MSG <topic> <payload>`, unframed.
    pub fn msg_frame(&self, topic: &str, payload: &[u8]) -> Bytes {
        conn_actor::body(&[b"MSG ", topic.as_bytes(), b" ", payload])
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

    /// Queues a `MSG` body for the topic's subscribers but `from`.
    pub fn publish_frame(&self, topic: &str, frame: &Bytes, from: Option<ConnId>) -> usize {
        self.read().publish(topic, frame, from)
    }

    /// Whether any local connection follows `topic`.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.read().subscribers(topic) > 0
    }

    /// Whether `conn` subscribes to `topic`.
    pub fn is_subscribed(&self, topic: &str, conn: ConnId) -> bool {
        self.read().is_subscribed(topic, conn)
    }

    /// Queues a frame for every open connection.
    pub fn broadcast_frame(&self, frame: &Bytes) -> usize {
        self.read().broadcast(frame)
    }

    /// One page of connections.
    pub fn list(&self, query: &List) -> Page<ConnHandle> {
        self.read().list(query)
    }

    /// A connection by id, closing ones included.
    pub fn get_local(&self, conn: ConnId) -> Option<ConnHandle> {
        self.read().get(conn)
    }

    /// Asks a connection for its snapshot; `None` once it is gone.
    pub async fn view(&self, handle: &ConnHandle) -> Option<ConnView> {
        let info = handle.inspect().await?;
        Some(self.view_of(&info))
    }

    /// CONN for a snapshot.
    pub fn view_of(&self, info: &ConnInfo) -> ConnView {
        let counters = &info.counters;
        ConnView {
            id: self.conn_name(info.id),
            peer: info.peer.to_string(),
            user: info.user.as_deref().map(str::to_owned),
            topics: info.topics.iter().map(|t| t.to_string()).collect(),
            state: if info.closing { "closing" } else { "open" }.to_owned(),
            connected_at: rfc3339::format(info.connected_at),
            frames_in: counters.frames_in,
            frames_out: counters.frames_out,
            bytes_in: counters.bytes_in,
            bytes_out: counters.bytes_out,
            pending_bytes: info.pending_bytes as u64,
            transport: info.transport.as_str().to_owned(),
        }
    }

    /// Topics with subscribers.
    pub fn topics(&self) -> Vec<(Name, usize)> {
        self.read().topics()
    }

    /// The topics a connection follows.
    pub fn topics_of(&self, conn: ConnId) -> Vec<Name> {
        self.read().topics_of(conn)
    }

    /// Users bound to open local connections.
    pub fn users(&self) -> Vec<(Name, ConnId)> {
        self.read().users()
    }

    /// Open local connections.
    pub fn open_count(&self) -> usize {
        self.read().open_count()
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

    /// The local target an address names.
    pub fn target(&self, to: &Address) -> Result<Target, RouteError> {
        match to {
            Address::Conn(text) => self
                .parse_id(text)
                .map(Target::Conn)
                .ok_or(RouteError::NotFound),
            Address::User(user) => Ok(Target::User(user.clone())),
        }
    }

    /// Queues `PUSH <payload>` for a local target.
    pub fn send_local(&self, to: &Address, payload: &[u8]) -> Result<(), RouteError> {
        let target = self.target(to)?;
        self.send_to(&target, Action::Deliver(self.push_frame(payload)))
            .map_err(RouteError::from)
    }

    /// Queues a close for a local target.
    pub fn close_local(
        &self,
        to: &Address,
        reason: CloseReason,
        message: Option<Bytes>,
    ) -> Result<(), RouteError> {
        let target = self.target(to)?;
        self.send_to(&target, Action::Close { reason, message })
            .map_err(RouteError::from)
    }

    /// A local connection's snapshot.
    pub async fn get_view(&self, id: &str) -> Result<ConnView, RouteError> {
        let conn = self.parse_id(id).ok_or(RouteError::NotFound)?;
        let handle = self.get_local(conn).ok_or(RouteError::NotFound)?;
        self.view(&handle).await.ok_or(RouteError::NotFound)
    }
}

impl From<TargetError> for RouteError {
    fn from(err: TargetError) -> Self {
        match err {
            TargetError::NotFound => RouteError::NotFound,
            TargetError::Closing => RouteError::Closing,
        }
    }
}

impl Router for Registry {
    fn send(&self, to: Address, payload: Bytes) -> Routed<'_, ()> {
        let result = self.send_local(&to, &payload);
        Box::pin(std::future::ready(result))
    }

    fn close(&self, to: Address, reason: CloseReason, message: Option<Bytes>) -> Routed<'_, ()> {
        let result = self.close_local(&to, reason, message);
        Box::pin(std::future::ready(result))
    }

    fn get(&self, id: String) -> Routed<'_, ConnView> {
        Box::pin(async move { self.get_view(&id).await })
    }

    fn publish(
        &self,
        topic: Name,
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Routed<'_, Delivered> {
        let stored = self.publish_stored(
            &topic,
            payload.clone(),
            idempotency_key.as_deref(),
            None,
            None,
        );
        let delivered = match stored {
            Some(stored) => Delivered {
                count: stored.delivered,
                nodes: None,
                stored: Some(StoredAt {
                    offset: stored.offset,
                    epoch: stored.epoch,
                }),
            },
            None => Delivered {
                count: self.publish_frame(&topic, &self.msg_frame(&topic, &payload), None),
                nodes: None,
                stored: None,
            },
        };
        Box::pin(std::future::ready(Ok(delivered)))
    }

    fn broadcast(&self, payload: Bytes) -> Routed<'_, Delivered> {
        let count = self.broadcast_frame(&self.push_frame(&payload));
        Box::pin(std::future::ready(Ok(Delivered {
            count,
            nodes: None,
            stored: None,
        })))
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

    fn login(&self, user: Name, conn: ConnId) -> Option<Settled> {
        let mut dir = self.write();
        dir.login(user, conn);
        self.update_gauges(&dir);
        None
    }

    fn subscribe(&self, topic: Name, conn: ConnId) -> Option<Settled> {
        let mut dir = self.write();
        dir.subscribe(topic, conn);
        self.update_gauges(&dir);
        None
    }

    fn unsubscribe(&self, topic: Name, conn: ConnId) {
        let mut dir = self.write();
        dir.unsubscribe(&topic, conn);
        self.update_gauges(&dir);
    }

    fn publish(&self, topic: &str, payload: &[u8], frame: Bytes, from: ConnId) -> Published {
        // Only a topic with history pays for storing a copy of the payload.
        if self.history_of(topic).is_none() {
            self.publish_frame(topic, &frame, Some(from));
            return Published::Live;
        }
        let payload = Bytes::copy_from_slice(payload);
        match self.publish_stored(topic, payload, None, Some(from), Some(frame)) {
            Some(StoredPublish {
                positioned: Some(positioned),
                ..
            }) => Published::Stored(positioned),
            // Not stored again (a repeated key, which a client's PUB never
            // has): nothing was delivered.
            Some(_) | None => Published::Live,
        }
    }

    fn subscribe_at(&self, topic: Name, conn: ConnId, from: Resume) -> Subscribing {
        Subscribing::Now(Registry::subscribe_at(self, topic, conn, from))
    }

    fn closing(&self, conn: ConnId) {
        let mut dir = self.write();
        dir.closing(conn);
        self.update_gauges(&dir);
    }

    fn closed(&self, conn: ConnId) {
        self.write().closed(conn);
    }

    fn conn_name(&self, conn: ConnId) -> String {
        Registry::conn_name(self, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conn_actor::Framing;

    fn registry(prefix: Option<&str>) -> Registry {
        let (_, metrics) = gateway_metrics::new_registry().expect("metrics");
        Registry::new(
            metrics,
            FrameCodec::new(Framing::Lines, 64),
            prefix.map(Arc::from),
        )
    }

    #[test]
    fn ids_round_trip_with_and_without_a_prefix() {
        let plain = registry(None);
        assert_eq!(plain.conn_name(42), "42");
        assert_eq!(plain.parse_id("42"), Some(42));
        for bad in ["042", "+42", "", "n1.r-42", "4 2"] {
            assert_eq!(plain.parse_id(bad), None, "{bad:?}");
        }
        let node = registry(Some("n1.abc-"));
        assert_eq!(node.conn_name(7), "n1.abc-7");
        assert_eq!(node.parse_id("n1.abc-7"), Some(7));
        for bad in ["7", "n1.abc-07", "n2.abc-7", "n1.abd-7"] {
            assert_eq!(node.parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lines_framing_refuses_what_would_split_a_frame() {
        let lines = registry(None);
        assert!(lines.fits_framing(b"a b"));
        assert!(lines.fits_framing(b""));
        assert!(!lines.fits_framing(b"a\nb"));
        assert!(!lines.fits_framing(b"a\r"));
        // Bodies stay unframed: each connection frames them as it writes.
        assert_eq!(&lines.push_frame(b"x")[..], b"PUSH x");
        assert_eq!(&lines.msg_frame("t", b"")[..], b"MSG t ");
    }
}
