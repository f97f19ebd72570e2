//! A TCP proxy on 127.0.0.1 that a test can break, for the faults a client
//! meets on a real network while the gateway stays up:
//! [`CutProxy::cut`] closes every connection it carries at once, both ways,
//! as a dropped NAT entry or a load balancer's restart would: the client
//! reads EOF with no WebSocket Close frame before it (status 1006).
//! [`CutProxy::freeze`] stops carrying bytes on every connection so far
//! but keeps its sockets open, as a network that drops packets or a laptop
//! asleep does: neither end hears of it. New connections are carried as
//! before either.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One connection carried: its two sockets and whether it is frozen.
struct Carried {
    sockets: Vec<TcpStream>,
    frozen: Arc<AtomicBool>,
}

/// A proxy from a loopback port to `target`; stops on drop.
pub struct CutProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<Carried>>>,
    thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// Listens on a free loopback port and carries each connection to `target`.
    pub fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (stopping, carried) = (Arc::clone(&stop), Arc::clone(&open));
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                let sockets = [&client, &server]
                    .iter()
                    .filter_map(|s| s.try_clone().ok())
                    .collect();
                carried.lock().expect("proxy list").push(Carried {
                    sockets,
                    frozen: Arc::clone(&frozen),
                });
                pipe(&client, &server, Arc::clone(&frozen));
                pipe(&server, &client, frozen);
            }
        });
        CutProxy {
            addr,
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection carried so far, both ways.
    pub fn cut(&self) {
        for carried in self.open.lock().expect("proxy list").drain(..) {
            for socket in carried.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Stops carrying bytes on every connection so far, leaving them open:
    /// what either end sends is read and dropped.
    pub fn freeze(&self) {
        for carried in self.open.lock().expect("proxy list").iter() {
            carried.frozen.store(true, Ordering::SeqCst);
        }
    }
}

/// Copies `from` to `to` on a thread until either end closes; drops what
/// it reads once `frozen`.
fn pipe(from: &TcpStream, to: &TcpStream, frozen: Arc<AtomicBool>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if frozen.load(Ordering::SeqCst) => {}
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        if !frozen.load(Ordering::SeqCst) {
            let _ = to.shutdown(Shutdown::Write);
        }
    });
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
