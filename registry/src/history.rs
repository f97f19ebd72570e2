//! The registry's side of topic history on a single node (docs/protocol.md
//! section 13): a publish on a topic with history is stored first and
//! delivered under the store's lock (so every subscriber sees a topic's
//! messages in offset order), and a positioned subscription reads history
//! and joins the topic under the directory's write lock (so no publish
//! falls between what it replays and what it gets live).

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use conn_actor::{ConnId, HistoryRefusal, Name, Replay, Resume, Subscribed};
use gateway_history::{Appended, Epoch, Evicted, History, MemoryHistory, Position, Settings};
use gateway_metrics::{AppendResult, EvictReason, GatewayMetrics, RecoveryResult};

use crate::local::Registry;

/// A single node's history and what the flags say of it.
pub struct LocalHistory {
    store: MemoryHistory,
    settings: Settings,
    /// Instants of the store, read as wall-clock times (`published_at`).
    started: (Instant, SystemTime),
}

impl LocalHistory {
    /// An empty history under a fresh epoch.
    pub fn new(settings: Settings) -> LocalHistory {
        let now = SystemTime::now();
        let seed = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ (u128::from(std::process::id()) << 96);
        LocalHistory {
            store: MemoryHistory::new(Epoch::fresh(seed), settings.limits),
            settings,
            started: (Instant::now(), now),
        }
    }

    /// Whether `topic` has history (`--history-topics`).
    pub fn covers(&self, topic: &str) -> bool {
        self.settings.topics.contains(topic)
    }

    /// The epoch of this run.
    pub fn epoch(&self) -> &Epoch {
        self.store.epoch()
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.started.1 + at.saturating_duration_since(self.started.0)
    }
}

/// What a publish on a topic with history did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPublish {
    /// Subscribers it was queued for (0 for a duplicate).
    pub delivered: usize,
    /// Its offset (the first one, for a duplicate).
    pub offset: u64,
    /// The epoch the offset belongs to.
    pub epoch: String,
    /// What positioned subscribers were sent (`MSG <topic>@<offset>
    /// <payload>`); none for a duplicate.
    pub positioned: Option<Bytes>,
}

/// One page of a topic's history, for the admin API.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub epoch: String,
    /// The newest offset on the topic.
    pub offset: u64,
    /// Whether history held every message after `since`.
    pub complete: bool,
    /// Offset, payload and when it was published, oldest first.
    pub messages: Vec<(u64, Bytes, SystemTime)>,
}

/// Why a history read of the admin API was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryReadError {
    /// History is off, or the topic has none (404 `no_history`).
    NoHistory,
}

/// `MSG <topic>@<offset> <payload>`, unframed.
pub fn positioned_frame(topic: &str, offset: u64, payload: &[u8]) -> Bytes {
    let offset = offset.to_string();
    conn_actor::body(&[
        b"MSG ",
        topic.as_bytes(),
        b"@",
        offset.as_bytes(),
        b" ",
        payload,
    ])
}

fn count(metrics: &GatewayMetrics, store: &MemoryHistory, evicted: Evicted) {
    for (reason, n) in [
        (EvictReason::Size, evicted.size),
        (EvictReason::Ttl, evicted.ttl),
        (EvictReason::Bytes, evicted.bytes),
        (EvictReason::Deleted, evicted.deleted),
    ] {
        if n > 0 {
            metrics.history_evicted.inc_by(reason, n);
        }
    }
    let held = store.held();
    metrics.history_messages.set(held.messages as i64);
    metrics.history_bytes.set(held.bytes as i64);
}

impl Registry {
    /// A cluster's stored message, queued for the topic's subscribers on
    /// this node (plain ones get `MSG <topic> <payload>`, positioned ones
    /// `MSG <topic>@<offset> <payload>`). The caller delivers a topic's
    /// messages one at a time in offset order; returns how many it reached.
    pub fn deliver_stored(&self, topic: &str, offset: u64, payload: &[u8]) -> usize {
        let plain = self.msg_frame(topic, payload);
        let positioned = positioned_frame(topic, offset, payload);
        self.read().publish_split(topic, &plain, &positioned, None)
    }

    /// `LOST <topic> <position>` for the topic's positioned subscribers on
    /// this node: their continuity broke after `position`.
    pub fn deliver_lost(&self, topic: &str, position: &Position) -> usize {
        let position = position.to_string();
        let frame = conn_actor::body(&[b"LOST ", topic.as_bytes(), b" ", position.as_bytes()]);
        self.read().publish_positioned(topic, &frame)
    }

    /// A cluster's positioned subscription, made before its recovery reads
    /// the stream, so that every message delivered from then on reaches
    /// it (the connection drops those the recovery also replays).
    pub fn subscribe_positioned(&self, topic: Name, conn: ConnId) {
        let mut dir = self.write();
        dir.subscribe_positioned(topic, conn);
        self.update_gauges(&dir);
    }

    /// The history of `topic`, where it has one.
    pub fn history_of(&self, topic: &str) -> Option<&LocalHistory> {
        self.history().filter(|h| h.covers(topic))
    }

