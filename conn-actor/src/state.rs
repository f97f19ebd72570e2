//! Per-connection state that outlives a connection: what the pool manager
//! recycles. Everything a client could leave behind lives here, so one
//! `reset` decides what the next client starts with.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pool_manager::Recyclable;

use crate::codec::{FrameCodec, Wrap};
use crate::names::TopicList;

/// Bytes of carried-over input kept across a reset; a larger buffer is freed.
const KEEP_INPUT: usize = 4096;
/// Queue slots taken at once when an empty queue gets a frame: a turn
/// usually queues several, and growing 0, 4, 8, 16 costs three copies.
const FIRST_SLOTS: usize = 8;
/// Subscriptions slots kept across a reset.
const KEEP_TOPICS: usize = 16;
/// Most frames handed to one `writev`.
const MAX_FRAMES: usize = 64;
/// Slices per frame: the wrap's head, the body, the wrap's tail.
const SLICES_PER_FRAME: usize = 3;
/// Frames of at most this many bytes in all are copied into one buffer
/// before they are written: the kernel takes one contiguous buffer with
/// less work than many small slices, and the copy is cheap at this size.
const COALESCE_MAX: usize = 16 * 1024;

thread_local! {
    /// Where each thread coalesces a write (see [`COALESCE_MAX`]).
    static COALESCED: RefCell<Box<[u8]>> = RefCell::new(vec![0; COALESCE_MAX].into_boxed_slice());
}

/// A connection's traffic counters (contract section 7, CONN).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames read.
    pub frames_in: u64,
    /// Frames completely written.
    pub frames_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A connection's recyclable state.
#[derive(Default)]
pub struct ConnState {
    /// The start of a frame whose end has not arrived yet; empty (and
    /// unallocated) between frames.
    pub(crate) partial: BytesMut,
    /// Frames waiting for the socket.
    pub(crate) out: OutQueue,
    /// Topics this connection subscribed to.
    pub(crate) topics: TopicList,
    /// Those of them subscribed with a position (section 13): their
    /// messages carry their offset.
    pub(crate) positioned: TopicList,
    /// Positioned topics whose recovery may overlap what arrives live (a
    /// cluster's): a delivered `MSG <topic>@<offset>` at or below the
    /// offset is one the recovery had already, and is dropped; the entry
    /// goes with the first message above it.
    pub(crate) floors: Vec<(Arc<str>, u64)>,
    /// The user bound by `HELLO`.
    pub(crate) user: Option<Arc<str>>,
    pub(crate) counters: Counters,
}

impl Recyclable for ConnState {
    fn reset(&mut self) -> bool {
        self.partial.clear();
        if self.partial.capacity() > KEEP_INPUT {
            self.partial = BytesMut::new();
        }
        self.out.clear();
        self.topics.clear();
        if self.topics.capacity() > KEEP_TOPICS {
            self.topics = TopicList::new();
        }
        self.positioned.clear();
        if self.positioned.capacity() > KEEP_TOPICS {
            self.positioned = TopicList::new();
        }
        self.floors = Vec::new();
        self.user = None;
        self.counters = Counters::default();
        true
    }

    fn is_pristine(&self) -> bool {
        self.partial.is_empty()
            && self.out.is_empty()
            && self.out.written == 0
            && self.topics.is_empty()
            && self.positioned.is_empty()
            && self.floors.is_empty()
            && self.user.is_none()
            && self.counters == Counters::default()
    }
}

/// Frames queued for the socket, in mailbox order, as unframed bodies: a
/// body shared by many connections is one `Bytes` referenced from each
/// queue, and each connection's codec wraps it only as it is written.
/// Every count here is of wire bytes, the wrap included.
#[derive(Default)]
pub struct OutQueue {
    frames: VecDeque<Bytes>,
    /// Wire bytes of the front frame already written.
    written: usize,
    /// Wire bytes queued and not yet written.
    pending: usize,
}

/// What one write did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes the socket took.
    pub bytes: usize,
    /// Frames that are now written whole.
    pub frames: usize,
}

