//! A client that keeps writing while the test reads: what a close must
//! survive without a reset (contract section 5, step 4).
//!
//! [`BackgroundWriter`] writes from a second thread on a clone of a plain
//! socket. [`read_while_writing`] runs that over any transport: from a
//! second thread where the stream can be written from two places (plain TCP),
//! taking turns with the reads where it cannot (TLS), so one test body holds
//! every transport to the same promise.

use std::fmt::Debug;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writes on a clone of a client's socket from another thread, chunk after
/// chunk, until stopped, until `limit` has passed, or until `next` returns
/// `None`.
pub struct BackgroundWriter {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<io::Result<()>>,
}

impl BackgroundWriter {
    /// Starts writing what `next` returns, one call per write.
    pub fn start(
        mut socket: TcpStream,
        limit: Duration,
        mut next: impl FnMut() -> Option<Vec<u8>> + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                match next() {
                    Some(chunk) => socket.write_all(&chunk)?,
                    None => break,
                }
            }
            Ok(())
        });
        Self { stop, handle }
    }

    /// Stops writing; `Err` if any write failed (a reset, say).
    pub fn stop(self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
    }
}

/// A client that [`read_while_writing`] can drive: a line client or a
/// WebSocket client, over TCP or TLS.
pub trait Duplex {
    /// What one read finds.
    type Event: Debug;

    /// A second handle on the socket for a writer thread, when the stream
    /// can be written from two places (plain TCP; a TLS stream cannot).
    fn second_writer(&mut self) -> Option<TcpStream>;

    /// Writes raw bytes through the stream (TLS included) and flushes them.
    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// The next event, waiting at most `timeout`.
    fn read_event(&mut self, timeout: Duration) -> Self::Event;

    /// Whether `event` is a read that timed out.
    fn timed_out(event: &Self::Event) -> bool;

    /// Whether `event` ends the reading: the end of the stream, or the
    /// server's closing message.
    fn ends(event: &Self::Event) -> bool;
}

/// Writes `first`, then `more` again and again, while reading events until
/// one that [`Duplex::ends`] the reading or `limit` has passed. Returns the
/// events read (timeouts left out) and `Err` if a write failed. Nothing is
/// written after the ending event has been read.
pub fn read_while_writing<C: Duplex>(
    client: &mut C,
    first: Vec<u8>,
    more: Vec<u8>,
    limit: Duration,
) -> (Vec<C::Event>, io::Result<()>) {
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    let writer = client.second_writer().map(|socket| {
        let mut first = Some(first.clone());
        let more = more.clone();
        BackgroundWriter::start(socket, limit, move || {
            Some(first.take().unwrap_or_else(|| more.clone()))
        })
    });
    // Without a second writer, writing and reading take turns.
    let mut written = match writer {
        Some(_) => Ok(()),
        None => client.write_raw(&first),
    };
    while written.is_ok() && Instant::now() < deadline {
        let event = client.read_event(Duration::from_millis(100));
        if !C::timed_out(&event) {
            let end = C::ends(&event);
            events.push(event);
            if end {
                break;
            }
        }
        if writer.is_none() {
            written = client.write_raw(&more);
        }
    }
    if let Some(writer) = writer {
        // Stops between two whole chunks, so a client library may write next.
        written = writer.stop();
    }
    (events, written)
}
