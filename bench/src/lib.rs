//! Load generator and baseline server for the gateway benchmarks.
//!
//! Everything here talks to the server from the outside, over the wire
//! protocol and admin API of the gateway contract; nothing is shared with
//! the gateway's own crates.

pub mod frame;
pub mod http;
pub mod metrics;
pub mod net;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod swarm;
