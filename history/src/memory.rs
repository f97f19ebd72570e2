//! A single node's history, in memory, under a fresh epoch at every start.
//!
//! Offsets come from one counter shared by every topic, so they increase
//! strictly on each topic (not consecutively), and a topic whose messages
//! all left, and which is forgotten to keep memory flat, goes on above
//! where it was when it comes back.
//!
//! Bounds, all enforced on every append and read:
//! - at most `size` messages per topic (the oldest leaves: `size`);
//! - none older than `ttl` (`ttl`);
//! - at most `max_bytes` in all, counting each message's payload and
//!   [`MESSAGE_OVERHEAD`], each remembered idempotency key's bytes and
//!   [`KEY_OVERHEAD`]: past it the oldest message across topics leaves
//!   (`bytes`), or the oldest key where it is older.
//!
//! Age and the byte bound are kept with one queue in the order of appends,
//! so expiry looks only at what expires, never at every topic; a message
//! that left its topic for `size` leaves a stale entry there, and the queue
//! is compacted once stale entries outnumber live ones, so it stays within
//! twice the messages held.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Appended, Epoch, Evicted, Held, History, HistoryError, Read, Stored};

/// Bytes a held message costs beside its payload: its entry in its topic
/// and in the queue of appends, the payload's own allocation and the
/// queues' spare room. Measured: 211 bytes of resident memory per message
/// of 64 payload bytes (200 000 messages over 10 topics, release build),
/// so 147 beyond the payload; rounded up.
pub const MESSAGE_OVERHEAD: u64 = 160;
/// Bytes a remembered idempotency key costs beside the key itself.
pub const KEY_OVERHEAD: u64 = 96;

/// The bounds of a [`MemoryHistory`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages kept per topic (`--history-size`, at least 1).
    pub size: usize,
    /// How long a message is kept (`--history-ttl`).
    pub ttl: Duration,
    /// What history may hold in all (`--history-max-bytes`).
    pub max_bytes: u64,
    /// How long an idempotency key is remembered.
    pub key_window: Duration,
}

/// One topic's history.
#[derive(Default)]
struct Topic {
    messages: VecDeque<Stored>,
    /// Every offset up to this one that was on the topic has left history.
    lost_upto: u64,
    /// Idempotency keys seen within the window, with their offset.
    keys: HashMap<Box<str>, u64>,
}

/// An append, in the order of appends (or a key, in the order of keys).
struct Entry {
    topic: Arc<str>,
    offset: u64,
    at: Instant,
}

struct KeyEntry {
    topic: Arc<str>,
    key: Box<str>,
    at: Instant,
}

#[derive(Default)]
struct Store {
    topics: HashMap<Arc<str>, Topic>,
    /// The last offset handed out, on any topic.
    last: u64,
    /// The highest `lost_upto` of a topic that was forgotten.
    forgotten_upto: u64,
    appends: VecDeque<Entry>,
    /// Entries of `appends` whose message already left.
    stale: usize,
    keys: VecDeque<KeyEntry>,
    /// Counted against `max_bytes`.
    cost: u64,
    held: Held,
}

/// A single node's history; see the module doc.
pub struct MemoryHistory {
    epoch: Epoch,
    limits: Limits,
    store: Mutex<Store>,
}

