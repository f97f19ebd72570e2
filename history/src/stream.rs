//! A cluster's history: one JetStream stream, `<prefix>_history`, shared
//! by every node (docs/protocol.md section 13, docs/history.md "In a
//! cluster").
//!
//! The stream sequence is the offset, so the same message has the same
//! offset on every node; the stream's creation time names the epoch, so
//! the epoch survives node and NATS restarts (with its store) and changes
//! only when the stream is created anew. Each topic is one subject,
//! `<prefix>.history.<topic>` (a topic's dots written `%2E`, as on the
//! cluster's other subjects). The stream republishes every stored message
//! on `<prefix>.hfeed.<topic>` with its sequence and the previous sequence
//! on its subject: that is how the nodes deliver it (`gateway-cluster`).
//!
//! Whether history still holds every message after a position is decided
//! from what the stream says, without a scan ([`continuous`]): messages
//! leave a stream only from its head (age, bytes), from the head of their
//! own subject (the per-subject bound), or all at once (a delete, after
//! which a marker is stored on the subject).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::{Appended, Epoch, HistoryError, Limits};

/// The header that marks a delete on a subject (its value `deleted`).
pub const MARKER_HEADER: &str = "Gateway-History";
/// How long an idempotency key is remembered by the stream.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A message read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its offset (stream sequence).
    pub offset: u64,
    /// The payload, as published.
    pub payload: Bytes,
    /// When the stream stored it.
    pub published_at: SystemTime,
}

/// What a read after a position found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    /// The epoch the stream has now.
    pub epoch: Epoch,
    /// The newest offset on the topic as the read saw it.
    pub newest: u64,
    /// Whether the stream still held every message after the position.
    pub complete: bool,
    /// Messages after the position, oldest first (delete markers left
    /// out), at most the limit.
    pub messages: Vec<Entry>,
    /// Messages after the position on the topic when the read began,
    /// markers included.
    pub after: u64,
}

/// Why the stream could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The stream exists with other limits than the flags say.
    #[error("{0}")]
    Mismatch(String),
    /// JetStream did not answer, or refused.
    #[error("JetStream: {0}")]
    Unavailable(String),
}

/// What the stream decides from, for a read after `after` on one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// The position's offset.
    pub after: u64,
    /// Whether the message at `after` is still held on this subject.
    pub after_held: bool,
    /// The stream's oldest sequence still held (its head).
    pub first_seq: u64,
    /// Messages held on the subject after `after`, markers included.
    pub found: u64,
    /// `--history-size`: the per-subject bound.
    pub size: u64,
    /// A delete marker among them.
    pub marker: bool,
}

/// Whether the stream still holds every message after `after`.
///
/// - A delete after `after` stores a marker behind the purge: one found
///   means messages after the position were deleted.
/// - The message at `after` still held: nothing after it left, since
///   messages leave a subject oldest first.
/// - Otherwise nothing after `after` left by age or bytes when the
///   stream's head is at most one past it, and nothing left for the
///   per-subject bound when fewer than `size` are held after it (a
///   message leaves for that bound only when `size` newer ones are held,
///   and those newer ones could not have left since).
pub fn continuous(e: Evidence) -> bool {
    if e.marker {
        return false;
    }
    if e.after_held {
        return true;
    }
    e.after.saturating_add(1) >= e.first_seq && e.found < e.size
}

/// The history stream of one cluster, as one node sees it.
#[derive(Clone)]
pub struct StreamHistory {
    js: jetstream::Context,
    name: String,
    prefix: String,
    limits: Limits,
    replicas: usize,
}

/// A topic as one subject token: dots, which would split it, as `%2E`.
fn token(topic: &str) -> String {
    topic.replace('.', "%2E")
}

fn unavailable(err: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(err.to_string())
}

fn created_epoch(created: time::OffsetDateTime) -> Epoch {
    Epoch::fresh(created.unix_timestamp_nanos().max(0) as u128)
}

impl StreamHistory {
    /// The stream of the cluster under `prefix`; every request is bounded
    /// by `timeout`.
    pub fn new(
        client: async_nats::Client,
        prefix: &str,
        limits: Limits,
        replicas: usize,
        timeout: Duration,
    ) -> StreamHistory {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        StreamHistory {
            js,
            name: format!("{}_history", prefix.replace('.', "_")),
            prefix: prefix.to_owned(),
            limits,
            replicas,
        }
    }

    /// Where `topic`'s messages are stored.
    pub fn subject(&self, topic: &str) -> String {
        format!("{}.history.{}", self.prefix, token(topic))
    }