    /// Stores a publish on a topic with history, then queues it for the
    /// topic's subscribers but `from` (plain ones get `MSG <topic>
    /// <payload>`, positioned ones `MSG <topic>@<offset> <payload>`);
    /// `None` when the topic has no history. A payload with an
    /// `idempotency_key` seen on the topic within the window is neither
    /// stored nor delivered again. `plain` is the plain frame, where the
    /// caller has it already.
    pub(crate) fn publish_stored(
        &self,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
        from: Option<ConnId>,
        plain: Option<Bytes>,
    ) -> Option<StoredPublish> {
        let history = self.history_of(topic)?;
        let metrics = self.metrics();
        // The directory's read lock first, as every publish takes it: a
        // positioned subscription (its write lock) sees this message either
        // in history or live, never neither nor both.
        let dir = self.read();
        let ((delivered, positioned), appended, evicted) = history.store.append_then(
            topic,
            payload,
            idempotency_key,
            Instant::now(),
            |appended, payload| match appended {
                Appended::Stored(offset) => {
                    let plain = plain.unwrap_or_else(|| self.msg_frame(topic, payload));
                    let positioned = positioned_frame(topic, offset, payload);
                    let delivered = dir.publish_split(topic, &plain, &positioned, from);
                    (delivered, Some(positioned))
                }
                Appended::Duplicate(_) => (0, None),
            },
        );
        drop(dir);
        metrics.history_appends.inc(match appended {
            Appended::Stored(_) => AppendResult::Stored,
            Appended::Duplicate(_) => AppendResult::Duplicate,
        });
        count(metrics, &history.store, evicted);
        Some(StoredPublish {
            delivered,
            offset: appended.offset(),
            epoch: history.epoch().to_string(),
            positioned,
        })
    }

    /// `SUB <topic> <position>`: reads history and joins the topic at one
    /// instant (the directory's write lock), so that what it replays and
    /// what reaches it live meet with nothing missing or twice.
    pub fn subscribe_at(
        &self,
        topic: Name,
        conn: ConnId,
        from: Resume,
    ) -> Result<Subscribed, HistoryRefusal> {
        let history = self.history_of(&topic).ok_or(HistoryRefusal::NoHistory)?;
        let metrics = self.metrics();
        let recover_max = history.settings.recover_max;
        let mut dir = self.write();
        let started = Instant::now();
        let after = match &from {
            Resume::After(position) if position.epoch == *history.epoch() => Some(position.offset),
            _ => None,
        };
        // Infallible for the in-memory store.
        let read = match after {
            Some(offset) => history
                .store
                .read_after(&topic, offset, recover_max + 1, started),
            None => history.store.newest(&topic, 0, started),
        };
        let (read, evicted) = read.map_err(|_| HistoryRefusal::Unavailable)?;
        metrics
            .history_read_duration
            .observe(started.elapsed().as_secs_f64());
        count(metrics, &history.store, evicted);
        let replay = match (&from, after) {
            (Resume::Latest, _) => Replay::Latest,
            (Resume::After(_), Some(_)) if read.complete && read.messages.len() <= recover_max => {
                Replay::Recovered(
                    read.messages
                        .iter()
                        .map(|m| positioned_frame(&topic, m.offset, &m.payload))
                        .collect(),
                )
            }
            (Resume::After(_), _) => Replay::Lost,
        };
        dir.subscribe_positioned(topic, conn);
        self.update_gauges(&dir);
        drop(dir);
        metrics.recoveries.inc(match &replay {
            Replay::Latest => RecoveryResult::Latest,
            Replay::Recovered(_) => RecoveryResult::Recovered,
            Replay::Lost => RecoveryResult::Lost,
        });
        if let Replay::Recovered(frames) = &replay {
            metrics.recovered_messages.inc_by(frames.len() as u64);
        }
        let newest = Position {
            epoch: history.epoch().clone(),
            offset: read.newest,
        };
        Ok(Subscribed { newest, replay })
    }

    /// `GET /api/v1/topics/{topic}/history`: after `since` (the newest
    /// `limit` without it).
    pub fn history_read(
        &self,
        topic: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<HistoryPage, HistoryReadError> {
        let history = self.history_of(topic).ok_or(HistoryReadError::NoHistory)?;
        let now = Instant::now();
        let read = match since {
            Some(p) if p.epoch == *history.epoch() => {
                history.store.read_after(topic, p.offset, limit, now)
            }
            // Another epoch: nothing of it is held.
            Some(_) => {
                history
                    .store
                    .read_after(topic, u64::MAX, 0, now)
                    .map(|(mut read, evicted)| {
                        read.complete = false;
                        (read, evicted)
                    })
            }
            None => history.store.newest(topic, limit, now),
        };
        let Ok((read, evicted)) = read else {
            return Err(HistoryReadError::NoHistory);
        };
        self.metrics()
            .history_read_duration
            .observe(now.elapsed().as_secs_f64());
        count(self.metrics(), &history.store, evicted);
        Ok(HistoryPage {
            epoch: history.epoch().to_string(),
            offset: read.newest,
            complete: read.complete,
            messages: read
                .messages
                .into_iter()
                .map(|m| (m.offset, m.payload, history.wall(m.at)))
                .collect(),
        })
    }

    /// `DELETE /api/v1/topics/{topic}/history`.
    pub fn history_delete(&self, topic: &str) -> Result<(), HistoryReadError> {
        let history = self.history_of(topic).ok_or(HistoryReadError::NoHistory)?;
        let evicted = history
            .store
            .delete(topic)
            .map_err(|_| HistoryReadError::NoHistory)?;
        count(self.metrics(), &history.store, evicted);
        Ok(())
    }
}
