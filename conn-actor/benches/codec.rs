//! Micro-benchmarks of the frame codec and the command parser: the work
//! every client frame pays before any I/O.

use std::hint::black_box;

use conn_actor::command;
use conn_actor::{FrameCodec, Framing};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 64 pipelined `PING` frames with a 64-byte payload, as a read delivers them.
fn pings(codec: FrameCodec) -> Vec<u8> {
    let payload = [b'x'; 64];
    (0..64)
        .flat_map(|_| codec.encode(&[b"PING ", &payload]).to_vec())
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_64_frames");
    for (name, framing) in [("lines", Framing::Lines), ("length", Framing::Length)] {
        let codec = FrameCodec::new(framing, 65536);
        let wire = pings(codec);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = black_box(&wire[..]);
                let mut frames = 0;
                while let Ok(Some(decoded)) = codec.decode_slice(buf) {
                    frames += decoded.frame.len();
                    buf = &buf[decoded.consumed..];
                }
                frames
            })
        });
    }
    group.finish();
}

/// What a publish pays to build its frame once (the body, unframed), and
/// what each subscriber's write pays to frame it.
fn encode(c: &mut Criterion) {
    let codec = FrameCodec::new(Framing::Length, 65536);
    let payload = [b'x'; 64];
    c.bench_function("body_msg_64B", |b| {
        b.iter(|| conn_actor::body(&[b"MSG ", b"news/eu", b" ", black_box(&payload)]))
    });
    let body = conn_actor::body(&[b"MSG ", b"news/eu", b" ", &payload]);
    c.bench_function("wrap_length", |b| b.iter(|| codec.wrap(black_box(&body))));
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, frame) in [
        ("ping", &b"PING 0123456789abcdef"[..]),
        ("pub", b"PUB news/eu:1 some payload with spaces"),
        ("hello", b"HELLO alice@example.com"),
        ("unknown", b"FROB x"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| command::parse(black_box(frame)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, parse);
criterion_main!(benches);