impl OutQueue {
    /// Queues a frame body behind the others.
    pub fn push(&mut self, codec: &FrameCodec, body: Bytes) {
        self.pending += codec.wire_len(&body);
        if self.frames.capacity() == 0 {
            self.frames.reserve(FIRST_SLOTS);
        }
        self.frames.push_back(body);
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the front frame is partly written, so nothing may be put
    /// before its end.
    pub fn mid_frame(&self) -> bool {
        self.written > 0
    }

    /// Writes as much as `write` takes in one call, handing it up to
    /// [`MAX_FRAMES`] frames at once, each wrapped by `codec` in slices of
    /// its own around the shared body, or as one copied slice when they
    /// are small.
    pub fn write_with(
        &mut self,
        codec: &FrameCodec,
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Written> {
        let mut wraps = [Wrap::NONE; MAX_FRAMES];
        for (wrap, body) in wraps.iter_mut().zip(&self.frames) {
            *wrap = codec.wrap(body);
        }
        let mut slices = [IoSlice::new(&[]); MAX_FRAMES * SLICES_PER_FRAME];
        let mut count = 0;
        for (i, (body, wrap)) in self.frames.iter().zip(&wraps).enumerate() {
            // The front frame may be partly written, wrap included.
            let mut skip = if i == 0 { self.written } else { 0 };
            for part in [wrap.head(), &body[..], wrap.tail()] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                count += 1;
                skip = 0;
            }
        }
        let slices = &slices[..count];
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        let n = if slices.len() > 1 && total <= COALESCE_MAX {
            COALESCED.with_borrow_mut(|buf| {
                let mut at = 0;
                for slice in slices {
                    buf[at..at + slice.len()].copy_from_slice(slice);
                    at += slice.len();
                }
                write(&[IoSlice::new(&buf[..total])])
            })?
        } else {
            write(slices)?
        };
        Ok(self.consume(codec, n))
    }

    fn consume(&mut self, codec: &FrameCodec, mut n: usize) -> Written {
        let mut done = Written {
            bytes: n,
            frames: 0,
        };
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = codec.wire_len(front) - self.written;
            if n >= left {
                n -= left;
                self.written = 0;
                self.frames.pop_front();
                done.frames += 1;
            } else {
                self.written += n;
                n = 0;
            }
        }
        self.release_if_empty();
        done
    }

    /// Drops every queued frame except the rest of a partly written one;
    /// returns how many frames were dropped.
    pub fn drop_whole_frames(&mut self, codec: &FrameCodec) -> usize {
        let keep = usize::from(self.mid_frame());
        let dropped = self.frames.len() - keep;
        let kept_bytes = self
            .frames
            .front()
            .filter(|_| keep == 1)
            .map_or(0, |f| codec.wire_len(f) - self.written);
        self.frames.truncate(keep);
        self.pending = kept_bytes;
        self.release_if_empty();
        dropped
    }

