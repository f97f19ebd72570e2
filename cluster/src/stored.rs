//! History in a cluster (docs/protocol.md section 13, docs/cluster.md
//! "History"): the stream (`gateway_history::StreamHistory`) and what
//! the connections and the admin API ask of it.
//!
//! A publish on a topic with history is stored in the stream first, and
//! reaches subscribers only through the stream's republished feed, on
//! every node this one included, so every node delivers a topic's
//! messages in offset order (`feed.rs`). A positioned `SUB` subscribes
//! first, then reads the stream; what arrives live meanwhile and was also
//! read is dropped by the connection (its floor).
//!
//! Fails closed: when the stream cannot be reached, a publish on a topic
//! with history is refused and delivered nowhere, and a positioned `SUB`
//! is refused; plain subscriptions and topics without history are not
//! touched.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conn_actor::{ConnId, HistoryRefusal, Name, Replay, Resume, Subscribed};
use gateway_history::stream::{Entry, SetupError};
use gateway_history::{Appended, Epoch, HistoryError, Position, Settings, StreamHistory};
use gateway_metrics::{AppendResult, GatewayMetrics, RecoveryResult};
use gateway_registry::{HistoryPage, Registry};
use tokio::sync::{mpsc, oneshot};

use crate::shared::lock;

/// What the feed task is asked (`feed.rs`).
pub enum FeedCmd {
    /// A local subscriber to `topic`: hear its feed; answer once messages
    /// published from now on will be delivered here in offset order.
    Interest {
        topic: Name,
        done: oneshot::Sender<()>,
    },
    /// A local subscriber left `topic`: stop hearing it if it was the last.
    MaybeUnwanted { topic: Name },
    /// Answer with how many local subscribers got `offset` once it has
    /// been delivered here (0 at once where the topic is not heard here).
    Delivered {
        topic: Name,
        offset: u64,
        done: oneshot::Sender<usize>,
    },
    /// NATS is back: make sure the stream is there, and read its epoch.
    Connected,
    /// The stream was made anew: every heard topic starts over from the
    /// new stream's newest offset, and its positioned subscribers get
    /// `LOST`.
    EpochChanged,
}

/// A cluster's history, shared by the connections, the admin API and the
/// NATS thread.
pub struct ClusterHistory {
    pub settings: Settings,
    store: OnceLock<StreamHistory>,
    /// The stream's epoch as last read; `None` until it was once.
    epoch: Mutex<Option<Epoch>>,
    pub feed: mpsc::UnboundedSender<FeedCmd>,
    metrics: GatewayMetrics,
    timeout: Duration,
}

/// Why an admin history request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRouteError {
    /// The topic has no history (404 `no_history`).
    NoHistory,
    /// The stream cannot be reached (503 `history_unavailable`).
    Unavailable,
}

fn refused(_: HistoryError) -> HistoryRefusal {
    HistoryRefusal::Unavailable
}

impl ClusterHistory {
    pub fn new(
        settings: Settings,
        metrics: GatewayMetrics,
        timeout: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<FeedCmd>) {
        let (feed, feed_rx) = mpsc::unbounded_channel();
        let history = Self {
            settings,
            store: OnceLock::new(),
            epoch: Mutex::new(None),
            feed,
            metrics,
            timeout,
        };
        (history, feed_rx)
    }

    /// Whether `topic` has history (`--history-topics`).
    pub fn covers(&self, topic: &str) -> bool {
        self.settings.topics.contains(topic)
    }

    /// Sets up the store once the NATS client exists.
    pub fn attach(&self, client: async_nats::Client, prefix: &str) -> &StreamHistory {
        self.store.get_or_init(|| {
            StreamHistory::new(
                client,
                prefix,
                self.settings.limits,
                self.settings.replicas,
                self.timeout.max(Duration::from_secs(1)),
            )
        })
    }

    pub fn store(&self) -> Result<&StreamHistory, HistoryError> {
        self.store
            .get()
            .ok_or_else(|| HistoryError::Unavailable("NATS was never reached".into()))
    }

    /// Makes or checks the stream; notes its epoch.
    pub async fn ensure(&self) -> Result<Epoch, SetupError> {
        let store = self
            .store()
            .map_err(|e| SetupError::Unavailable(e.to_string()))?;
        let epoch = store.ensure().await?;
        self.note_epoch(&epoch);
        Ok(epoch)
    }

