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
/// Bytes the reply buffer takes at once: a turn's replies to a pipelined
/// client (sixteen `PONG`s with a 64-byte payload are about 1.1 KiB) in one
/// allocation rather than one each.
const REPLY_CHUNK: usize = 2048;
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
            && self.out.holds_nothing()
            && self.topics.is_empty()
            && self.positioned.is_empty()
            && self.floors.is_empty()
            && self.user.is_none()
            && self.counters == Counters::default()
    }
}

/// Frames queued for the socket, in mailbox order. A body shared by many
/// connections is one `Bytes` referenced from each queue, unframed, and
/// each connection's codec wraps it only as it is written. The
/// connection's own replies are framed as they are queued and laid end to
/// end in one buffer behind everything else ([`Self::push_reply`]): a
/// pipelined client's answers cost no allocation each, and go out from
/// that buffer without another copy. Every count here is of wire bytes,
/// the wrap included.
#[derive(Default)]
pub struct OutQueue {
    frames: VecDeque<Queued>,
    /// Wire bytes of the front of the queue already written: of the front
    /// entry of `frames`, or of `replies` while `frames` is empty.
    written: usize,
    /// Wire bytes queued and not yet written, `replies` included.
    pending: usize,
    /// Replies of the connection's own, framed, queued behind every entry
    /// of `frames`. A body queued behind them first turns them into an
    /// entry of `frames` of their own ([`Self::seal`]).
    replies: BytesMut,
    /// How many replies `replies` holds.
    reply_count: usize,
}

/// One entry of the queue.
struct Queued {
    bytes: Bytes,
    /// 0: `bytes` is one body, framed as it is written. Else `bytes` is
    /// that many replies, framed already, end to end.
    replies: usize,
}

impl Queued {
    fn wire_len(&self, codec: &FrameCodec) -> usize {
        match self.replies {
            0 => codec.wire_len(&self.bytes),
            _ => self.bytes.len(),
        }
    }

    fn wrap(&self, codec: &FrameCodec) -> Wrap {
        match self.replies {
            0 => codec.wrap(&self.bytes),
            _ => Wrap::NONE,
        }
    }

    /// Frames this entry is, for the counters.
    fn frames(&self) -> usize {
        self.replies.max(1)
    }
}

/// What one write did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes the socket took.
    pub bytes: usize,
    /// Frames that are now written whole. Replies queued together count
    /// once all of them are written.
    pub frames: usize,
}

/// Hands `each` what is left of one entry's `parts` (head, body, tail)
/// once the first `skip` bytes of the queue, already written, are left
/// out, and takes the parts it passes over from `skip`: only the front
/// entry is ever partly written, wrap included.
fn unwritten<'a>(skip: &mut usize, parts: [&'a [u8]; 3], mut each: impl FnMut(&'a [u8])) {
    for part in parts {
        if *skip >= part.len() {
            *skip -= part.len();
            continue;
        }
        each(&part[*skip..]);
        *skip = 0;
    }
}

impl OutQueue {
    /// Queues a frame body behind the others.
    pub fn push(&mut self, codec: &FrameCodec, body: Bytes) {
        self.seal();
        self.pending += codec.wire_len(&body);
        self.push_entry(Queued {
            bytes: body,
            replies: 0,
        });
    }

    /// Queues a reply of the connection's own: `parts` laid end to end,
    /// framed at once behind the replies queued before it.
    pub fn push_reply(&mut self, codec: &FrameCodec, parts: &[&[u8]]) {
        if self.replies.capacity() == 0 {
            self.replies.reserve(REPLY_CHUNK);
        }
        self.pending += codec.encode_onto(parts, &mut self.replies);
        self.reply_count += 1;
    }

    fn push_entry(&mut self, entry: Queued) {
        if self.frames.capacity() == 0 {
            self.frames.reserve(FIRST_SLOTS);
        }
        self.frames.push_back(entry);
    }

