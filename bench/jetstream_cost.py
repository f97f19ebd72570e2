#!/usr/bin/env python3
"""What a cluster's history stream costs NATS (docs/history.md, "In a cluster").

Starts its own nats-server with JetStream on free loopback ports, makes the
stream the gateway makes (gateway_history, the default prefix), stores
messages straight into it over a raw NATS connection, and reads what NATS
says it holds (/jsz) and its resident memory (/proc).

    python3 bench/jetstream_cost.py [--topics 100] [--per-topic 1000]
                                    [--new-topics 10000] [--payload 64]

Prints, for messages: the stream's own bytes per message (what max_bytes
counts), bytes on disk and server RSS per message; for topics: RSS per new
topic holding one message.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--per-topic", type=int, default=1000)
    ap.add_argument("--new-topics", type=int, default=10_000)
    ap.add_argument("--payload", type=int, default=64)
    args = ap.parse_args()
    if shutil.which("nats-server") is None:
        sys.exit("jetstream_cost: nats-server not found (apt-get install nats-server)")
    work = tempfile.mkdtemp(prefix="jetstream-cost-")
    os.makedirs(f"{work}/ports")
    server = subprocess.Popen(
        ["nats-server", "-js", "-sd", f"{work}/js", "-a", "127.0.0.1", "-p", "-1", "-m", "-1",
         "--ports_file_dir", f"{work}/ports"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run(args, work, server.pid)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work, pid):
    deadline = time.monotonic() + 10
    while not glob.glob(f"{work}/ports/*") and time.monotonic() < deadline:
        time.sleep(0.05)
    ports = json.load(open(glob.glob(f"{work}/ports/*")[0]))
    port = int(ports["nats"][0].rsplit(":", 1)[1])
    monitor = f"http://127.0.0.1:{ports['monitoring'][0].rsplit(':', 1)[1]}"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.recv(4096)
    sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.cost 1\r\n')

    def request(subject, body):
        sock.sendall(f"PUB {subject} _INBOX.cost {len(body)}\r\n".encode() + body + b"\r\nPING\r\n")
        got = b""
        while b"MSG _INBOX.cost" not in got or b"PONG" not in got:
            got += sock.recv(65536)
        return got

    config = {
        "name": "gateway_history", "subjects": ["gateway.history.>"],
        "max_msgs_per_subject": args.per_topic, "max_age": 300 * 10**9, "max_bytes": 1 << 34,
        "num_replicas": 1, "storage": "file", "discard": "old", "duplicate_window": 120 * 10**9,
        "allow_direct": True,
        "republish": {"src": "gateway.history.>", "dest": "gateway.hfeed.>"},
    }
    answer = request("$JS.API.STREAM.CREATE.gateway_history", json.dumps(config).encode())
    if b'"error"' in answer:
        sys.exit(f"jetstream_cost: cannot make the stream: {answer[:300]!r}")

    def rss_kib():
        with open(f"/proc/{pid}/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0])

    def state():
        jsz = json.load(urllib.request.urlopen(f"{monitor}/jsz?streams=true"))
        return jsz["account_details"][0]["stream_detail"][0]["state"]

    payload = b"x" * args.payload

    def store(first_topic, topics, per_topic):
        want = state()["messages"] + topics * per_topic
        batch = []
        for _ in range(per_topic):
            for t in range(first_topic, first_topic + topics):
                batch.append(f"PUB gateway.history.t{t} {len(payload)}\r\n".encode() + payload + b"\r\n")
                if len(batch) >= 2000:
                    sock.sendall(b"".join(batch))
                    batch = []
        sock.sendall(b"".join(batch))
        while state()["messages"] < want:
            time.sleep(0.2)
        time.sleep(0.5)

    base = rss_kib()
    print(f"storing {args.topics} topics x {args.per_topic} messages of {args.payload} bytes ...",
          file=sys.stderr)
    store(0, args.topics, args.per_topic)
    held = state()
    grown = rss_kib() - base
    disk = int(subprocess.run(["du", "-sk", f"{work}/js"], capture_output=True, text=True).stdout.split()[0])
    n = held["messages"]
    print(f"messages: {n}")
    print(f"  stream bytes per message (what max_bytes counts): {held['bytes'] / n:.0f}")
    print(f"  bytes on disk per message: {disk * 1024 / n:.0f}")
    print(f"  server RSS per message: {grown * 1024 / n:.0f}")

    print(f"storing one message on each of {args.new_topics} new topics ...", file=sys.stderr)
    base = rss_kib()
    store(args.topics, args.new_topics, 1)
    grown = rss_kib() - base
    per_topic = grown * 1024 / args.new_topics
    print(f"new topics: {args.new_topics}")
    print(f"  server RSS per new topic with one message: {per_topic:.0f}")


if __name__ == "__main__":
    main()