impl MemoryHistory {
    /// An empty history named `epoch` (fresh for each run of the process).
    pub fn new(epoch: Epoch, limits: Limits) -> MemoryHistory {
        MemoryHistory {
            epoch,
            limits: Limits {
                size: limits.size.max(1),
                ..limits
            },
            store: Mutex::new(Store::default()),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding it cannot leave it half-updated in a way
        // that matters more than stopping history would.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// Removes the oldest message of `topic` (its front), for `why`.
    fn drop_front(&mut self, topic: &Arc<str>, why: &mut u64) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let Some(message) = t.messages.pop_front() else {
            return false;
        };
        t.lost_upto = t.lost_upto.max(message.offset);
        self.cost -= MESSAGE_OVERHEAD + message.payload.len() as u64;
        self.held.messages -= 1;
        self.held.bytes -= message.payload.len() as u64;
        *why += 1;
        self.forget_if_empty(topic);
        true
    }

    /// Forgets a topic that holds nothing, remembering only how far its
    /// offsets were lost.
    fn forget_if_empty(&mut self, topic: &Arc<str>) {
        if let Some(t) = self.topics.get(topic)
            && t.messages.is_empty()
            && t.keys.is_empty()
        {
            self.forgotten_upto = self.forgotten_upto.max(t.lost_upto);
            self.topics.remove(topic);
        }
    }

    /// Whether an entry of `appends` is still its topic's message.
    fn is_live(&self, entry: &Entry) -> bool {
        self.topics
            .get(&entry.topic)
            .and_then(|t| t.messages.front())
            .is_some_and(|front| front.offset <= entry.offset)
    }

    /// Drops the oldest append if its message is still held (for `why`);
    /// false when there is none.
    fn drop_oldest(&mut self, why: &mut u64) -> bool {
        while let Some(entry) = self.appends.pop_front() {
            if self.is_live(&entry) {
                return self.drop_front(&entry.topic, why);
            }
            self.stale -= 1;
        }
        false
    }

    fn drop_oldest_key(&mut self) -> bool {
        let Some(entry) = self.keys.pop_front() else {
            return false;
        };
        self.cost -= KEY_OVERHEAD + entry.key.len() as u64;
        if let Some(t) = self.topics.get_mut(&entry.topic) {
            t.keys.remove(&entry.key);
        }
        self.forget_if_empty(&entry.topic);
        true
    }

    /// Applies the age bounds as of `now`.
    fn expire(&mut self, limits: &Limits, now: Instant, evicted: &mut Evicted) {
        while let Some(entry) = self.appends.front() {
            if now.saturating_duration_since(entry.at) < limits.ttl {
                break;
            }
            self.drop_oldest(&mut evicted.ttl);
        }
        while let Some(entry) = self.keys.front() {
            if now.saturating_duration_since(entry.at) < limits.key_window {
                break;
            }
            self.drop_oldest_key();
        }
    }

    /// Applies the byte bound, oldest first across messages and keys.
    fn fit(&mut self, limits: &Limits, evicted: &mut Evicted) {
        while self.cost > limits.max_bytes {
            let message_at = self.appends.front().map(|e| e.at);
            let key_at = self.keys.front().map(|e| e.at);
            let dropped = match (message_at, key_at) {
                (Some(m), Some(k)) if k < m => self.drop_oldest_key(),
                (Some(_), _) => self.drop_oldest(&mut evicted.bytes),
                (None, Some(_)) => self.drop_oldest_key(),
                (None, None) => false,
            };
            if !dropped {
                break;
            }
        }
        // Stale entries cost nothing against the bound, but memory: keep
        // them fewer than the live ones.
        if self.stale > 64 && self.stale * 2 > self.appends.len() {
            let mut appends = std::mem::take(&mut self.appends);
            appends.retain(|e| self.is_live(e));
            self.appends = appends;
            self.stale = 0;
        }
    }

    /// Stores `payload` on `topic` (once per idempotency key within the
    /// window) and applies every bound.
    fn append(
        &mut self,
        limits: &Limits,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
        now: Instant,
    ) -> (Appended, Evicted) {
        let mut evicted = Evicted::default();
        self.expire(limits, now, &mut evicted);
        let name: Arc<str> = match self.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => topic.into(),
        };
        if let Some(key) = idempotency_key
            && let Some(&offset) = self.topics.get(topic).and_then(|t| t.keys.get(key))
        {
            return (Appended::Duplicate(offset), evicted);
        }
        self.last += 1;
        let offset = self.last;
        let len = payload.len() as u64;
        self.cost += MESSAGE_OVERHEAD + len;
        self.held.messages += 1;
        self.held.bytes += len;
        let t = self.topics.entry(name.clone()).or_default();
        t.messages.push_back(Stored {
            offset,
            payload,
            at: now,
        });
        let over = t.messages.len() > limits.size;
        if let Some(key) = idempotency_key {
            t.keys.insert(key.into(), offset);
        }
        if let Some(key) = idempotency_key {
            self.cost += KEY_OVERHEAD + key.len() as u64;
            self.keys.push_back(KeyEntry {
                topic: name.clone(),
                key: key.into(),
                at: now,
            });
        }
        self.appends.push_back(Entry {
            topic: name.clone(),
            offset,
            at: now,
        });
        if over {
            self.drop_front(&name, &mut evicted.size);
            self.stale += 1;
        }
        self.fit(limits, &mut evicted);
        (Appended::Stored(offset), evicted)
    }

