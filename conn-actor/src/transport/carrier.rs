//! What a layered transport needs of the stream under it: the same five
//! operations a connection drives its own transport with. The WebSocket
//! stream rides on a [`Carrier`] (in the gateway, TCP or TLS), so that it
//! does not depend on the enum it is one variant of.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

/// A byte stream a layer can ride on.
pub trait Carrier {
    /// Reads into `buf`; `Ok(0)` is the end of the peer's data.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `bufs`, in order.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Writes what the stream takes right now, without waiting.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Flushes what a layer of its own holds.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ends the write side after everything written before.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}
