//! A client that keeps writing while the test reads: what a close must
//! survive without a reset (contract section 5, step 4).

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