    /// Where the stream republishes `topic`'s messages.
    pub fn feed_subject(&self, topic: &str) -> String {
        format!("{}.hfeed.{}", self.prefix, token(topic))
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}.history.>", self.prefix)],
            max_messages_per_subject: self.limits.size as i64,
            max_age: self.limits.ttl,
            max_bytes: self.limits.max_bytes as i64,
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: DUPLICATE_WINDOW,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: format!("{}.history.>", self.prefix),
                destination: format!("{}.hfeed.>", self.prefix),
                headers_only: false,
            }),
            ..Default::default()
        }
    }

    /// The first difference between the stream's limits and the flags'.
    fn difference(&self, found: &stream::Config) -> Option<String> {
        let want = self.config();
        let name = &self.name;
        // Each limit as the stream says it, the flag that sets it, and the
        // flag's value written the same way.
        let limits = [
            (
                "max_msgs_per_subject",
                "--history-size",
                found.max_messages_per_subject.to_string(),
                want.max_messages_per_subject.to_string(),
            ),
            (
                "max_age",
                "--history-ttl",
                format!("{}s", found.max_age.as_secs()),
                format!("{}s", want.max_age.as_secs()),
            ),
            (
                "max_bytes",
                "--history-max-bytes",
                found.max_bytes.to_string(),
                want.max_bytes.to_string(),
            ),
            (
                "replicas",
                "--history-replicas",
                found.num_replicas.to_string(),
                want.num_replicas.to_string(),
            ),
        ];
        if let Some((what, flag, has, says)) = limits.iter().find(|(_, _, has, says)| has != says) {
            return Some(format!(
                "history stream {name} has {what} {has}, but {flag} says {says}"
            ));
        }
        if found.subjects != want.subjects || found.republish != want.republish {
            return Some(format!(
                "history stream {name} has subjects {:?} and republish {:?}, not what the gateway \
                 makes ({:?} republished to {:?}): delete it or use another --nats-subject-prefix",
                found.subjects,
                found.republish.as_ref().map(|r| &r.destination),
                want.subjects,
                want.republish.as_ref().map(|r| &r.destination),
            ));
        }
        None
    }

    /// Makes the stream if it is missing, checks its limits if it is
    /// there, and says its epoch.
    pub async fn ensure(&self) -> Result<Epoch, SetupError> {
        for _ in 0..2 {
            match self.js.get_stream(&self.name).await {
                Ok(mut found) => {
                    let info = found
                        .info()
                        .await
                        .map_err(|e| SetupError::Unavailable(e.to_string()))?;
                    if let Some(difference) = self.difference(&info.config) {
                        return Err(SetupError::Mismatch(difference));
                    }
                    return Ok(created_epoch(info.created));
                }
                Err(err) if is_not_found(&err) => {
                    match self.js.create_stream(self.config()).await {
                        Ok(mut made) => {
                            let info = made
                                .info()
                                .await
                                .map_err(|e| SetupError::Unavailable(e.to_string()))?;
                            return Ok(created_epoch(info.created));
                        }
                        // Another node made it meanwhile: look again.
                        Err(err) if err.to_string().contains("already in use") => continue,
                        Err(err) => return Err(SetupError::Unavailable(err.to_string())),
                    }
                }
                Err(err) => return Err(SetupError::Unavailable(err.to_string())),
            }
        }
        Err(SetupError::Unavailable(
            "the stream was made and removed while starting".into(),
        ))
    }

    /// The stream's epoch and state now.
    pub async fn state(&self) -> Result<(Epoch, stream::State), HistoryError> {
        let info = self
            .js
            .get_stream_no_info(&self.name)
            .await
            .map_err(unavailable)?
            .get_info()
            .await
            .map_err(unavailable)?;
        Ok((created_epoch(info.created), info.state))
    }

    /// Stores `payload` on `topic`, once per `idempotency_key` within
    /// [`DUPLICATE_WINDOW`]; answers once the stream has it.
    pub async fn append(
        &self,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, HistoryError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = idempotency_key {
            // The stream's window is stream-wide; a key is per topic.
            let id = format!("{}/{key}", token(topic));
            headers.insert("Nats-Msg-Id", HeaderValue::from(id.as_str()));
        }
        let missing = |err: jetstream::context::PublishError| match err.kind() {
            jetstream::context::PublishErrorKind::StreamNotFound => HistoryError::StreamMissing,
            _ => unavailable(err),
        };
        let ack = self
            .js
            .publish_with_headers(self.subject(topic), headers, payload)
            .await
            .map_err(missing)?
            .await
            .map_err(missing)?;
        Ok(if ack.duplicate {
            Appended::Duplicate(ack.sequence)
        } else {
            Appended::Stored(ack.sequence)
        })
    }

    /// The newest offset on `topic`. A topic with nothing held answers 0
    /// while the stream has never let a message go (then nothing was ever
    /// published on it), else the stream's last sequence: any later
    /// message on the topic is above it, and a recovery from it is
    /// decided by [`continuous`].
    pub async fn newest(&self, topic: &str) -> Result<(Epoch, u64), HistoryError> {
        let stream = self
            .js
            .get_stream_no_info(&self.name)
            .await
            .map_err(unavailable)?;
        let (epoch, state) = self.state().await?;
        match stream
            .get_last_raw_message_by_subject(&self.subject(topic))
            .await
        {
            Ok(message) => Ok((epoch, message.sequence)),
            Err(err) if err.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                let never_lost = state.first_sequence <= 1;
                Ok((epoch, if never_lost { 0 } else { state.last_sequence }))
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// The messages after offset `after` on `topic`, at most `limit`, and
    /// whether the stream held every one of them. With `all_or_none`, none
    /// are read where more than `limit` are held (a recovery that would be
    /// `LOST` anyway reads nothing).
    pub async fn read_after(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
        all_or_none: bool,
    ) -> Result<StreamRead, HistoryError> {
        let subject = self.subject(topic);
        let stream = self
            .js
            .get_stream_no_info(&self.name)
            .await
            .map_err(unavailable)?;
        let held = async {
            if after == 0 {
                return Ok(false);
            }
            match stream.get_raw_message(after).await {
                Ok(message) => Ok(message.subject.as_str() == subject),
                Err(err) if err.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(false),
                Err(err) => Err(unavailable(err)),
            }
        };
        let reader = stream.create_consumer(consumer::pull::Config {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after.saturating_add(1),
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        });
        let (state, held, reader) = tokio::join!(self.state(), held, reader);
        let ((epoch, state), after_held) = (state?, held?);
        let reader = reader.map_err(unavailable)?;
        let found = reader.cached_info().num_pending;
        let wanted = match all_or_none && found as usize > limit {
            true => 0,
            false => (found as usize).min(limit),
        };
        let mut messages = Vec::with_capacity(wanted);
        let mut marker = false;
        let mut newest = after;
        let mut seen = 0usize;
        if wanted > 0 {
            let mut batch = reader
                .batch()
                .max_messages(wanted)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(unavailable)?;
            while seen < wanted {
                let Some(message) = batch.next().await else {
                    break;
                };
                let message = message.map_err(unavailable)?;
                let info = message.info().map_err(unavailable)?;
                let offset = info.stream_sequence;
                let published_at = SystemTime::from(info.published);
                seen += 1;
                newest = newest.max(offset);
                let is_marker = message
                    .message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(MARKER_HEADER))
                    .is_some();
                if is_marker {
                    marker = true;
                    continue;
                }
                messages.push(Entry {
                    offset,
                    payload: message.message.payload.clone(),
                    published_at,
                });
            }
        }
        let name = reader.cached_info().name.clone();
        let remover = stream.clone();
        // The reader goes in the background (it also expires on its own).
        tokio::spawn(async move {
            let _ = remover.delete_consumer(&name).await;
        });
        if seen < wanted {
            return Err(HistoryError::Unavailable(
                "the stream sent fewer messages than it holds".into(),
            ));
        }
        if found as usize > wanted || found == 0 {
            // The newest is past what was read (or nothing was): ask.
            newest = newest.max(self.newest(topic).await?.1);
        }
        let complete = continuous(Evidence {
            after,
            after_held,
            first_seq: state.first_sequence,
            found,
            size: self.limits.size as u64,
            marker,
        });
        Ok(StreamRead {
            epoch,
            newest,
            complete,
            messages,
            after: found,
        })
    }

    /// Drops every message of `topic`, then stores a marker, so that a
    /// position from before the delete recovers as lost and offsets go on
    /// increasing.
    pub async fn delete(&self, topic: &str) -> Result<(), HistoryError> {
        let subject = self.subject(topic);
        let stream = self
            .js
            .get_stream_no_info(&self.name)
            .await
            .map_err(unavailable)?;
        stream.purge().filter(&subject).await.map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        headers.insert(MARKER_HEADER, "deleted");
        self.js
            .publish_with_headers(subject, headers, Bytes::new())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn is_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Evidence {
        Evidence {
            after: 10,
            after_held: false,
            first_seq: 1,
            found: 3,
            size: 100,
            marker: false,
        }
    }

    #[test]
    fn a_held_position_is_continuous_whatever_the_head() {
        let e = Evidence {
            after_held: true,
            first_seq: 50,
            found: 100,
            ..evidence()
        };
        assert!(continuous(e));
    }

    #[test]
    fn a_marker_after_the_position_means_a_delete() {
        let e = Evidence {
            after_held: true,
            marker: true,
            ..evidence()
        };
        assert!(!continuous(e));
    }

    #[test]
    fn a_head_past_the_position_may_have_taken_messages_after_it() {
        assert!(continuous(Evidence {
            first_seq: 11,
            ..evidence()
        }));
        assert!(!continuous(Evidence {
            first_seq: 12,
            ..evidence()
        }));
        // Before the first message, in a stream that never let one go.
        assert!(continuous(Evidence {
            after: 0,
            first_seq: 1,
            ..evidence()
        }));
        assert!(!continuous(Evidence {
            after: 0,
            first_seq: 2,
            ..evidence()
        }));
    }

    #[test]
    fn a_full_subject_may_have_lost_its_oldest_after_the_position() {
        assert!(continuous(Evidence {
            found: 99,
            ..evidence()
        }));
        assert!(!continuous(Evidence {
            found: 100,
            ..evidence()
        }));
    }

    #[test]
    fn a_topic_is_one_subject_token() {
        assert_eq!(token("a.b:c/d"), "a%2Eb:c/d");
    }
}
