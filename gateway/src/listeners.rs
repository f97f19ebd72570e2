//! The client and WebSocket listeners: one socket per worker, all bound to
//! one address with `SO_REUSEPORT`.
//!
//! Why: with one socket shared by every worker, each new connection woke
//! every worker waiting on it, and all but one found nothing to accept
//! (the figures are in docs/benchmarks.md, "What changed the figures").
//! With a socket each, the kernel hands every connection to one worker's
//! socket and wakes that worker alone.
//!
//! `SO_REUSEPORT` would also let another process of the same user bind the
//! same port and silently take a share of the clients. So a port that is
//! named is first claimed by a bind without it: a port that anything else
//! listens on (another gateway included) fails as clearly as it always did.
//! Port 0 needs no such check: the kernel never picks a port in use.
//!
//! `TCP_NODELAY` is set on the listening sockets: Linux copies it to every
//! socket they accept, which saves each new client a `setsockopt`
//! (see [`set_nodelay_after_accept`]).

use std::net::{SocketAddr, TcpListener};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues before `accept`, per socket.
const LISTEN_BACKLOG: i32 = 4096;

/// `count` (at least one) listening sockets on `addr`, all on the same
/// port; the first one's address is the one to announce. `what` names the
/// listener in errors.
pub fn bind(addr: SocketAddr, count: usize, what: &str) -> anyhow::Result<Vec<TcpListener>> {
    let failed = || format!("cannot bind the {what} listener on {addr}");
    if addr.port() != 0 {
        drop(socket(addr, false).with_context(failed)?);
    }
    let first = socket(addr, true).with_context(failed)?;
    let bound = first.local_addr().with_context(failed)?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(socket(bound, true).with_context(failed)?);
    }
    Ok(sockets)
}

/// A non-blocking socket bound to `addr`; listening where `shared`, which
/// also lets the other sockets of the set bind the same port.
fn socket(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(shared)?;
    socket.set_nonblocking(true)?;
    // Small frames must not wait for more to fill a segment.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    if shared {
        socket.listen(LISTEN_BACKLOG)?;
    }
    Ok(socket.into())
}

/// Turns Nagle's algorithm off on an accepted socket, where the listening
/// socket's setting did not already: Linux copies `TCP_NODELAY` from the
/// listener, other systems may not.
pub fn set_nodelay_after_accept(stream: &tokio::net::TcpStream) {
    if !cfg!(target_os = "linux") {
        let _ = stream.set_nodelay(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::ErrorKind;
    use std::net::TcpStream;

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().expect("address")
    }

    #[test]
    fn every_socket_listens_on_the_first_ones_port() {
        let sockets = bind(any_port(), 3, "client").expect("bind");
        assert_eq!(sockets.len(), 3);
        let addr = sockets[0].local_addr().expect("address");
        assert_ne!(addr.port(), 0);
        for socket in &sockets {
            assert_eq!(socket.local_addr().expect("address"), addr);
        }
        // The kernel spreads connections over the set: every one is
        // accepted by exactly one socket.
        let clients: Vec<TcpStream> = (0..32)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut accepted = 0;
        for socket in &sockets {
            loop {
                match socket.accept() {
                    Ok(_) => accepted += 1,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => panic!("accept: {err}"),
                }
            }
        }
        assert_eq!(accepted, clients.len());
    }

    #[test]
    fn a_port_another_set_holds_is_refused() {
        let first = bind(any_port(), 2, "client").expect("bind");
        let addr = first[0].local_addr().expect("address");
        let err = bind(addr, 2, "client").expect_err("the port is taken");
        assert!(
            format!("{err:#}").contains(&format!("cannot bind the client listener on {addr}")),
            "{err:#}"
        );
    }

    #[test]
    fn accepted_sockets_do_not_wait_to_fill_a_segment() {
        let sockets = bind(any_port(), 1, "client").expect("bind");
        let addr = sockets[0].local_addr().expect("address");
        let _client = TcpStream::connect(addr).expect("connect");
        sockets[0].set_nonblocking(false).expect("blocking");
        let (accepted, _) = sockets[0].accept().expect("accept");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        accepted.set_nonblocking(true).expect("non-blocking");
        let accepted = tokio::net::TcpStream::from_std(accepted).expect("register");
        set_nodelay_after_accept(&accepted);
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
    }

    #[test]
    fn at_least_one_socket() {
        assert_eq!(bind(any_port(), 0, "client").expect("bind").len(), 1);
    }
}