    /// Notes the epoch the stream has; true when it changed.
    pub fn note_epoch(&self, epoch: &Epoch) -> bool {
        let mut known = lock(&self.epoch);
        let changed = known.as_ref().is_some_and(|k| k != epoch);
        if changed {
            tracing::warn!(old = %known.as_ref().map(Epoch::as_str).unwrap_or(""), new = %epoch,
                "the history stream was made anew: positions of the old epoch recover as LOST");
            let _ = self.feed.send(FeedCmd::EpochChanged);
        }
        *known = Some(epoch.clone());
        changed
    }

    pub fn epoch(&self) -> Option<Epoch> {
        lock(&self.epoch).clone()
    }

    /// Stores a publish: `Stored` or `Duplicate` with its offset.
    /// Refused at once while NATS is away: a publish the client buffered
    /// then would reach the stream later, after its 503.
    pub async fn append(
        &self,
        connected: bool,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(Appended, Epoch), HistoryError> {
        let store = self.store()?;
        let mut tried = if connected {
            store.append(topic, payload.clone(), idempotency_key).await
        } else {
            Err(HistoryError::Unavailable("NATS is not connected".into()))
        };
        if tried == Err(HistoryError::StreamMissing) && self.ensure().await.is_ok() {
            // Deleted meanwhile, and made anew (a new epoch).
            tried = store.append(topic, payload, idempotency_key).await;
        }
        let appended = match tried {
            Ok(appended) => appended,
            Err(err) => {
                self.metrics.history_appends.inc(AppendResult::Failed);
                tracing::debug!(%topic, error = %err, "history append failed");
                return Err(err);
            }
        };
        self.metrics.history_appends.inc(match appended {
            Appended::Stored(_) => AppendResult::Stored,
            Appended::Duplicate(_) => AppendResult::Duplicate,
        });
        let epoch = match self.epoch() {
            Some(epoch) => epoch,
            None => self
                .ensure()
                .await
                .map_err(|e| HistoryError::Unavailable(e.to_string()))?,
        };
        Ok((appended, epoch))
    }

    /// Waits (at most the cluster timeout) until `offset` has been
    /// delivered on this node; says to how many local subscribers.
    pub async fn delivered_here(&self, topic: Name, offset: u64) -> usize {
        let (done, answer) = oneshot::channel();
        if self
            .feed
            .send(FeedCmd::Delivered {
                topic,
                offset,
                done,
            })
            .is_err()
        {
            return 0;
        }
        tokio::time::timeout(self.timeout, answer)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0)
    }

