//! One client connection: this task reads and handles commands; a writer
//! task drains the connection's mailbox to the socket. A close (QUIT, a
//! kick, a replaced login, a too-large frame, the client's EOF) is an entry
//! in the mailbox, so everything queued before it is written first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use gateway_bench::frame::{FrameReader, memchr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::state::{Handle, Out, State, lock};

/// Serves one client until its socket is closed.
pub async fn run(stream: TcpStream, _peer: SocketAddr, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (handle, rx) = Handle::new();
    let (done_tx, done_rx) = oneshot::channel();
    let max_pending = state.limits.max_pending;
    let writer = tokio::spawn(write_loop(wr, rx, handle.clone(), done_tx, state.clone()));
    let Some(id) = state.register(handle.clone()) else {
        let _ = handle.send(state.frame(&[b"ERR server-full"]), max_pending);
        handle.close(None);
        drain(rd, &state, Some(done_rx)).await;
        let _ = writer.await;
        return;
    };
    let mut reader = FrameReader::new(rd, state.limits.framing, state.limits.max_frame);
    let mut conn = Conn {
        id,
        handle,
        state: state.clone(),
        user: false,
        subs: 0,
    };
    let mut done_rx = done_rx;
    let mut writer_done = false;
    loop {
        tokio::select! {
            r = reader.next_frame() => match r {
                Ok(Some(f)) => {
                    state.frames_in.fetch_add(1, Ordering::Relaxed);
                    if !conn.command(&f) {
                        break;
                    }
                }
                Ok(None) => {
                    // Client EOF: answers so far are written, then close.
                    conn.handle.close(None);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let _ = conn.handle.send(state.frame(&[b"ERR frame-too-large"]), max_pending);
                    conn.handle.close(None);
                    break;
                }
                Err(_) => {
                    conn.handle.close(None);
                    break;
                }
            },
            _ = &mut done_rx => {
                // Closed from elsewhere (kick, replaced, slow).
                writer_done = true;
                break;
            }
        }
    }
    let pending_done = (!writer_done).then_some(done_rx);
    drain(reader.get_mut(), &state, pending_done).await;
    let _ = writer.await;
    state.unregister(id);
}

