//! The connection's socket work, driven as one future inside the actor.
//!
//! [`IoDriver`] is polled in every turn of the actor: it takes the
//! connection's mail first (`mailbox`), then reads (into a buffer shared
//! by every connection of the thread, handing the bytes to `input.rs`),
//! then writes what is queued. Small frames go out copied into one slice in
//! one `send`; the connection's own replies, framed as they were queued,
//! go out from their own buffer (`OutQueue::push_reply`). Deliveries reach
//! a connection through its worker's flush list (`mailbox/table.rs`),
//! which gathers them so that one write carries more frames: the turn they
//! wake writes at once. Closing follows docs/protocol.md section 5: flush,
//! shut the write side, read and discard until EOF or the close timeout; a
//! slow consumer gets what the socket takes at once and is closed in the
//! same turn. All of it goes
//! through the connection's [`Transport`](crate::transport::Transport), so
//! none of it depends on which transport that is.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{self, Poll};

use actix::{ActorFuture, AsyncContext, Context};
use gateway_metrics::DropReason;

use super::{Connection, Phase};
use crate::mailbox;
use crate::messages::CloseReason;
use crate::state::Written;

/// Size of each thread's shared read buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per actor turn before yielding to other connections.
const READS_PER_TURN: usize = 8;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// The future that moves a connection's bytes; lives as long as the actor.
struct IoDriver;

impl ActorFuture<Connection> for IoDriver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        conn: &mut Connection,
        ctx: &mut Context<Connection>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        // Whatever the connection's turn logs, the registry included, is
        // in its span.
        let span = conn.span();
        let _entered = span.enter();
        conn.drive(ctx, task)
    }
}

enum Read {
    /// Bytes arrived and were handled.
    Data,
    /// Nothing more this turn: nothing to read now (the task will be
    /// woken), or EOF or an error (the connection has reacted).
    Stopped,
}

impl Connection {
    /// Starts the driver, for the life of the actor.
    pub(super) fn start_driver(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(IoDriver);
    }