    /// Makes sure this node hears `topic`'s feed (at most the cluster
    /// timeout).
    pub async fn hear(&self, topic: Name) -> bool {
        let (done, heard) = oneshot::channel();
        if self.feed.send(FeedCmd::Interest { topic, done }).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(self.timeout, heard).await, Ok(Ok(())))
    }

    /// `SUB <topic> <position>` of `conn` on this node: hears the topic,
    /// subscribes `conn` positioned, then reads the stream. On `Err` the
    /// connection is unsubscribed again.
    pub async fn subscribe_at(
        &self,
        registry: &Registry,
        topic: Name,
        conn: ConnId,
        from: Resume,
    ) -> Result<Subscribed, HistoryRefusal> {
        if !self.hear(topic.clone()).await {
            return Err(HistoryRefusal::Unavailable);
        }
        registry.subscribe_positioned(topic.clone(), conn);
        match self.recover(&topic, from).await {
            Ok(subscribed) => Ok(subscribed),
            Err(refusal) => {
                conn_actor::Hub::unsubscribe(registry, topic.clone(), conn);
                let _ = self.feed.send(FeedCmd::MaybeUnwanted { topic });
                Err(refusal)
            }
        }
    }

    /// What a positioned `SUB` replays, read from the stream.
    async fn recover(&self, topic: &str, from: Resume) -> Result<Subscribed, HistoryRefusal> {
        let store = self.store().map_err(refused)?;
        let recover_max = self.settings.recover_max;
        let started = Instant::now();
        let (newest, replay) = match from {
            Resume::Latest => {
                let (epoch, offset) = store.newest(topic).await.map_err(refused)?;
                self.note_epoch(&epoch);
                (Position { epoch, offset }, Replay::Latest)
            }
            Resume::After(position) => {
                let read = store
                    .read_after(topic, position.offset, recover_max, true)
                    .await
                    .map_err(refused)?;
                self.note_epoch(&read.epoch);
                let newest = |offset| Position {
                    epoch: read.epoch.clone(),
                    offset,
                };
                if read.epoch != position.epoch {
                    // Another history: nothing of it is held. The read was
                    // made from an offset of the old one; ask the newest.
                    let (epoch, offset) = store.newest(topic).await.map_err(refused)?;
                    (Position { epoch, offset }, Replay::Lost)
                } else if read.complete && read.after as usize <= recover_max {
                    let frames = read
                        .messages
                        .iter()
                        .map(|m| gateway_registry::positioned_frame(topic, m.offset, &m.payload))
                        .collect();
                    (newest(read.newest), Replay::Recovered(frames))
                } else {
                    (newest(read.newest), Replay::Lost)
                }
            }
        };
        let metrics = &self.metrics;
        metrics
            .history_read_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.recoveries.inc(match &replay {
            Replay::Latest => RecoveryResult::Latest,
            Replay::Recovered(_) => RecoveryResult::Recovered,
            Replay::Lost => RecoveryResult::Lost,
        });
        if let Replay::Recovered(frames) = &replay {
            metrics.recovered_messages.inc_by(frames.len() as u64);
        }
        Ok(Subscribed { newest, replay })
    }

    /// `GET /api/v1/topics/{topic}/history`.
    pub async fn read(
        &self,
        topic: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<HistoryPage, HistoryRouteError> {
        if !self.covers(topic) {
            return Err(HistoryRouteError::NoHistory);
        }
        let store = self.store().map_err(|_| HistoryRouteError::Unavailable)?;
        let started = Instant::now();
        let page = match since {
            Some(position) => {
                let read = store
                    .read_after(topic, position.offset, limit, false)
                    .await
                    .map_err(|_| HistoryRouteError::Unavailable)?;
                self.note_epoch(&read.epoch);
                if read.epoch == position.epoch {
                    page(read.epoch, read.newest, read.complete, read.messages)
                } else {
                    let (epoch, newest) = store
                        .newest(topic)
                        .await
                        .map_err(|_| HistoryRouteError::Unavailable)?;
                    page(epoch, newest, false, Vec::new())
                }
            }
            None => {
                // The newest `limit`: the subject holds at most
                // `--history-size`, so it is read whole.
                let read = store
                    .read_after(topic, 0, self.settings.limits.size, false)
                    .await
                    .map_err(|_| HistoryRouteError::Unavailable)?;
                self.note_epoch(&read.epoch);
                let mut messages = read.messages;
                let skip = messages.len().saturating_sub(limit);
                messages.drain(..skip);
                page(read.epoch, read.newest, true, messages)
            }
        };
        self.metrics
            .history_read_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(page)
    }

    /// `DELETE /api/v1/topics/{topic}/history`.
    pub async fn delete(&self, topic: &str) -> Result<(), HistoryRouteError> {
        if !self.covers(topic) {
            return Err(HistoryRouteError::NoHistory);
        }
        let store = self.store().map_err(|_| HistoryRouteError::Unavailable)?;
        store
            .delete(topic)
            .await
            .map_err(|_| HistoryRouteError::Unavailable)
    }

    /// Reads what the stream holds into the gauges, and its epoch.
    pub async fn refresh(&self) -> Option<bool> {
        let store = self.store.get()?;
        let (epoch, state) = store.state().await.ok()?;
        self.metrics.history_messages.set(state.messages as i64);
        self.metrics.history_bytes.set(state.bytes as i64);
        Some(self.note_epoch(&epoch))
    }
}

fn page(epoch: Epoch, offset: u64, complete: bool, messages: Vec<Entry>) -> HistoryPage {
    HistoryPage {
        epoch: epoch.to_string(),
        offset,
        complete,
        messages: messages
            .into_iter()
            .map(|m| (m.offset, m.payload, m.published_at))
            .collect(),
    }
}
