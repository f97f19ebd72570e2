//! The baseline's admin port: `GET /metrics` (connection counters; no pool
//! counters, the baseline has no pool), `GET /healthz`, and the two
//! endpoints the kick scenario uses, `POST /api/v1/connections/{id}/send`
//! and `POST /api/v1/connections/{id}/close`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use gateway_bench::http::{Request, read_request, response};

use crate::state::State;

/// Accepts admin connections forever.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::spawn(one(s, state.clone()));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn one(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::new(stream);
    while let Ok(Some(req)) = read_request(&mut r).await {
        let (status, ctype, body) = route(&req, &state);
        if r.get_mut()
            .write_all(&response(status, ctype, &body))
            .await
            .is_err()
        {
            break;
        }
    }
}

const JSON: &str = "application/json";

fn error(status: u16, code: &str, message: &str) -> (u16, &'static str, Vec<u8>) {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    (status, JSON, body.into_bytes())
}

fn route(req: &Request, state: &State) -> (u16, &'static str, Vec<u8>) {
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["metrics"]) => (
            200,
            "text/plain; version=0.0.4",
            metrics(state).into_bytes(),
        ),
        ("GET", ["healthz"]) => (200, JSON, br#"{"status":"ok"}"#.to_vec()),
        ("POST", ["api", "v1", "connections", id, action]) => {
            let Some(handle) = id.parse::<u64>().ok().and_then(|id| state.handle(id)) else {
                return error(404, "not_found", "no such connection");
            };
            if handle.closing.load(Ordering::Acquire) {
                return error(409, "closing", "the connection is closing");
            }
            let body: Value = if req.body.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(&req.body) {
                    Ok(v) => v,
                    Err(_) => return error(400, "invalid_json", "the body is not JSON"),
                }
            };
            match *action {
                "send" => {
                    let Some(data) = body.get("data").and_then(Value::as_str) else {
                        return error(400, "bad_request", "expected {\"data\": \"...\"}");
                    };
                    let frame = state.frame(&[b"PUSH ", data.as_bytes()]);
                    match handle.send(frame, state.limits.max_pending) {
                        Ok(()) => (202, JSON, b"{}".to_vec()),
                        Err(_) => error(409, "closing", "the connection is closing"),
                    }
                }
                "close" => {
                    let reason = body
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("admin");
                    let kick = match body.get("message").and_then(Value::as_str) {
                        Some(m) => format!("KICK {reason} {m}"),
                        None => format!("KICK {reason}"),
                    };
                    if handle.close(Some(state.frame(&[kick.as_bytes()]))) {
                        (202, JSON, b"{}".to_vec())
                    } else {
                        error(409, "closing", "the connection is closing")
                    }
                }
                _ => error(404, "not_found", "no such route"),
            }
        }
        _ => error(404, "not_found", "no such route"),
    }
}

fn metrics(state: &State) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    family(
        "gateway_connections_active",
        "gauge",
        "open client connections",
        state.active() as u64,
    );
    family(
        "gateway_connections_accepted_total",
        "counter",
        "accepted connections",
        state.accepted.load(Ordering::Relaxed),
    );
    family(
        "gateway_connections_rejected_total",
        "counter",
        "rejected connections",
        state.rejected.load(Ordering::Relaxed),
    );
    family(
        "gateway_connections_closed_total",
        "counter",
        "closed connections",
        state.closed.load(Ordering::Relaxed),
    );
    family(
        "gateway_frames_received_total",
        "counter",
        "frames received",
        state.frames_in.load(Ordering::Relaxed),
    );
    family(
        "gateway_frames_sent_total",
        "counter",
        "frames sent",
        state.frames_out.load(Ordering::Relaxed),
    );
    out
}