    /// Turns the replies queued behind `frames` into an entry of their own,
    /// so that what is queued next goes behind them.
    fn seal(&mut self) {
        if self.reply_count == 0 {
            return;
        }
        let bytes = if self.replies.capacity() > 2 * self.replies.len() {
            // Mostly room: an entry that waits for the socket would hold
            // all of it. Copy the replies out, keep the buffer for the next.
            let bytes = Bytes::copy_from_slice(&self.replies);
            self.replies.clear();
            bytes
        } else {
            std::mem::take(&mut self.replies).freeze()
        };
        let entry = Queued {
            bytes,
            replies: std::mem::take(&mut self.reply_count),
        };
        self.push_entry(entry);
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.reply_count == 0
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

    /// Writes as much as `write` takes in one call: replies alone straight
    /// from their buffer; everything queued as one copied slice when it is
    /// small; else up to [`MAX_FRAMES`] entries, each body wrapped by
    /// `codec` in slices of its own around the shared body (copied into
    /// one slice after all when those entries are small).
    pub fn write_with(
        &mut self,
        codec: &FrameCodec,
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Written> {
        if self.frames.is_empty() {
            // Only replies: a pipelined client's answers, in one `send`.
            let n = write(&[IoSlice::new(&self.replies[self.written..])])?;
            return Ok(self.consume_replies(n));
        }
        self.seal();
        if self.frames.len() > 1 && self.pending <= COALESCE_MAX {
            // The common case of a busy connection, copied straight from
            // the entries: building the slice list first cost as much again.
            let n = COALESCED.with_borrow_mut(|buf| {
                let mut at = 0;
                let mut skip = self.written;
                for entry in &self.frames {
                    let wrap = entry.wrap(codec);
                    unwritten(
                        &mut skip,
                        [wrap.head(), &entry.bytes, wrap.tail()],
                        |part| {
                            buf[at..at + part.len()].copy_from_slice(part);
                            at += part.len();
                        },
                    );
                }
                write(&[IoSlice::new(&buf[..at])])
            })?;
            return Ok(self.consume(codec, n));
        }
        let mut wraps = [Wrap::NONE; MAX_FRAMES];
        for (wrap, entry) in wraps.iter_mut().zip(&self.frames) {
            *wrap = entry.wrap(codec);
        }
        let mut slices = [IoSlice::new(&[]); MAX_FRAMES * SLICES_PER_FRAME];
        let mut count = 0;
        let mut skip = self.written;
        for (entry, wrap) in self.frames.iter().zip(&wraps) {
            unwritten(
                &mut skip,
                [wrap.head(), &entry.bytes, wrap.tail()],
                |part| {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                },
            );
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

    /// `n` bytes of the replies written, `frames` being empty.
    fn consume_replies(&mut self, n: usize) -> Written {
        self.pending -= n;
        self.written += n;
        let mut done = Written {
            bytes: n,
            frames: 0,
        };
        if self.written == self.replies.len() {
            done.frames = std::mem::take(&mut self.reply_count);
            self.written = 0;
        }
        // Once all are written the queue is empty, and the buffer goes.
        self.release_if_empty();
        done
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
            let left = front.wire_len(codec) - self.written;
            if n >= left {
                n -= left;
                self.written = 0;
                done.frames += front.frames();
                self.frames.pop_front();
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
        self.seal();
        if !self.mid_frame() {
            return self.clear();
        }
        let Some(front) = self.frames.front_mut() else {
            return 0;
        };
        let mut dropped: usize = 0;
        if front.replies > 0 {
            // A run of replies: keep it up to the end of the one being
            // written (at a boundary, of the next), found by walking the
            // frames from the run's start. The run holds only frames of
            // this codec's making, so the walk cannot fail; were it to,
            // the whole run is kept.
            let (mut end, mut kept) = (0, 0);
            while end <= self.written && kept < front.replies {
                let Some(len) = codec.frame_len(&front.bytes[end..]) else {
                    (end, kept) = (front.bytes.len(), front.replies);
                    break;
                };
                end += len;
                kept += 1;
            }
            dropped = front.replies - kept;
            front.bytes.truncate(end);
            front.replies = kept;
        }
        let front_left = front.wire_len(codec) - self.written;
        dropped += self
            .frames
            .iter()
            .skip(1)
            .map(Queued::frames)
            .sum::<usize>();
        self.frames.truncate(1);
        self.pending = front_left;
        dropped
    }

    /// Drops everything, a partly written frame too; returns how many
    /// frames were dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.frames.iter().map(Queued::frames).sum::<usize>()
            + std::mem::take(&mut self.reply_count);
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
        if self.is_empty() {
            if self.frames.capacity() > 0 {
                self.frames = VecDeque::new();
            }
            if self.replies.capacity() > 0 {
                self.replies = BytesMut::new();
            }
        }
    }

    /// Whether the queue holds no storage at all: what a recycled
    /// connection starts with.
    fn holds_nothing(&self) -> bool {
        self.frames.capacity() == 0 && self.replies.capacity() == 0 && self.written == 0
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

    /// Writes `q` out in writes of at most `chunk` bytes, appending to
    /// `out`; returns the frames the writes reported whole.
    fn drain(q: &mut OutQueue, codec: &FrameCodec, chunk: usize, out: &mut Vec<u8>) -> usize {
        let mut frames = 0;
        while !q.is_empty() {
            frames += q
                .write_with(codec, take(out, chunk))
                .map_or(0, |w| w.frames);
        }
        frames
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
                let frames = drain(&mut q, &codec, chunk, &mut out);
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
    fn a_small_queue_goes_whole_in_one_slice_past_the_frame_limit() {
        let count = MAX_FRAMES * 2;
        let mut q = OutQueue::default();
        for i in 0..count {
            q.push(&LENGTH, Bytes::from(format!("PONG {i}")));
        }
        let mut out = Vec::new();
        // Part of the first frame's prefix first: the rest follows it.
        q.write_with(&LENGTH, take(&mut out, 2)).ok();
        let mut slices = 0;
        let written = q
            .write_with(&LENGTH, |s| {
                slices = s.len();
                take(&mut out, usize::MAX)(s)
            })
            .ok();
        assert_eq!(slices, 1);
        assert_eq!(written.map(|w| w.frames), Some(count));
        let whole: Vec<u8> = (0..count)
            .flat_map(|i| LENGTH.encode(&[format!("PONG {i}").as_bytes()]).to_vec())
            .collect();
        assert_eq!(out, whole);
        assert!(q.holds_nothing());
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

    /// What `bodies` and replies (`true`) queued in turn put on the wire.
    fn mixed(codec: &FrameCodec, items: &[(bool, &'static [u8])]) -> (OutQueue, Vec<u8>) {
        let mut q = OutQueue::default();
        let mut wire = Vec::new();
        for &(reply, bytes) in items {
            if reply {
                q.push_reply(codec, &[b"PONG ", bytes]);
                wire.extend_from_slice(&codec.encode(&[b"PONG ", bytes]));
            } else {
                q.push(codec, Bytes::from_static(bytes));
                wire.extend_from_slice(&codec.encode(&[bytes]));
            }
        }
        (q, wire)
    }

    const MIXED: [(bool, &[u8]); 7] = [
        (true, b"a"),
        (true, b"\xff"),
        (false, b"MSG t x"),
        (true, b"b"),
        (false, b"MSG t y"),
        (false, b"MSG t z"),
        (true, b"c"),
    ];

    #[test]
    fn replies_and_bodies_go_out_in_order_however_the_writes_split() {
        for codec in [LINES, LENGTH, FrameCodec::websocket(64)] {
            for chunk in [1, 2, 3, 5, 7, 100] {
                let (mut q, whole) = mixed(&codec, &MIXED);
                assert_eq!(q.pending(), whole.len());
                let mut out = Vec::new();
                let frames = drain(&mut q, &codec, chunk, &mut out);
                assert_eq!(out, whole, "{codec:?} in chunks of {chunk}");
                assert_eq!(frames, MIXED.len());
                assert_eq!(q.pending(), 0);
                assert!(q.holds_nothing(), "an empty queue keeps no storage");
            }
        }
    }

    #[test]
    fn replies_alone_go_out_from_their_own_buffer_in_one_slice() {
        let mut q = OutQueue::default();
        for _ in 0..16 {
            q.push_reply(&LINES, &[b"PONG ", &[b'p'; 64]]);
        }
        let buffer = q.replies.as_ptr();
        let mut seen = (0, std::ptr::null());
        let written = q
            .write_with(&LINES, |slices| {
                seen = (slices.len(), slices[0].as_ptr());
                Ok(slices[0].len())
            })
            .ok();
        assert_eq!(
            seen,
            (1, buffer),
            "written where they were built, not copied"
        );
        assert_eq!(
            written,
            Some(Written {
                bytes: 16 * 70,
                frames: 16
            })
        );
        assert!(q.holds_nothing());
    }

    #[test]
    fn a_few_replies_behind_which_a_body_comes_are_copied_out_of_the_buffer() {
        let mut q = OutQueue::default();
        q.push_reply(&LINES, &[b"PONG a"]);
        let buffer = q.replies.as_ptr();
        q.push(&LINES, Bytes::from_static(b"MSG t x"));
        // The entry holds its 7 bytes, not the buffer they were built in,
        // which stays for the replies to come.
        assert_eq!(&q.frames[0].bytes[..], b"PONG a\n");
        assert_ne!(q.frames[0].bytes.as_ptr(), buffer);
        assert_eq!((q.replies.as_ptr(), q.replies.len()), (buffer, 0));
        q.push_reply(&LINES, &[b"PONG b"]);
        let mut out = Vec::new();
        assert_eq!(drain(&mut q, &LINES, 100, &mut out), 3);
        assert_eq!(out, b"PONG a\nMSG t x\nPONG b\n");
    }

    #[test]
    fn replies_that_fill_their_buffer_become_an_entry_without_a_copy() {
        let mut q = OutQueue::default();
        let payload = [b'p'; 100];
        while q.replies.len() <= REPLY_CHUNK / 2 {
            q.push_reply(&LINES, &[b"PONG ", &payload]);
        }
        let (buffer, runs) = (q.replies.as_ptr(), q.reply_count);
        q.push(&LINES, Bytes::from_static(b"MSG t x"));
        assert_eq!(q.frames[0].bytes.as_ptr(), buffer, "frozen where built");
        assert_eq!(q.frames[0].replies, runs);
        let mut out = Vec::new();
        assert_eq!(drain(&mut q, &LINES, 700, &mut out), runs + 1);
        let mut whole = LINES.encode(&[b"PONG ", &payload]).repeat(runs);
        whole.extend_from_slice(b"MSG t x\n");
        assert_eq!(out, whole);
        assert!(q.holds_nothing());
    }

    #[test]
    fn a_slow_consumer_keeps_only_the_reply_being_written() {
        for codec in [LINES, LENGTH, FrameCodec::websocket(64)] {
            let (mut q, whole) = mixed(&codec, &MIXED);
            let first = codec.encode(&[b"PONG ", b"a"]).len();
            let mut out = Vec::new();
            // Into the second reply of the first run.
            q.write_with(&codec, take(&mut out, first + 2)).ok();
            assert_eq!(q.drop_whole_frames(&codec), MIXED.len() - 2, "{codec:?}");
            let second = codec.encode(&[b"PONG ", b"\xff"]).len();
            assert_eq!(q.pending(), second - 2);
            drain(&mut q, &codec, 100, &mut out);
            assert_eq!(out, whole[..first + second], "{codec:?}");
            assert!(q.holds_nothing());
        }
        // Nothing partly written: nothing kept.
        let (mut q, _) = mixed(&LINES, &MIXED);
        assert_eq!(q.drop_whole_frames(&LINES), MIXED.len());
        assert!(q.is_empty() && q.holds_nothing());
    }

    #[test]
    fn a_reset_drops_the_reply_buffer() {
        let mut state = ConnState::default();
        state.out.push_reply(&LINES, &[b"OK SUB t"]);
        assert!(!state.is_pristine());
        assert!(state.reset());
        assert!(state.is_pristine());
        assert!(state.out.holds_nothing());
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
