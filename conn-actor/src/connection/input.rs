//! What a connection does with what it reads: input in `--framing` frames
//! or in WebSocket messages and control frames, each whole frame run as a
//! command, a trailing partial frame kept (never past `--max-frame-bytes`),
//! and frames held back behind an answer the hub holds run once it comes.
//! After a close asks for it, input is discarded.
//!
//! All input handling is here; the transport only reads, writes and shuts
//! down, and the driver (`drive.rs`) only moves bytes.

use actix::Context;
use bytes::Buf;
use ws_protocol::{CloseCode, Decoder, Event};

use super::Connection;
use crate::codec::FrameError;
use crate::messages::CloseReason;
use crate::transport::Transport;

/// Slack past the frame limit for a length prefix or a `\r\n`.
const FRAME_SLACK: usize = 6;

impl Connection {
    /// Handles bytes read from the socket: complete frames run, a trailing
    /// partial frame is kept. After a close asks for it, input is discarded.
    pub(super) fn on_input(&mut self, ctx: &mut Context<Self>, data: &mut [u8]) {
        let counters = &mut self.state.counters;
        counters.bytes_in += data.len() as u64;
        self.worker.metrics.bytes_received.inc_by(data.len() as u64);
        let frames_before = counters.frames_in;

        if matches!(self.transport, Transport::Ws(_)) {
            self.on_ws_input(ctx, data);
        } else {
            self.on_framed_input(ctx, data);
        }

        let frames = self.state.counters.frames_in - frames_before;
        if frames > 0 {
            self.worker.metrics.frames_received.inc_by(frames);
            self.touch();
        }
    }

    /// Input in `--framing` frames.
    fn on_framed_input(&mut self, ctx: &mut Context<Self>, mut data: &[u8]) {
        while !data.is_empty() && self.is_open() {
            if self.held {
                // Frames wait behind an answer the hub holds back; this is
                // at most the rest of one read.
                self.state.partial.extend_from_slice(data);
                break;
            }
            if self.state.partial.is_empty() {
                let used = self.run_frames(ctx, data);
                data = &data[used..];
                if self.is_open() && !data.is_empty() {
                    // What is left is one incomplete frame within the limit.
                    self.state.partial.extend_from_slice(data);
                }
                break;
            }
            // Complete the carried-over frame, never buffering past the limit.
            let room = (self.worker.limits.max_frame_bytes + FRAME_SLACK)
                .saturating_sub(self.state.partial.len());
            let take = data.len().min(room.max(1));
            self.state.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            let mut carried = std::mem::take(&mut self.state.partial);
            let used = self.run_frames(ctx, &carried);
            carried.advance(used);
            if !carried.is_empty() && self.is_open() {
                self.state.partial = carried;
            }
        }
    }

    /// Runs the complete frames kept while an answer was held back.
    pub(super) fn resume_frames(&mut self, ctx: &mut Context<Self>) {
        let frames_before = self.state.counters.frames_in;
        while self.is_open() && !self.held {
            let Some(message) = self.deferred.as_mut().and_then(|d| d.pop_front()) else {
                break;
            };
            self.state.counters.frames_in += 1;
            self.on_frame(ctx, &message);
        }
        // Its storage goes once it is empty, or no longer wanted.
        if !self.is_open() || self.deferred.as_ref().is_some_and(|d| d.is_empty()) {
            self.deferred = None;
        }
        let mut carried = std::mem::take(&mut self.state.partial);
        let used = self.run_frames(ctx, &carried);
        carried.advance(used);
        if !carried.is_empty() && self.is_open() {
            self.state.partial = carried;
        }
        let frames = self.state.counters.frames_in - frames_before;
        if frames > 0 {
            self.worker.metrics.frames_received.inc_by(frames);
        }
    }

    /// Runs every complete frame at the start of `buf`; returns the bytes used.
    fn run_frames(&mut self, ctx: &mut Context<Self>, buf: &[u8]) -> usize {
        let codec = self.codec();
        let mut used = 0;
        while self.is_open() && !self.held {
            match codec.decode_slice(&buf[used..]) {
                Ok(Some(decoded)) => {
                    used += decoded.consumed;
                    self.state.counters.frames_in += 1;
                    self.on_frame(ctx, decoded.frame);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { .. }) => {
                    self.close_behind_queued(CloseReason::FrameTooLarge);
                    break;
                }
            }
        }
        used
    }

    /// Handles bytes read from a WebSocket client: whole messages run as
    /// frames while the connection is open; pings are answered; pings and
    /// pongs count as activity; the client's Close ends the connection as
    /// its EOF would, and after a close of ours completes the closing
    /// handshake.
    fn on_ws_input(&mut self, ctx: &mut Context<Self>, data: &mut [u8]) {
        let Transport::Ws(ws) = &mut self.transport else {
            return;
        };
        let mut decoder = std::mem::replace(&mut ws.decoder, Decoder::new(0));
        decoder.decode(data, |event| self.on_ws_event(ctx, event));
        if !self.is_open() {
            // Nothing more is acted on: keep no message in memory.
            decoder.discard_data();
        }
        if let Transport::Ws(ws) = &mut self.transport {
            ws.decoder = decoder;
        }
    }

    fn on_ws_event(&mut self, ctx: &mut Context<Self>, event: Event<'_>) {
        match event {
            Event::Message { data, .. } => {
                if self.is_open() && self.held {
                    // Behind an answer the hub holds back (at most the rest
                    // of one read).
                    self.deferred
                        .get_or_insert_default()
                        .push_back(data.to_vec());
                } else if self.is_open() {
                    self.state.counters.frames_in += 1;
                    self.on_frame(ctx, data);
                }
            }
            Event::Ping(payload) => {
                if let Transport::Ws(ws) = &mut self.transport {
                    ws.queue_pong(payload);
                }
                self.touch();
            }
            Event::Pong(_) => self.touch(),
            Event::Close(code) => {
                if let Transport::Ws(ws) = &mut self.transport {
                    ws.peer_closed = true;
                    ws.set_close_code(code.unwrap_or(CloseCode::Normal));
                }
                if self.is_open() {
                    // As an EOF: what was queued goes first, then our Close.
                    self.peer_gone(ctx, false);
                } else {
                    // The answer to our Close, or a close crossing ours:
                    // once ours is written, the socket may close.
                    self.peer_eof = true;
                }
            }
            Event::TooLarge => {
                if self.is_open() {
                    self.close_behind_queued(CloseReason::FrameTooLarge);
                }
            }
            Event::Failed(code) => {
                if let Transport::Ws(ws) = &mut self.transport {
                    ws.set_close_code(code);
                }
                if self.is_open() {
                    self.close_behind_queued(CloseReason::Error);
                }
            }
        }
    }
}
