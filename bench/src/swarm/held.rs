//! A held connection: a logged-in user whose socket a reader task drains.
//! The reader keeps the broadcast checks itself (the `PUSH b` frames, in
//! [`Tally`]), so tens of thousands of connections cost one small task
//! each; every other frame, and the end of the stream, go to the
//! connection's owner as [`Event`]s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame::{FrameReader, Framing};
use crate::scenario::{Client, ReadHalf, WriteHalf};
use crate::stats::LatencySink;

/// The highest broadcast producer id a reader keeps a sequence for.
const MAX_PRODUCERS: usize = 1024;

/// What a connection's reader passes on.
#[derive(Debug)]
pub enum Event {
    /// A frame other than a broadcast.
    Frame(Bytes),
    /// The stream ended (EOF, an error); nothing follows.
    Closed(String),
}

/// Broadcast deliveries to every connection of this process.
#[derive(Debug)]
pub struct Tally {
    /// `PUSH b` frames read.
    pub received: AtomicU64,
    /// Those whose sequence number was at least the next one expected from
    /// their producer on their connection (a gap counts as missing later).
    pub in_order: AtomicU64,
    /// Those below it: out of order, or repeated.
    pub reordered: AtomicU64,
    /// `PUSH b` frames that do not parse.
    pub malformed: AtomicU64,
    /// Unix time of the first and the last delivery, in nanoseconds.
    pub first_ns: AtomicU64,
    /// See `first_ns`.
    pub last_ns: AtomicU64,
    /// From the time in the payload (when the broadcast was posted) to its
    /// arrival.
    pub latency: LatencySink,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            received: AtomicU64::new(0),
            in_order: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            latency: LatencySink::new(),
        }
    }
}

impl Tally {
    /// Back to zero, for the next round of broadcasts.
    pub fn reset(&self) {
        for a in [
            &self.received,
            &self.in_order,
            &self.reordered,
            &self.malformed,
            &self.last_ns,
        ] {
            a.store(0, Ordering::Release);
        }
        self.first_ns.store(u64::MAX, Ordering::Release);
        self.latency.reset();
    }
}

/// A logged-in connection.
pub struct Held {
    /// Its user.
    pub user: String,
    /// Its number in the run (user `u<n>` is number `n`).
    pub number: u64,
    /// It subscribed to its own topic.
    pub subscribed: bool,
    wr: WriteHalf,
    events: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Held {
    /// Hands `client`'s reading to a task.
    pub fn new(user: String, number: u64, client: Client, tally: Arc<Tally>) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let Client { rd, wr, .. } = client;
        let reader = tokio::spawn(read(rd, tx, tally));
        Self {
            user,
            number,
            subscribed: false,
            wr,
            events,
            reader,
        }
    }

    /// Sends one frame (lines framing).
    pub async fn send(&mut self, frame: &[u8]) -> Result<()> {
        let mut out = BytesMut::with_capacity(frame.len() + 1);
        Framing::Lines.encode(frame, &mut out);
        self.wr.write_all(&out).await?;
        Ok(())
    }

    /// The next event within `within`, which must be a frame starting with
    /// `prefix`.
    pub async fn expect(&mut self, prefix: &[u8], within: Duration) -> Result<Bytes> {
        match tokio::time::timeout(within, self.events.recv()).await {
            Err(_) => bail!(
                "{}: no {:?} within {within:?}",
                self.user,
                String::from_utf8_lossy(prefix)
            ),
            Ok(None) => bail!("{}: the reader stopped", self.user),
            Ok(Some(Event::Closed(why))) => bail!("{}: the connection ended ({why})", self.user),
            Ok(Some(Event::Frame(f))) if f.starts_with(prefix) => Ok(f),
            Ok(Some(Event::Frame(f))) => bail!(
                "{}: expected {:?}, got {:?}",
                self.user,
                String::from_utf8_lossy(prefix),
                String::from_utf8_lossy(&f[..f.len().min(200)])
            ),
        }
    }

    /// The next event, waiting at most `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Events already there, without waiting.
    pub fn pending(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

/// Now, as nanoseconds since the Unix epoch: the clock every process of
/// the run shares.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn read(mut rd: FrameReader<ReadHalf>, tx: mpsc::UnboundedSender<Event>, tally: Arc<Tally>) {
    let mut next: Vec<u64> = Vec::new();
    let mut samples: Vec<u64> = Vec::new();
    loop {
        match rd.fill().await {
            Ok(0) => {
                let _ = tx.send(Event::Closed("EOF".to_owned()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::Closed(format!("read: {e}")));
                return;
            }
            Ok(_) => {}
        }
        let now = unix_ns();
        loop {
            match rd.try_frame() {
                Ok(Some(f)) => match f.strip_prefix(b"PUSH b ") {
                    Some(rest) => {
                        broadcast(rest, now, &mut next, &tally, &mut samples);
                    }
                    None => {
                        let _ = tx.send(Event::Frame(f));
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Event::Closed(format!("frame: {e}")));
                    return;
                }
            }
        }
        if !samples.is_empty() {
            tally.latency.add(&samples);
            tally.first_ns.fetch_min(now, Ordering::AcqRel);
            tally.last_ns.fetch_max(now, Ordering::AcqRel);
            samples.clear();
        }
    }
}

/// One `PUSH b <producer> <seq> <posted-unix-ns>`.
fn broadcast(rest: &[u8], now: u64, next: &mut Vec<u64>, tally: &Tally, samples: &mut Vec<u64>) {
    tally.received.fetch_add(1, Ordering::AcqRel);
    let Some((p, seq, posted)) = parse(rest).filter(|(p, _, _)| *p < MAX_PRODUCERS) else {
        tally.malformed.fetch_add(1, Ordering::AcqRel);
        return;
    };
    if next.len() <= p {
        next.resize(p + 1, 0);
    }
    if seq >= next[p] {
        next[p] = seq + 1;
        tally.in_order.fetch_add(1, Ordering::AcqRel);
    } else {
        tally.reordered.fetch_add(1, Ordering::AcqRel);
    }
    samples.push(now.saturating_sub(posted) / 1000);
}

/// `<producer> <seq> <ns>` as numbers.
fn parse(rest: &[u8]) -> Option<(usize, u64, u64)> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut it = text.split(' ');
    let p = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let ns = it.next()?.parse().ok()?;
    it.next().is_none().then_some((p, seq, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_are_checked_per_producer() {
        let tally = Tally::default();
        let mut next = Vec::new();
        let mut samples = Vec::new();
        for frame in ["0 0 5", "1 0 5", "0 1 5", "0 3 5", "0 2 5", "x"] {
            broadcast(frame.as_bytes(), 2005, &mut next, &tally, &mut samples);
        }
        assert_eq!(tally.received.load(Ordering::Acquire), 6);
        // 0:0, 1:0, 0:1, 0:3 (one missing before it), then 0:2 late.
        assert_eq!(tally.in_order.load(Ordering::Acquire), 4);
        assert_eq!(tally.reordered.load(Ordering::Acquire), 1);
        assert_eq!(tally.malformed.load(Ordering::Acquire), 1);
        assert_eq!(samples, vec![2; 5]);
        assert_eq!(parse(b"1 2 3 4"), None);
    }
}