    fn drive(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        // What was posted since the last turn comes first, as an actor's
        // mailbox does.
        for mail in mailbox::take_all(self.mail, task.waker()) {
            self.on_mail(mail);
        }
        if std::mem::take(&mut self.resume_after_mail) && !self.held {
            self.resume_frames(ctx);
        }
        let mut reads = 0;
        while !self.peer_eof && !self.held && !matches!(self.phase, Phase::Done { .. }) {
            match self.read_once(ctx, task) {
                Read::Data => {}
                Read::Stopped => break,
            }
            reads += 1;
            if reads == READS_PER_TURN {
                // Let the thread's other connections run; come back soon.
                task.waker().wake_by_ref();
                break;
            }
        }
        // While the client's own close waits in the mailbox (a turn away),
        // hold the answers back so they leave with the last frame and the
        // FIN in one write.
        let close_is_next = matches!(self.phase, Phase::Ending { .. });
        if !close_is_next && let Err(err) = self.write_queued(task) {
            self.write_failed(ctx, err);
        }
        if matches!(self.phase, Phase::Flushing { abandon: true, .. }) {
            self.abandon(ctx);
        }
        self.arm_close_timer(ctx);
        if self.transport.take_warmed() {
            // TLS record keys built this turn: the sweep drops them once
            // unused (`mailbox/sweep.rs`).
            mailbox::keys_warm(self.mail);
        }
        if matches!(self.phase, Phase::Lingering { .. }) && self.peer_eof {
            self.finish(ctx);
        }
        match self.phase {
            Phase::Done { .. } => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    fn read_once(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Read {
        loop {
            let read = READ_BUF.with_borrow_mut(|buf| match self.transport.poll_read(task, buf) {
                Poll::Pending => None,
                Poll::Ready(Ok(0)) => Some(Ok(0)),
                Poll::Ready(Ok(n)) => {
                    crate::park::note_read();
                    self.on_input(ctx, &mut buf[..n]);
                    Some(Ok(n))
                }
                Poll::Ready(Err(err)) => Some(Err(err)),
            });
            match read {
                None => return Read::Stopped,
                Some(Ok(0)) => {
                    if self.is_open() {
                        self.peer_gone(ctx, false);
                    } else {
                        self.peer_eof = true;
                    }
                    return Read::Stopped;
                }
                Some(Ok(_)) => return Read::Data,
                Some(Err(err)) if err.kind() == ErrorKind::WouldBlock => continue,
                Some(Err(err)) if err.kind() == ErrorKind::Interrupted => continue,
                Some(Err(_)) => {
                    // A reset (or a broken record of a layered transport):
                    // whatever phase, nothing more can be written.
                    if self.is_open() {
                        self.peer_gone(ctx, true);
                    } else {
                        self.peer_eof = true;
                        self.finish(ctx);
                    }
                    return Read::Stopped;
                }
            }
        }
    }

    /// Writes queued frames until the queue is empty or the transport is
    /// full; once a close has flushed, shuts the write side.
    fn write_queued(&mut self, task: &mut task::Context<'_>) -> io::Result<()> {
        // What the transport says of its own (WebSocket pongs and pings)
        // goes between two whole frames.
        if !self.state.out.mid_frame()
            && let Poll::Ready(Err(err)) = self.transport.poll_write_control(task)
        {
            return Err(err);
        }
        let codec = self.codec();
        while !self.state.out.is_empty() {
            let transport = &mut self.transport;
            let result = self.state.out.write_with(&codec, |slices| {
                match transport.poll_write_vectored(task, slices) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(ErrorKind::WouldBlock.into()),
                }
            });
            match result {
                Ok(written) => self.count_written(written)?,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        // What a layered transport took may still be in its own buffer.
        if let Poll::Ready(Err(err)) = self.transport.poll_flush(task) {
            return Err(err);
        }
        if let Phase::Flushing { abandon: false, .. } = self.phase
            && self.state.out.is_empty()
            // The client reads EOF after the last frame. A failure here
            // means it is gone, which the lingering read will see.
            && self.transport.poll_shutdown(task).is_ready()
        {
            self.flushed();
        }
        Ok(())
    }

    /// A slow consumer, after the socket took what it would without
    /// waiting: the rest is dropped and counted, and the socket closes now,
    /// with no lingering read (contract section 5).
    fn abandon(&mut self, ctx: &mut Context<Self>) {
        let dropped = self.state.out.clear();
        if dropped == 0 {
            // Everything, `KICK slow` included, went out.
            self.transport.end_now();
        }
        self.worker
            .metrics
            .dropped(DropReason::Slow, dropped as u64);
        self.finish(ctx);
    }

    /// Counts what one write took; a write that took nothing is an error,
    /// so the loops here never spin.
    fn count_written(&mut self, written: Written) -> io::Result<()> {
        if written.bytes == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        let counters = &mut self.state.counters;
        counters.bytes_out += written.bytes as u64;
        counters.frames_out += written.frames as u64;
        let metrics = &self.worker.metrics;
        metrics.bytes_sent.inc_by(written.bytes as u64);
        metrics.frames_sent.inc_by(written.frames as u64);
        Ok(())
    }

    /// Writes what the transport takes right now, without waiting.
    pub(crate) fn write_now(&mut self) {
        let codec = self.codec();
        while !self.state.out.is_empty() {
            let transport = &mut self.transport;
            let written = self
                .state
                .out
                .write_with(&codec, |slices| transport.try_write_vectored(slices))
                .and_then(|written| self.count_written(written));
            if written.is_err() {
                // Blocked or failed: the driver's next write reports it.
                break;
            }
        }
    }

    fn write_failed(&mut self, ctx: &mut Context<Self>, err: io::Error) {
        tracing::debug!(parent: &self.span(), error = %err, "write failed");
        let reset = matches!(
            err.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        );
        if reset {
            self.peer_gone(ctx, true);
        } else {
            self.begin_close(CloseReason::Error, None);
        }
        self.finish(ctx);
    }
}