    /// Drops everything, a partly written frame too; returns how many
    /// frames were dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.len();
        self.frames.clear();
        self.written = 0;
        self.pending = 0;
        self.release_if_empty();
        dropped
    }

    /// An idle connection holds no queue storage: an allocation per turn
    /// that queues anything costs less than every idle connection keeping
    /// a few slots.
    fn release_if_empty(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Framing;

    const LINES: FrameCodec = FrameCodec::new(Framing::Lines, 64);
    const LENGTH: FrameCodec = FrameCodec::new(Framing::Length, 64);

    fn queue(codec: &FrameCodec, bodies: &[&'static [u8]]) -> OutQueue {
        let mut q = OutQueue::default();
        for b in bodies {
            q.push(codec, Bytes::from_static(b));
        }
        q
    }

    /// A writer that takes at most `limit` bytes, collecting them.
    fn take(out: &mut Vec<u8>, limit: usize) -> impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize> {
        move |slices| {
            let mut n = 0;
            for s in slices {
                let k = s.len().min(limit - n);
                out.extend_from_slice(&s[..k]);
                n += k;
            }
            Ok(n)
        }
    }

    #[test]
    fn partial_writes_resume_mid_frame_in_order() {
        let mut q = queue(&LINES, &[b"abc", b"de", b"fgh"]);
        assert_eq!(q.pending(), 11);
        let mut out = Vec::new();
        assert_eq!(
            q.write_with(&LINES, take(&mut out, 4)).ok(),
            Some(Written {
                bytes: 4,
                frames: 1
            })
        );
        assert!(!q.mid_frame());
        assert_eq!(
            q.write_with(&LINES, take(&mut out, 1)).ok(),
            Some(Written {
                bytes: 1,
                frames: 0
            })
        );
        assert!(q.mid_frame());
        assert_eq!(q.pending(), 6);
        assert_eq!(
            q.write_with(&LINES, take(&mut out, 100)).ok(),
            Some(Written {
                bytes: 6,
                frames: 2
            })
        );
        assert_eq!(out, b"abc\nde\nfgh\n");
        assert!(q.is_empty());
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn every_split_of_a_write_gives_the_same_wire_bytes() {
        for codec in [LINES, LENGTH] {
            let bodies: [&'static [u8]; 4] = [b"MSG t x", b"", b"PONG", b"KICK admin bye"];
            let whole: Vec<u8> = bodies
                .iter()
                .flat_map(|b| codec.encode(&[b]).to_vec())
                .collect();
            for chunk in [1, 2, 3, 5, 7, 100] {
                let mut q = queue(&codec, &bodies);
                let mut out = Vec::new();
                let mut frames = 0;
                while !q.is_empty() {
                    frames += q
                        .write_with(&codec, take(&mut out, chunk))
                        .map_or(0, |w| w.frames);
                }
                assert_eq!(out, whole, "{:?} in chunks of {chunk}", codec.framing());
                assert_eq!(frames, bodies.len());
            }
        }
    }

    #[test]
    fn small_frames_go_as_one_slice_large_ones_as_their_own() {
        let mut small = queue(&LINES, &[b"PONG a", b"PONG b"]);
        let mut seen = Vec::new();
        small
            .write_with(&LINES, |slices| {
                seen = slices.iter().map(|s| s.to_vec()).collect();
                Ok(slices.iter().map(|s| s.len()).sum())
            })
            .ok();
        assert_eq!(seen, [b"PONG a\nPONG b\n".to_vec()]);

        let big = Bytes::from(vec![b'x'; COALESCE_MAX]);
        let mut large = OutQueue::default();
        large.push(&LINES, Bytes::from_static(b"PONG"));
        large.push(&LINES, big.clone());
        let mut out = Vec::new();
        let mut count = 0;
        let mut slices_in_first_write = 0;
        while !large.is_empty() {
            large
                .write_with(&LINES, |slices| {
                    if count == 0 {
                        slices_in_first_write = slices.len();
                    }
                    count += 1;
                    take(&mut out, 5000)(slices)
                })
                .ok();
        }
        assert_eq!(slices_in_first_write, 4, "PONG, \\n, the body, \\n");
        let mut whole = b"PONG\n".to_vec();
        whole.extend_from_slice(&big);
        whole.push(b'\n');
        assert_eq!(out, whole);
    }

    #[test]
    fn one_body_is_wrapped_for_each_framing() {
        let body = Bytes::from_static(b"MSG t x");
        let mut lines = OutQueue::default();
        let mut length = OutQueue::default();
        lines.push(&LINES, body.clone());
        length.push(&LENGTH, body);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        lines.write_with(&LINES, take(&mut a, 100)).ok();
        length.write_with(&LENGTH, take(&mut b, 100)).ok();
        assert_eq!(a, b"MSG t x\n");
        assert_eq!(b, b"\x00\x00\x00\x07MSG t x");
    }

    #[test]
    fn dropping_keeps_the_rest_of_a_partly_written_frame() {
        let mut q = queue(&LENGTH, &[b"abc", b"de", b"fgh"]);
        let mut out = Vec::new();
        q.write_with(&LENGTH, take(&mut out, 5)).ok();
        assert_eq!(q.drop_whole_frames(&LENGTH), 2);
        assert_eq!(q.pending(), 2);
        q.write_with(&LENGTH, take(&mut out, 100)).ok();
        assert_eq!(out, b"\x00\x00\x00\x03abc");

        let mut q = queue(&LENGTH, &[b"abc", b"de"]);
        assert_eq!(q.drop_whole_frames(&LENGTH), 2);
        assert!(q.is_empty());
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut state = ConnState::default();
        state.partial.extend_from_slice(b"PING ha");
        state.out.push(&LINES, Bytes::from_static(b"MSG t x"));
        state.out.write_with(&LINES, take(&mut Vec::new(), 2)).ok();
        state.topics.push("t".into());
        state.positioned.push("t".into());
        state.user = Some("alice".into());
        state.counters.frames_in = 3;
        assert!(!state.is_pristine());
        assert!(state.reset());
        assert!(state.is_pristine());
        assert_eq!(state.out.pending(), 0);
    }

    #[test]
    fn reset_frees_large_buffers() {
        let mut state = ConnState::default();
        state.partial.reserve(1 << 20);
        state
            .topics
            .extend((0..1000).map(|i| Arc::from(i.to_string())));
        state.reset();
        assert!(state.partial.capacity() <= KEEP_INPUT);
        assert!(state.topics.capacity() <= KEEP_TOPICS);
    }
}