/// Waits for the writer to finish, then reads and throws away what the
/// client still sends until it closes or `close_timeout` runs out.
async fn drain<R: tokio::io::AsyncRead + Unpin>(
    mut rd: R,
    state: &State,
    writer_done: Option<oneshot::Receiver<()>>,
) {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + state.limits.close_timeout;
    if let Some(done) = writer_done {
        let _ = tokio::time::timeout_at(deadline, done).await;
    }
    let mut scratch = vec![0u8; 8192];
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(n) = rd.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes the mailbox to the socket, coalescing what is queued.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    handle: Handle,
    done: oneshot::Sender<()>,
    state: Arc<State>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut closing = false;
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut frames = 0u64;
        let mut queued = 0usize;
        while let Some(m) = next.take() {
            match m {
                Out::Frame(b) => {
                    queued += b.len();
                    buf.extend_from_slice(&b);
                    frames += 1;
                }
                Out::Close(last) => {
                    if handle.slow.load(Ordering::Acquire) {
                        // A slow consumer's queued output is dropped.
                        buf.clear();
                        buf.extend_from_slice(&state.frame(&[b"KICK slow"]));
                    } else if let Some(l) = last {
                        buf.extend_from_slice(&l);
                    }
                    closing = true;
                    break;
                }
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        let ok = wr.write_all(&buf).await.is_ok();
        buf.clear();
        handle.pending.fetch_sub(queued, Ordering::AcqRel);
        state.frames_out.fetch_add(frames, Ordering::Relaxed);
        if !ok {
            handle.closing.store(true, Ordering::Release);
            break 'outer;
        }
        if closing {
            break;
        }
    }
    let _ = wr.shutdown().await;
    handle.closing.store(true, Ordering::Release);
    rx.close();
    let _ = done.send(());
}

/// Per-connection command state.
struct Conn {
    id: u64,
    handle: Handle,
    state: Arc<State>,
    user: bool,
    subs: usize,
}

impl Conn {
    fn reply(&self, parts: &[&[u8]]) {
        let _ = self
            .handle
            .send(self.state.frame(parts), self.state.limits.max_pending);
    }

    /// Handles one frame; false once the connection is closing.
    fn command(&mut self, f: &Bytes) -> bool {
        let (verb, arg) = match memchr(b' ', f) {
            Some(i) => (&f[..i], Some(&f[i + 1..])),
            None => (&f[..], None),
        };
        match verb {
            b"PING" => match arg {
                Some(p) => self.reply(&[b"PONG ", p]),
                None => self.reply(&[b"PONG"]),
            },
            b"PUB" => self.publish(arg.unwrap_or_default()),
            b"HELLO" => self.hello(arg.unwrap_or_default()),
            b"SUB" => self.sub(arg.unwrap_or_default()),
            b"UNSUB" => self.unsub(arg.unwrap_or_default()),
            b"QUIT" => {
                let bye = self.state.frame(&[b"BYE"]);
                self.handle.close(Some(bye));
                return false;
            }
            _ => self.reply(&[b"ERR unknown-command"]),
        }
        !self.handle.closing.load(Ordering::Acquire)
    }

    fn hello(&mut self, user: &[u8]) {
        if self.user {
            return self.reply(&[b"ERR already-identified"]);
        }
        if !valid(user, 128, b"_.:@-") {
            return self.reply(&[b"ERR bad-user"]);
        }
        let old = lock(&self.state.users).insert(user.to_vec(), self.id);
        if let Some(old) = old.filter(|o| *o != self.id)
            && let Some(h) = self.state.handle(old)
        {
            h.close(Some(self.state.frame(&[b"KICK replaced"])));
        }
        if let Some(e) = lock(&self.state.conns).get_mut(&self.id) {
            e.user = Some(user.to_vec());
        }
        self.user = true;
        let id = self.id.to_string();
        self.reply(&[b"OK HELLO ", id.as_bytes()]);
    }

    fn sub(&mut self, topic: &[u8]) {
        if !valid(topic, 256, b"_.:/-") {
            return self.reply(&[b"ERR bad-topic"]);
        }
        let mut conns = lock(&self.state.conns);
        let Some(e) = conns.get_mut(&self.id) else {
            return;
        };
        if !e.topics.contains(topic) {
            if self.subs >= self.state.limits.max_subscriptions {
                drop(conns);
                return self.reply(&[b"ERR too-many-subscriptions"]);
            }
            e.topics.insert(topic.to_vec());
            self.subs += 1;
            lock(&self.state.topics)
                .entry(topic.to_vec())
                .or_default()
                .insert(self.id, self.handle.clone());
        }
        drop(conns);
        self.reply(&[b"OK SUB ", topic]);
    }

    fn unsub(&mut self, topic: &[u8]) {
        if !valid(topic, 256, b"_.:/-") {
            return self.reply(&[b"ERR bad-topic"]);
        }
        let mut conns = lock(&self.state.conns);
        if let Some(e) = conns.get_mut(&self.id)
            && e.topics.remove(topic)
        {
            self.subs -= 1;
            let mut topics = lock(&self.state.topics);
            if let Some(s) = topics.get_mut(topic) {
                s.remove(&self.id);
                if s.is_empty() {
                    topics.remove(topic);
                }
            }
        }
        drop(conns);
        self.reply(&[b"OK UNSUB ", topic]);
    }

    fn publish(&mut self, arg: &[u8]) {
        let (topic, payload) = match memchr(b' ', arg) {
            Some(i) => (&arg[..i], &arg[i + 1..]),
            None => (arg, &b""[..]),
        };
        if !valid(topic, 256, b"_.:/-") {
            return self.reply(&[b"ERR bad-topic"]);
        }
        let msg = self.state.frame(&[b"MSG ", topic, b" ", payload]);
        let max = self.state.limits.max_pending;
        let topics = lock(&self.state.topics);
        if let Some(subs) = topics.get(topic) {
            for h in subs.values() {
                let _ = h.send(msg.clone(), max);
            }
        }
    }
}

/// 1..=max bytes of ASCII letters, digits and `extra`.
fn valid(s: &[u8], max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(b))
}
