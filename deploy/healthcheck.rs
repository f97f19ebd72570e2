//! Container health probe for the gateway image.
//!
//! Sends `GET /healthz` to the gateway's admin listener and exits 0 on an HTTP
//! 200, 1 otherwise. The address is the first argument, else
//! `GATEWAY_ADMIN_LISTEN`, else the gateway's default `127.0.0.1:9000`; an
//! unspecified address (`0.0.0.0`, `[::]`) is probed on loopback.
//!
//! It uses the standard library only, so the runtime image needs no shell and
//! no HTTP client package. Build: `rustc --edition 2024 -C opt-level=2 healthcheck.rs`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let listen = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("GATEWAY_ADMIN_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    match probe(&listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("healthcheck: {listen}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn probe(listen: &str) -> Result<(), String> {
    let mut addr: SocketAddr = listen
        .to_socket_addrs()
        .map_err(|e| format!("bad address: {e}"))?
        .next()
        .ok_or("address resolves to nothing")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all that matters; never read more than 64 KiB.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("");
    let mut fields = status_line.split(' ');
    match (fields.next(), fields.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/") => Ok(()),
        _ => Err(format!("unhealthy answer: {status_line:?}")),
    }
}
