//! Black-box contract tests for the `gateway` binary.
//!
//! One test binary; one module per topic of `docs/protocol.md`. Each test
//! starts its own gateway on loopback port 0 (see `gateway_tests::Gateway`),
//! so tests run in parallel without sharing state. Build the binary first:
//! `cargo build -p gateway`.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

mod admin_api;
mod admin_errors;
mod admin_http;
mod browser;
mod browser_client;
mod close;
mod cluster;
mod cluster_faults;
mod cluster_history;
mod cluster_outage;
mod commands;
mod conn_logs;
mod drain;
mod framing;
mod history;
mod ids;
mod limits;
mod metric_values;
mod metrics_exposition;
mod operator_logs;
mod order;
mod per_ip;
mod pool;
mod process;
mod prometheus;
mod replace;
mod schemathesis;
mod slow;
mod start_up_errors;
mod tls;
mod tokens;
mod websocket;
mod websocket_close;
mod websocket_flood;
mod websocket_mixed;
mod websocket_refusals;
mod websocket_tls;