    fn read(&self, topic: &str, after: u64, limit: usize) -> Read {
        let Some(t) = self.topics.get(topic) else {
            return Read {
                newest: self.forgotten_upto,
                complete: after >= self.forgotten_upto,
                messages: Vec::new(),
            };
        };
        let newest = t.messages.back().map_or(t.lost_upto, |m| m.offset);
        let start = t.messages.partition_point(|m| m.offset <= after);
        Read {
            newest,
            complete: after >= t.lost_upto && after <= newest,
            messages: t.messages.range(start..).take(limit).cloned().collect(),
        }
    }
}

impl MemoryHistory {
    /// [`History::append`], then `then` with what it did, both under the
    /// store's lock: the caller's delivery of the message happens before
    /// any later append, so every subscriber sees a topic's messages in
    /// offset order.
    pub fn append_then<R>(
        &self,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
        now: Instant,
        then: impl FnOnce(Appended, &Bytes) -> R,
    ) -> (R, Appended, Evicted) {
        let mut store = self.store();
        let (appended, evicted) =
            store.append(&self.limits, topic, payload.clone(), idempotency_key, now);
        (then(appended, &payload), appended, evicted)
    }
}

impl History for MemoryHistory {
    fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    fn append(
        &self,
        topic: &str,
        payload: Bytes,
        idempotency_key: Option<&str>,
        now: Instant,
    ) -> Result<(Appended, Evicted), HistoryError> {
        Ok(self
            .store()
            .append(&self.limits, topic, payload, idempotency_key, now))
    }

    fn read_after(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
        now: Instant,
    ) -> Result<(Read, Evicted), HistoryError> {
        let mut evicted = Evicted::default();
        let mut store = self.store();
        store.expire(&self.limits, now, &mut evicted);
        Ok((store.read(topic, after, limit), evicted))
    }

    fn newest(
        &self,
        topic: &str,
        limit: usize,
        now: Instant,
    ) -> Result<(Read, Evicted), HistoryError> {
        let mut evicted = Evicted::default();
        let mut store = self.store();
        store.expire(&self.limits, now, &mut evicted);
        let mut read = store.read(topic, u64::MAX, 0);
        if let Some(t) = store.topics.get(topic) {
            let skip = t.messages.len().saturating_sub(limit);
            read.messages = t.messages.range(skip..).cloned().collect();
        }
        read.complete = true;
        Ok((read, evicted))
    }

    fn delete(&self, topic: &str) -> Result<Evicted, HistoryError> {
        let mut evicted = Evicted::default();
        let mut store = self.store();
        let Some((name, _)) = store.topics.get_key_value(topic) else {
            return Ok(evicted);
        };
        let name = name.clone();
        let mut deleted = 0;
        while store.drop_front(&name, &mut deleted) {
            store.stale += 1;
        }
        evicted.deleted = deleted;
        // Every position so far is lost here, the newest included: the
        // delete takes an offset of its own, which no message will have,
        // and the topic's offsets go on above it.
        store.last += 1;
        let last = store.last;
        match store.topics.get_mut(&name) {
            Some(t) => t.lost_upto = last,
            None => store.forgotten_upto = store.forgotten_upto.max(last),
        }
        Ok(evicted)
    }

