//! The server side of the WebSocket protocol (RFC 6455), without I/O.
//!
//! A transport that owns the socket feeds it bytes and writes what it
//! returns; nothing here reads, writes, waits or keeps a clock:
//! - [`handshake`]: one HTTP request in, either the `101 Switching
//!   Protocols` answer or a refusal (404 for another path, 403 for an
//!   origin that is not allowed, 426 for a request that is not an
//!   upgrade, ...);
//! - [`Decoder`]: client frames in (masked, possibly fragmented, control
//!   frames in between), whole messages and control events out, with the
//!   message size limit applied to the whole message as soon as a header
//!   announces it is passed;
//! - [`encode`]: the headers of unmasked server frames, so a payload shared
//!   by many connections is written from where it lies, and the control
//!   frames (pings, pongs, Close with a status code).
//!
//! Parsing of frame headers, the accept key and the close status codes come
//! from `tungstenite`; this crate adds the buffer handling a
//! read-into-a-buffer, write-vectored driver needs. It deliberately knows
//! nothing of the gateway's commands or of why a connection closes: the
//! transport maps its close reasons to [`CloseCode`]s.

#![warn(missing_docs)]

mod decode;
pub mod encode;
pub mod handshake;
mod mask;

pub use decode::{Decoder, Event, Kind};
pub use tungstenite::protocol::frame::coding::CloseCode;
