#!/usr/bin/env python3
"""The reconnect storm after a node dies: how fast its users log in again.

A real nats-server on free ports and three gateway nodes (a, b, c) joined
through it. USERS clients log in on c; c is killed with SIGKILL (it stays
listed on a and b for up to 3.5 s, until its heartbeats are missed long
enough); at once every user logs in again, alternately on a and b, with at
most CONCURRENCY logins in flight. Printed: the logins per second from the
kill to the last `OK HELLO`, and the `OK HELLO` latency p50/p99 (the login
claim must be answered by the other live nodes first, contract section 10).

    bench/login_storm.py [--gateway target/debug/gateway] [--users 5000]
                         [--concurrency 500] [--cluster-timeout 1000]

Only plain sockets and the standard library; `nats-server` on PATH.
"""

import argparse
import asyncio
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def start_nats(tmp):
    ports = pathlib.Path(tmp) / "ports"
    ports.mkdir()
    proc = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", "-1", "-m", "-1",
         "--ports_file_dir", str(ports)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        for f in ports.iterdir():
            text = f.read_text()
            if text.strip():
                return proc, json.loads(text)["nats"][0]
        time.sleep(0.05)
    sys.exit("nats-server wrote no ports file")


def start_node(binary, url, node, timeout_ms):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
         "--nats-url", url, "--node-id", node, "--cluster-timeout", str(timeout_ms),
         "--max-connections", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"client=(\S+):(\d+) admin=(\S+)", line)
    if not m:
        sys.exit(f"{node}: no READY line: {line!r}")
    return proc, (m.group(1), int(m.group(2))), m.group(3)


async def login(addr, user):
    """HELLO user; the open connection and how long OK HELLO took."""
    reader, writer = await asyncio.open_connection(*addr)
    started = time.perf_counter()
    writer.write(f"HELLO {user}\n".encode())
    await writer.drain()
    reply = await reader.readline()
    took = time.perf_counter() - started
    if not reply.startswith(b"OK HELLO "):
        raise RuntimeError(f"HELLO {user}: {reply!r}")
    return (reader, writer), took


async def login_all(addrs, users, concurrency):
    gate = asyncio.Semaphore(concurrency)

    async def one(i, user):
        async with gate:
            return await login(addrs[i % len(addrs)], user)

    return await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))


def wait_members(admin, count):
    """Polls the node's cluster view until it lists `count` nodes."""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/api/v1/cluster") as r:
                if len(json.load(r)["nodes"]) == count:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the nodes did not join")


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", default="target/debug/gateway")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--cluster-timeout", type=int, default=1000)
    args = ap.parse_args()
    if not shutil.which("nats-server"):
        sys.exit("nats-server not found (apt-get install nats-server)")
    tmp = tempfile.mkdtemp(prefix="login-storm-")
    procs = []
    try:
        nats, url = start_nats(tmp)
        procs.append(nats)
        nodes = {}
        for name in ["a", "b", "c"]:
            proc, addr, admin = start_node(args.gateway, url, name, args.cluster_timeout)
            procs.append(proc)
            nodes[name] = (proc, addr, admin)
        for _, _, admin in nodes.values():
            wait_members(admin, 3)
        users = [f"u{i}" for i in range(args.users)]
        held = await login_all([nodes["c"][1]], users, args.concurrency)
        nodes["c"][0].send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        for (_, writer), _ in held:
            writer.close()
        again = await login_all([nodes["a"][1], nodes["b"][1]], users, args.concurrency)
        elapsed = time.perf_counter() - killed
        latencies = [took for _, took in again]
        print(json.dumps({
            "gateway": args.gateway,
            "users": args.users,
            "concurrency": args.concurrency,
            "cluster_timeout_ms": args.cluster_timeout,
            "seconds": round(elapsed, 2),
            "logins_per_second": round(args.users / elapsed),
            "ok_hello_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "ok_hello_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        }))
        for (_, writer), _ in again:
            writer.close()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