    fn held(&self) -> Held {
        self.store().held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn history(size: usize, ttl_secs: u64, max_bytes: u64) -> MemoryHistory {
        MemoryHistory::new(
            Epoch::fresh(7),
            Limits {
                size,
                ttl: SECOND * ttl_secs as u32,
                max_bytes,
                key_window: SECOND * 120,
            },
        )
    }

    fn append(h: &MemoryHistory, topic: &str, payload: &str, now: Instant) -> (u64, Evicted) {
        let (appended, evicted) = h
            .append(topic, Bytes::copy_from_slice(payload.as_bytes()), None, now)
            .expect("append");
        (appended.offset(), evicted)
    }

    fn payloads(read: &Read) -> Vec<&[u8]> {
        read.messages.iter().map(|m| &m.payload[..]).collect()
    }

    #[test]
    fn offsets_increase_on_each_topic_and_reads_start_after_a_position() {
        let h = history(10, 300, 1 << 20);
        let now = Instant::now();
        let a1 = append(&h, "a", "a1", now).0;
        let b1 = append(&h, "b", "b1", now).0;
        let a2 = append(&h, "a", "a2", now).0;
        assert!(a1 < a2 && a1 >= 1 && b1 >= 1);
        let (read, _) = h.read_after("a", 0, 10, now).expect("read");
        assert_eq!((read.newest, read.complete), (a2, true));
        assert_eq!(payloads(&read), [&b"a1"[..], b"a2"]);
        let (read, _) = h.read_after("a", a1, 10, now).expect("read");
        assert_eq!(payloads(&read), [&b"a2"[..]]);
        let (read, _) = h.read_after("a", a2, 10, now).expect("read");
        assert!(read.complete && read.messages.is_empty());
        // A limit cuts the oldest first.
        let (read, _) = h.read_after("a", 0, 1, now).expect("read");
        assert_eq!(payloads(&read), [&b"a1"[..]]);
        // A topic never published on: offset 0, and complete.
        let (read, _) = h.read_after("c", 0, 10, now).expect("read");
        assert_eq!((read.newest, read.complete), (0, true));
    }

    #[test]
    fn past_the_size_the_oldest_of_the_topic_leaves_and_positions_before_it_are_incomplete() {
        let h = history(2, 300, 1 << 20);
        let now = Instant::now();
        let offsets: Vec<u64> = (0..4)
            .map(|i| append(&h, "t", &format!("m{i}"), now).0)
            .collect();
        let (read, _) = h.read_after("t", offsets[1], 10, now).expect("read");
        assert!(read.complete);
        assert_eq!(payloads(&read), [&b"m2"[..], b"m3"]);
        let (read, _) = h.read_after("t", offsets[0], 10, now).expect("read");
        assert!(!read.complete, "m1 left: a recovery from m0 is lost");
        let (_, evicted) = append(&h, "t", "m4", now);
        assert_eq!(evicted.size, 1);
        assert_eq!(h.held().messages, 2);
    }

    #[test]
    fn messages_older_than_the_ttl_leave_without_a_scan_of_every_topic() {
        let h = history(100, 10, 1 << 20);
        let start = Instant::now();
        let old = append(&h, "a", "old", start).0;
        append(&h, "b", "other", start);
        let later = start + SECOND * 6;
        let fresh = append(&h, "a", "fresh", later).0;
        let (read, evicted) = h.read_after("a", 0, 10, start + SECOND * 11).expect("read");
        assert_eq!(evicted.ttl, 2, "the two of the first second");
        assert_eq!(payloads(&read), [&b"fresh"[..]]);
        assert!(!read.complete);
        let (read, _) = h
            .read_after("a", old, 10, start + SECOND * 11)
            .expect("read");
        assert!(read.complete);
        let (read, evicted) = h
            .read_after("a", old, 10, start + SECOND * 17)
            .expect("read");
        assert_eq!((evicted.ttl, read.newest, read.complete), (1, fresh, false));
        assert_eq!(h.held(), Held::default());
    }

    #[test]
    fn past_max_bytes_the_oldest_across_topics_leaves() {
        let one = MESSAGE_OVERHEAD + 10;
        let h = history(100, 300, one * 3);
        let now = Instant::now();
        let first = append(&h, "a", "0123456789", now).0;
        append(&h, "b", "0123456789", now + SECOND);
        append(&h, "a", "0123456789", now + SECOND * 2);
        let (_, evicted) = append(&h, "c", "0123456789", now + SECOND * 3);
        assert_eq!(evicted.bytes, 1);
        assert_eq!(
            h.held(),
            Held {
                messages: 3,
                bytes: 30
            }
        );
        let (read, _) = h.read_after("a", 0, 10, now).expect("read");
        assert!(!read.complete);
        let (read, _) = h.read_after("a", first, 10, now).expect("read");
        assert!(read.complete && read.messages.len() == 1);
    }

    #[test]
    fn memory_stays_flat_under_any_publish_load() {
        // One hot topic of size 1 and a crowd of topics published once.
        let h = history(1, 300, 64 * 1024);
        let now = Instant::now();
        for i in 0..100_000u32 {
            append(&h, "hot", "x", now);
            append(&h, &format!("t{i}"), "y", now);
        }
        let store = h.store();
        let held = store.held.messages as usize;
        assert!(store.cost <= 64 * 1024);
        assert!(
            store.topics.len() <= held + 1,
            "{} topics",
            store.topics.len()
        );
        assert!(
            store.appends.len() <= 2 * held + 65,
            "{} entries",
            store.appends.len()
        );
    }

    #[test]
    fn an_idempotency_key_stores_once_within_its_window() {
        let h = history(10, 1000, 1 << 20);
        let now = Instant::now();
        let (first, _) = h
            .append("t", Bytes::from_static(b"p"), Some("k1"), now)
            .expect("append");
        let (again, _) = h
            .append("t", Bytes::from_static(b"p"), Some("k1"), now + SECOND * 60)
            .expect("append");
        assert_eq!(again, Appended::Duplicate(first.offset()));
        // The same key on another topic is another message.
        let (other, _) = h
            .append("u", Bytes::from_static(b"p"), Some("k1"), now)
            .expect("append");
        assert!(matches!(other, Appended::Stored(_)));
        // Past the window it is a new message.
        let (late, _) = h
            .append(
                "t",
                Bytes::from_static(b"p"),
                Some("k1"),
                now + SECOND * 121,
            )
            .expect("append");
        assert!(matches!(late, Appended::Stored(o) if o > first.offset()));
        assert_eq!(h.held().messages, 3);
    }

    #[test]
    fn a_delete_loses_every_position_before_it_and_offsets_go_on() {
        let h = history(10, 300, 1 << 20);
        let now = Instant::now();
        let a = append(&h, "t", "a", now).0;
        let evicted = h.delete("t").expect("delete");
        assert_eq!(evicted.deleted, 1);
        let (read, _) = h.read_after("t", a, 10, now).expect("read");
        assert!(!read.complete, "a position from before the delete is lost");
        let b = append(&h, "t", "b", now).0;
        assert!(b > a);
        let (read, _) = h.read_after("t", b, 10, now).expect("read");
        assert!(read.complete);
    }

    #[test]
    fn a_forgotten_topic_goes_on_above_where_it_was() {
        let h = history(1, 10, 1 << 20);
        let now = Instant::now();
        let a = append(&h, "t", "a", now).0;
        // Expired, then forgotten.
        let (read, _) = h.read_after("t", a, 10, now + SECOND * 11).expect("read");
        assert!(read.newest >= a);
        assert!(h.store().topics.is_empty());
        let b = append(&h, "t", "b", now + SECOND * 12).0;
        assert!(b > a);
        let (read, _) = h
            .read_after("t", read.newest, 10, now + SECOND * 12)
            .expect("read");
        assert!(read.complete);
        assert_eq!(payloads(&read), [&b"b"[..]]);
    }

    #[test]
    fn the_newest_messages_oldest_first() {
        let h = history(10, 300, 1 << 20);
        let now = Instant::now();
        for i in 0..5 {
            append(&h, "t", &format!("m{i}"), now);
        }
        let (read, _) = h.newest("t", 2, now).expect("newest");
        assert!(read.complete);
        assert_eq!(payloads(&read), [&b"m3"[..], b"m4"]);
        let (read, _) = h.newest("none", 2, now).expect("newest");
        assert_eq!((read.newest, read.messages.len()), (0, 0));
    }
}
