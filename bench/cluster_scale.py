#!/usr/bin/env python3
"""Where the cluster stops: many users over several nodes, in one run.

A real nats-server on free loopback ports (monitoring included), K gateway
nodes joined through it, and one gateway without NATS beside them (the
one-node case). The load comes from `gateway-bench swarm` processes, one
per node (each holds that node's users, under `ulimit -n`), plus one per
broadcast producer. In turn:

  single    N/K users log in on the one-node gateway (no NATS);
  first     N/K users log in on cluster node n1 while the others only
            answer its login claims;
  rest      the other nodes' users log in, all nodes at once;
  idle      5 s with every user held: memory, NATS traffic at rest
            (heartbeats);
  broadcast admin broadcasts to every connection, back to back from each
            producer (deliveries/s), then one every 1.5 s (latency);
            order checked per producer on every connection;
  storm     the last node is killed (SIGKILL) while it holds its N/K users:
            they log in again on the survivors, and each gets a user send
            (admin POST /users/{u}/send through another survivor) made
            after its OK HELLO, which must arrive;
  after     a broadcast to everyone again, and every connection checked;
  topics    once membership is calm, every user subscribes to its own
            topic (t.<user>), in --topic-steps steps: NATS interest grows by
            one subject per user; the cost of a SUB at each size.

After each phase the nodes' and nats-server's logs are read for membership
trouble (missed heartbeats, nodes gone, NATS lost, slow consumers); a live
node found gone fails the run.

Memory and CPU come from /proc (the nodes' VmRSS and CPU time, the CPU of
each node's `nats` thread) and from nats-server's /varz and /subsz.

    bench/cluster_scale.py --users N --nodes K [--parallel 200]
        [--broadcasts 50] [--producers 2] [--cluster-timeout 1000]
        [--topic-steps 4] [--storm-timeout 300]
        [--gateway target/release/gateway] [--bench target/release/gateway-bench]
        [--out DIR]

Results: DIR/results.json (every figure), DIR/table.md (the summary, also
printed), the logs of NATS and the nodes. Progress goes to stderr. Exit 1
when a correctness condition broke (an error, a message missing, out of
order or lost, a live node found gone), 2 for bad input.
"""

import argparse
import json
import os
import pathlib
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
# File descriptors a process needs beside its client connections
# (listeners, NATS, admin connections, epoll, logs).
FD_MARGIN = 100


def fail(msg):
    print(f"cluster_scale.py: {msg}", file=sys.stderr)
    sys.exit(2)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc

def cpu_secs(pid):
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_secs(pid, name):
    """CPU seconds of the process's threads called `name`."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the run started, ended on exit."""

    def __init__(self):
        self.all = []

    def add(self, proc):
        self.all.append(proc)
        return proc

    def stop(self):
        for p in reversed(self.all):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for p in reversed(self.all):
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_nats(out, procs):
    ports = out / "nats-ports"
    ports.mkdir()
    proc = procs.add(subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", "-1", "-m", "-1",
         "--ports_file_dir", str(ports)],
        stdout=subprocess.DEVNULL, stderr=open(out / "nats.log", "w")))
    deadline = time.time() + 10
    while time.time() < deadline:
        for f in ports.iterdir():
            text = f.read_text()
            if text.strip():
                p = json.loads(text)
                monitor = re.sub(r"^http://", "", p["monitoring"][0]).rstrip("/")
                return proc, p["nats"][0], monitor
        if proc.poll() is not None:
            fail("nats-server exited at start (see nats.log)")
        time.sleep(0.05)
    fail("nats-server wrote no ports file")


class Node:
    def __init__(self, name, proc, client, admin):
        self.name, self.proc, self.client, self.admin = name, proc, client, admin
        self.pid = proc.pid


def start_node(binary, out, procs, name, max_conns, nats_url=None, timeout_ms=1000):
    # The load's clients send nothing once logged in: no idle kicks.
    args = [binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--max-connections", str(max_conns), "--idle-timeout", "0"]
    if nats_url:
        args += ["--nats-url", nats_url, "--node-id", name, "--cluster-timeout", str(timeout_ms)]
    proc = procs.add(subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=open(out / f"{name}.err", "w"), text=True))
    line = proc.stdout.readline()
    m = re.search(r"client=(\S+) admin=(\S+)", line)
    if not m:
        fail(f"{name}: no READY line: {line!r} (see {out / (name + '.err')})")
    # Keep reading stdout so the node never blocks on it.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return Node(name, proc, m.group(1), m.group(2))


def wait_members(nodes, count):
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if all(len(get_json(f"http://{n.admin}/api/v1/cluster")["nodes"]) == count
                   for n in nodes):
                return
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"the nodes did not see each other ({count} expected) within 15 s")


class Swarm:
    """One `gateway-bench swarm` process, steered over its stdin/stdout."""

    def __init__(self, binary, name, out, procs):
        self.name = name
        self.proc = procs.add(subprocess.Popen(
            [binary, "--threads", "2", "swarm"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=open(out / f"swarm-{name}.err", "w"),
            text=True, bufsize=1))
        self.lines = queue.Queue()
        self.progress = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, cmd, **fields):
        self.progress = 0
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def poll(self, timeout):
        """The answer if one came within `timeout`, else None."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            raise RuntimeError(f"swarm {self.name} exited (see swarm-{self.name}.err)")
        v = json.loads(line)
        if "progress" in v:
            self.progress = v["progress"]
            return None
        return v


def call(swarms_cmds, label, total=None):
    """Sends each (swarm, cmd, fields), waits for every answer, printing
    progress every 2 s; returns the answers in order."""
    for s, cmd, fields in swarms_cmds:
        s.send(cmd, **fields)
    answers = [None] * len(swarms_cmds)
    started = last = time.time()
    while any(a is None for a in answers):
        for i, (s, _, _) in enumerate(swarms_cmds):
            if answers[i] is None:
                a = s.poll(0.05)
                if a is not None:
                    answers[i] = a
        if time.time() - last >= 2:
            last = time.time()
            # The progress of the first command's kind (logins, deliveries).
            done = sum(s.progress for s, c, _ in swarms_cmds if c == swarms_cmds[0][1])
            of = f"/{total}" if total else ""
            log(f"{label}: {done}{of} after {last - started:.0f}s")
    for (s, cmd, _), a in zip(swarms_cmds, answers):
        if not a.get("ok"):
            raise RuntimeError(f"swarm {s.name} {cmd}: {a.get('error')}")
    return answers


# ---------------------------------------------------------------- figures

def merge_buckets(answers, key):
    merged = {}
    for a in answers:
        for value, count in a.get(key) or []:
            merged[value] = merged.get(value, 0) + count
    return merged


def quantile(buckets, q):
    total = sum(buckets.values())
    if total == 0:
        return None
    seen = 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= q * total:
            return value
    return max(buckets)


class Logs:
    """Membership trouble the nodes and nats-server logged since the last
    look: a node that missed a heartbeat, a node found gone, a node that
    lost NATS, a slow consumer cut off by nats-server."""

    PATTERNS = {
        "missed_heartbeat": "heard again after a missed heartbeat",
        "node_gone": "node gone (no heartbeat)",
        "lost_nats": "lost NATS",
        "slow_consumer": "Slow Consumer",
    }

    def __init__(self, out):
        self.out = out
        self.offsets = {}
        self.look()

    def look(self):
        counts = {k: 0 for k in self.PATTERNS}
        gone = []
        for f in sorted(self.out.glob("*.err")) + [self.out / "nats.log"]:
            if not f.exists():
                continue
            with open(f, errors="replace") as fh:
                fh.seek(self.offsets.get(f.name, 0))
                text = fh.read()
                self.offsets[f.name] = fh.tell()
            for line in text.splitlines():
                for k, pat in self.PATTERNS.items():
                    if pat in line:
                        counts[k] += 1
                        if k == "node_gone":
                            gone.append(line.rsplit("node=", 1)[-1].strip())
        counts["gone_nodes"] = sorted(set(gone))
        return counts


class Sample:
    """CPU of each process (and of each node's nats thread), NATS counters."""

    def __init__(self, run):
        self.t = time.time()
        self.cpu = {n.name: cpu_secs(n.pid) for n in run.live_nodes()}
        self.nats_thread = {n.name: thread_cpu_secs(n.pid, "nats") for n in run.cluster_live()}
        self.nats_cpu = cpu_secs(run.nats.pid)
        self.varz = get_json(f"http://{run.monitor}/varz")
        self.subsz = get_json(f"http://{run.monitor}/subsz")


def delta(a, b, run, names):
    """CPU seconds per process between two samples, and NATS counters."""
    d = {
        "seconds": round(b.t - a.t, 2),
        "cpu_s": {n: round(b.cpu[n] - a.cpu[n], 2) for n in names if n in a.cpu and n in b.cpu},
        "nats_thread_cpu_s": {n: round(b.nats_thread[n] - a.nats_thread[n], 2)
                              for n in names if n in a.nats_thread and n in b.nats_thread},
        "nats_server_cpu_s": round(b.nats_cpu - a.nats_cpu, 2),
    }
    for k in ["in_msgs", "out_msgs", "in_bytes", "out_bytes"]:
        d[k] = b.varz[k] - a.varz[k]
    d["nats_mem_bytes"] = b.varz["mem"] - a.varz["mem"]
    d["nats_subscriptions"] = b.subsz["num_subscriptions"] - a.subsz["num_subscriptions"]
    return d


def us_per(secs, n):
    return round(secs * 1e6 / n, 1) if n else None


def login_figures(answers, d, names_asking, names_answering):
    n = sum(a["logged_in"] for a in answers)
    start = min(a["start_ns"] for a in answers)
    end = max(a["end_ns"] for a in answers)
    secs = (end - start) / 1e9
    b = merge_buckets(answers, "latency_buckets")
    f = {
        "users": n,
        "seconds": round(secs, 2),
        "logins_per_s": round(n / secs) if secs > 0 else None,
        "ok_hello_p50_ms": round(quantile(b, 0.5) / 1000, 1) if b else None,
        "ok_hello_p99_ms": round(quantile(b, 0.99) / 1000, 1) if b else None,
        "errors": sum(a["errors"]["count"] for a in answers),
        "first_error": next((a["errors"]["first"] for a in answers if a["errors"]["first"]), None),
        "node_cpu_us_per_login": us_per(sum(d["cpu_s"].get(x, 0) for x in names_asking), n),
        "nats_server_cpu_us_per_login": us_per(d["nats_server_cpu_s"], n),
        "nats_in_msgs_per_login": round(d["in_msgs"] / n, 2) if n else None,
        "nats_out_msgs_per_login": round(d["out_msgs"] / n, 2) if n else None,
        "raw": d,
    }
    if names_answering:
        f["answering_node_cpu_us_per_login"] = us_per(
            sum(d["cpu_s"].get(x, 0) for x in names_answering) / len(names_answering), n)
        f["answering_nats_thread_cpu_us_per_login"] = us_per(
            sum(d["nats_thread_cpu_s"].get(x, 0) for x in names_answering) / len(names_answering), n)
    if names_asking and d["nats_thread_cpu_s"]:
        f["asking_nats_thread_cpu_us_per_login"] = us_per(
            sum(d["nats_thread_cpu_s"].get(x, 0) for x in names_asking), n)
    return f


# ---------------------------------------------------------------- the run

class Run:
    def __init__(self, args, out):
        self.args, self.out = args, out
        self.procs = Procs()
        self.nodes, self.single, self.dead = [], None, set()
        self.results = {"params": {}, "failures": []}

    def live_nodes(self):
        nodes = [n for n in self.nodes if n.name not in self.dead]
        if self.single and self.single.proc.poll() is None:
            nodes.append(self.single)
        return nodes

    def cluster_live(self):
        return [n for n in self.nodes if n.name not in self.dead]

    def trouble(self, phase):
        """Records the membership trouble logged during `phase`; any is a
        finding (not a broken guarantee), but a node other than a killed
        one found gone is reported as a failure."""
        t = self.logs.look()
        self.results.setdefault("membership", {})[phase] = t
        unexpected = set(t["gone_nodes"]) - self.dead
        if any(t[k] for k in ["missed_heartbeat", "lost_nats", "slow_consumer"]) or unexpected:
            log(f"{phase}: membership trouble: {t}")
        self.check(not unexpected, f"{phase}: live nodes found gone: {sorted(unexpected)}")

    def check(self, cond, msg):
        if not cond:
            self.results["failures"].append(msg)
            log(f"FAILED: {msg}")

    def main(self):
        a = self.args
        k, per = a.nodes, a.users // a.nodes
        max_conns = a.fd_limit - FD_MARGIN
        self.nats, url, self.monitor = start_nats(self.out, self.procs)
        for i in range(k):
            self.nodes.append(start_node(a.gateway, self.out, self.procs, f"n{i + 1}",
                                         max_conns, url, a.cluster_timeout))
        self.single = start_node(a.gateway, self.out, self.procs, "single", max_conns)
        wait_members(self.nodes, k)
        self.logs = Logs(self.out)
        log(f"nats-server and {k} nodes up ({per} users each), and one node without NATS")
        swarms = [Swarm(a.bench, f"w{i + 1}", self.out, self.procs) for i in range(k)]
        producers = [Swarm(a.bench, f"p{i + 1}", self.out, self.procs) for i in range(a.producers)]
        self.producers = producers
        R = self.results
        time.sleep(1)
        base_rss = {n.name: rss_kib(n.pid) for n in self.live_nodes()}
        self.nats_mem0 = get_json(f"http://{self.monitor}/varz")["mem"]
        names = [n.name for n in self.nodes]

        # single: one node without NATS.
        s0 = Sample(self)
        ans = call([(swarms[0], "login", dict(targets=[self.single.client], first=0,
                                              count=per, parallel=a.parallel))],
                   "single: logins", per)
        s1 = Sample(self)
        time.sleep(1)
        R["single"] = login_figures(ans, delta(s0, s1, self, ["single"]), ["single"], [])
        R["single"]["rss_kib_per_conn"] = round(
            (rss_kib(self.single.pid) - base_rss["single"]) / max(1, ans[0]["logged_in"]), 2)
        self.check(R["single"]["errors"] == 0, f"single: {R['single']['errors']} logins failed")
        call([(swarms[0], "close", {})], "single: close")
        self.single.proc.send_signal(signal.SIGTERM)
        self.single.proc.wait(15)
        log(f"single: {R['single']['logins_per_s']} logins/s")

        # first: node n1 alone logs in; the others answer claims.
        s0 = Sample(self)
        ans = call([(swarms[0], "login", dict(targets=[self.nodes[0].client], first=0,
                                              count=per, parallel=a.parallel))],
                   "first: logins on n1", per)
        s1 = Sample(self)
        R["first"] = login_figures(ans, delta(s0, s1, self, names), ["n1"], names[1:])
        self.check(R["first"]["errors"] == 0, f"first: {R['first']['errors']} logins failed")
        log(f"first: {R['first']['logins_per_s']} logins/s on n1")
        self.trouble("first")

        # rest: every other node at once.
        s0 = Sample(self)
        ans = call([(swarms[i], "login", dict(targets=[self.nodes[i].client], first=i * per,
                                              count=per, parallel=a.parallel))
                    for i in range(1, k)], "rest: logins", per * (k - 1))
        s1 = Sample(self)
        R["rest"] = login_figures(ans, delta(s0, s1, self, names), names[1:], [])
        self.check(R["rest"]["errors"] == 0, f"rest: {R['rest']['errors']} logins failed")
        log(f"rest: {R['rest']['logins_per_s']} logins/s over {k - 1} nodes at once")
        self.trouble("rest")

        # idle: memory with every user held, NATS at rest.
        time.sleep(2)
        s0 = Sample(self)
        time.sleep(5)
        s1 = Sample(self)
        d = delta(s0, s1, self, names)
        users = per * k
        R["memory"] = {
            "rss_kib_per_conn": {n.name: round((rss_kib(n.pid) - base_rss[n.name]) / per, 2)
                                 for n in self.nodes},
            "nats_mem_bytes": s1.varz["mem"],
            "nats_connections": s1.varz["connections"],
            "nats_subscriptions": s1.subsz["num_subscriptions"],
        }
        R["memory"]["nats_mem_bytes_per_user"] = round((s1.varz["mem"] - self.nats_mem0) / users, 1)
        R["idle"] = {
            "nats_in_msgs_per_s": round(d["in_msgs"] / d["seconds"], 1),
            "nats_out_msgs_per_s": round(d["out_msgs"] / d["seconds"], 1),
            "nats_in_bytes_per_s": round(d["in_bytes"] / d["seconds"]),
            "node_cpu_pct": {n: round(c / d["seconds"] * 100, 1) for n, c in d["cpu_s"].items()},
            "raw": d,
        }
        log(f"idle: NATS {R['idle']['nats_in_msgs_per_s']} msgs/s in, RSS/conn "
            f"{R['memory']['rss_kib_per_conn']} KiB")
        self.trouble("idle")

        # broadcast: to every connection.
        R["broadcast"] = self.broadcast(swarms, producers, a.broadcasts, 0, "broadcast")
        self.trouble("broadcast")
        # One at a time, 1.5 s apart: the latency of a broadcast to everyone
        # rather than of a queue of them.
        R["broadcast_paced"] = self.broadcast(swarms, producers[:1], 8, a.producers, "broadcast paced",
                                              interval_ms=1500)
        self.trouble("broadcast paced")

        # storm: kill the last node.
        victim = self.nodes[-1]
        survivors = self.nodes[:-1]
        w = swarms[-1]
        s0 = Sample(self)
        w.send("storm", targets=[x.client for x in survivors], admins=[x.admin for x in survivors],
               parallel=a.parallel, http_per_admin=16, timeout_s=a.storm_timeout)
        time.sleep(1)
        kill_ns = time.time_ns()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        self.dead.add(victim.name)
        log(f"storm: {victim.name} killed with {per} users")
        answer = None
        started = last = time.time()
        while answer is None:
            answer = w.poll(0.2)
            if time.time() - last >= 2:
                last = time.time()
                log(f"storm: {w.progress}/{per} logged in again after {last - started:.0f}s")
        if not answer.get("ok"):
            raise RuntimeError(f"storm: {answer.get('error')}")
        s1 = Sample(self)
        d = delta(s0, s1, self, [x.name for x in survivors])
        st = answer
        secs = (st["last_ok_ns"] - kill_ns) / 1e9 if st["last_ok_ns"] else None
        hb = merge_buckets([st], "hello_latency_buckets")
        R["storm"] = {
            "users": st["users"],
            "relogged": st["relogged"],
            "seconds_kill_to_last_ok_hello": round(secs, 2) if secs else None,
            "logins_per_s": round(st["relogged"] / secs) if secs else None,
            "ok_hello_p50_ms": round(quantile(hb, 0.5) / 1000, 1) if hb else None,
            "ok_hello_p99_ms": round(quantile(hb, 0.99) / 1000, 1) if hb else None,
            "ok_hello_max_ms": round(max(hb) / 1000, 1) if hb else None,
            # Logins that waited about the whole --cluster-timeout (on the
            # killed node, before NATS knew it was gone).
            "ok_hello_over_timeout": sum(c for v, c in hb.items()
                                         if v >= a.cluster_timeout * 1000 * 0.9),
            "kill_to_first_eof_ms": round((st["first_end_ns"] - kill_ns) / 1e6, 1)
            if st["first_end_ns"] else None,
            "sends_delivered": st["sends_delivered"],
            "login_errors": st["login_errors"],
            "early_frames": st["early"],
            "send_errors": st["send_errors"],
            "lost": st["lost"],
            "send_to_arrival": st["send_latency"],
            "survivor_cpu_us_per_login": us_per(sum(d["cpu_s"].values()), st["relogged"]),
            "nats_server_cpu_us_per_login": us_per(d["nats_server_cpu_s"], st["relogged"]),
            "nats_in_msgs_per_login": round(d["in_msgs"] / st["relogged"], 2) if st["relogged"] else None,
            "raw": d,
        }
        for key in ["login_errors", "early", "send_errors", "lost"]:
            self.check(st[key]["count"] == 0, f"storm: {st[key]['count']} {key}; first: {st[key]['first']}")
        self.check(st["relogged"] == per, f"storm: {st['relogged']} of {per} logged in again")
        self.check(st["sends_delivered"] == per, f"storm: {st['sends_delivered']} of {per} sends arrived")
        log(f"storm: {st['relogged']} in {R['storm']['seconds_kill_to_last_ok_hello']}s, "
            f"{st['sends_delivered']} sends arrived, {st['lost']['count']} lost")
        self.trouble("storm")

        # after: everyone still there, a broadcast reaches all.
        R["after"] = self.broadcast(swarms, producers[:1], 5, a.producers + 1, "after",
                                    admins=[x.admin for x in survivors], interval_ms=1500)
        checks = call([(s, "check", {}) for s in swarms], "check")
        for s, c in zip(swarms, checks):
            self.check(c["ended"]["count"] == 0 and c["unexpected"]["count"] == 0,
                       f"check {s.name}: {c['ended']['count']} ended ({c['ended']['first']}), "
                       f"{c['unexpected']['count']} unexpected ({c['unexpected']['first']})")
        R["check"] = checks
        self.trouble("after")
        if a.topic_steps:
            R["calm_before_topics_s"] = self.calm()
            self.topics(swarms)

    def calm(self, quiet=10, most=120):
        """Waits until the nodes logged no membership trouble for `quiet`
        seconds (at most `most`); returns how long that took."""
        started = last_trouble = time.time()
        while time.time() - last_trouble < quiet and time.time() - started < most:
            time.sleep(1)
            t = self.logs.look()
            self.results.setdefault("membership", {}).setdefault("calm", {k: 0 for k in t})
            calm = self.results["membership"]["calm"]
            for k, v in t.items():
                if k != "gone_nodes":
                    calm[k] += v
            if any(t[k] for k in ["missed_heartbeat", "lost_nats", "slow_consumer", "node_gone"]):
                last_trouble = time.time()
        took = round(time.time() - started, 1)
        log(f"calm: no membership trouble for {quiet}s after {took}s")
        return took

    def topics(self, swarms):
        """Every user subscribes to its own topic, in steps: NATS interest
        (and each node's NATS subscriptions) grow by one per user; the cost
        of a SUB is measured at each size."""
        a, R = self.args, self.results
        live = self.cluster_live()
        names = [n.name for n in live]
        held = sum(c["held"] for c in call([(s, "check", {}) for s in swarms], "topics: count"))
        per_step = -(-held // a.topic_steps)
        R["topics"] = {"steps": []}
        s_start = Sample(self)
        rss_start = {n.name: rss_kib(n.pid) for n in live}
        R["topics"]["node_rss_kib_before"] = rss_start
        done = 0
        for step in range(a.topic_steps):
            s0 = Sample(self)
            count = -(-per_step // len(swarms))
            ans = call([(s, "sub", dict(parallel=a.parallel, count=count)) for s in swarms],
                       f"topics step {step + 1}: SUB t.<user>", None)
            s1 = Sample(self)
            d = delta(s0, s1, self, names)
            n = sum(x["subscribed"] for x in ans)
            done += n
            secs = (max(x["end_ns"] for x in ans) - min(x["start_ns"] for x in ans)) / 1e9
            errors = sum(x["errors"]["count"] for x in ans)
            f = {
                "topics_before": done - n,
                "topics_after": done,
                "subs_per_s": round(n / secs) if secs > 0 and n else None,
                "errors": errors,
                "first_error": next((x["errors"]["first"] for x in ans if x["errors"]["first"]), None),
                "sub_p99_ms": max((x["latency"].get("p99_us") or 0) for x in ans) / 1000,
                "nats_thread_cpu_us_per_sub": us_per(sum(d["nats_thread_cpu_s"].values()), n),
                "node_cpu_us_per_sub": us_per(sum(d["cpu_s"].values()), n),
                "nats_server_cpu_us_per_sub": us_per(d["nats_server_cpu_s"], n),
                "nats_in_msgs_per_sub": round(d["in_msgs"] / n, 2) if n else None,
                "raw": d,
            }
            i0 = Sample(self)
            time.sleep(3)
            i1 = Sample(self)
            di = delta(i0, i1, self, names)
            f["node_rss_kib"] = {x.name: rss_kib(x.pid) for x in live}
            f["idle_nats_thread_cpu_pct"] = round(
                sum(di["nats_thread_cpu_s"].values()) / len(names) / di["seconds"] * 100, 1)
            R["topics"]["steps"].append(f)
            self.check(errors == 0, f"topics step {step + 1}: {errors} SUBs failed; first: {f['first_error']}")
            log(f"topics step {step + 1}: {done} topics, {f['subs_per_s']} SUBs/s, "
                f"{f['nats_thread_cpu_us_per_sub']} µs nats-thread CPU per SUB")
            self.trouble(f"topics step {step + 1}")
            if n == 0:
                break
        time.sleep(2)
        s_end = Sample(self)
        d = delta(s_start, s_end, self, names)
        R["topics"].update({
            "topics": done,
            "nats_subscriptions_added": d["nats_subscriptions"],
            "nats_mem_bytes_per_topic": round(d["nats_mem_bytes"] / done, 1) if done else None,
            "node_rss_kib_per_topic": round(
                sum(rss_kib(x.pid) - rss_start[x.name] for x in live) / done, 3) if done else None,
        })
        # At rest with every topic subscribed: the nats threads' CPU.
        s0 = Sample(self)
        time.sleep(5)
        s1 = Sample(self)
        d = delta(s0, s1, self, names)
        R["topics"]["idle_nats_thread_cpu_pct"] = {
            x: round(c / d["seconds"] * 100, 1) for x, c in d["nats_thread_cpu_s"].items()}
        self.trouble("topics idle")
        # A broadcast still reaches everyone.
        R["topics"]["broadcast"] = self.broadcast(swarms, [self.producers[0]], 5,
                                                  a.producers + 2, "topics broadcast",
                                                  admins=[x.admin for x in live], interval_ms=1500)
        self.trouble("topics broadcast")

    def broadcast(self, swarms, producers, count, first_id, label, admins=None, interval_ms=0):
        admins = admins or [n.admin for n in self.cluster_live()]
        names = [n.name for n in self.cluster_live()]
        s0 = Sample(self)
        jobs = [(s, "expect", dict(producers=len(producers), count=count,
                                   timeout_s=self.args.storm_timeout)) for s in swarms]
        jobs += [(p, "broadcast", dict(admin=admins[i % len(admins)], producer=first_id + i,
                                       count=count, interval_ms=interval_ms))
                 for i, p in enumerate(producers)]
        ans = call(jobs, f"{label}: deliveries", None)
        s1 = Sample(self)
        d = delta(s0, s1, self, names)
        exp, posts = ans[:len(swarms)], ans[len(swarms):]
        held = sum(x["connections"] for x in exp)
        delivered = sum(x["received"] for x in exp)
        start = min(p["start_ns"] for p in posts)
        end = max(x["last_ns"] for x in exp)
        secs = (end - start) / 1e9
        b = merge_buckets(exp, "latency_buckets")
        f = {
            "connections": held,
            "broadcasts": count * len(producers),
            "producers": len(producers),
            "interval_ms": interval_ms,
            "deliveries": delivered,
            "expected": sum(x["expected"] for x in exp),
            "missing": sum(x["missing"] for x in exp),
            "reordered": sum(x["reordered"] for x in exp),
            "seconds": round(secs, 2),
            "deliveries_per_s": round(delivered / secs) if secs > 0 else None,
            "p50_ms": round(quantile(b, 0.5) / 1000, 1) if b else None,
            "p99_ms": round(quantile(b, 0.99) / 1000, 1) if b else None,
            "post_errors": sum(p["errors"]["count"] for p in posts),
            "first_post_error": next((p["errors"]["first"] for p in posts if p["errors"]["first"]), None),
            "delivered_to_reported": sum(p["delivered_to"] for p in posts),
            "node_cpu_us_per_delivery": us_per(sum(d["cpu_s"].values()), delivered),
            "nats_out_msgs_per_broadcast": round(d["out_msgs"] / (count * len(producers)), 2),
            "ended": sum(x["ended"]["count"] for x in exp),
            "unexpected": sum(x["unexpected"]["count"] for x in exp),
            "raw": d,
        }
        for key in ["missing", "reordered", "post_errors", "ended", "unexpected"]:
            self.check(f[key] == 0, f"{label}: {f[key]} {key}")
        self.check(f["deliveries"] == f["expected"],
                   f"{label}: {f['deliveries']} deliveries of {f['expected']}")
        log(f"{label}: {f['deliveries']} deliveries, {f['deliveries_per_s']}/s, p99 {f['p99_ms']} ms")
        return f


def table(R, a, machine):
    s, fi, re_, m, i, t, b, bp, st, af = (R.get(k, {}) for k in
                                          ["single", "first", "rest", "memory", "idle", "topics",
                                           "broadcast", "broadcast_paced", "storm", "after"])
    k, per = a.nodes, a.users // a.nodes
    rows = [
        f"{k} nodes x {per} users ({per * k} in all), --parallel {a.parallel} logins in flight per "
        f"process, --cluster-timeout {a.cluster_timeout}; {machine}",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| logins/s, one node without NATS ({per} users) | {s.get('logins_per_s')} "
        f"(p50 {s.get('ok_hello_p50_ms')} ms, p99 {s.get('ok_hello_p99_ms')} ms; "
        f"{s.get('node_cpu_us_per_login')} µs node CPU per login) |",
        f"| logins/s, cluster node n1 alone ({per} users, {k - 1} nodes answering) | "
        f"{fi.get('logins_per_s')} (p50 {fi.get('ok_hello_p50_ms')} ms, p99 {fi.get('ok_hello_p99_ms')} ms; "
        f"{fi.get('node_cpu_us_per_login')} µs CPU on n1, {fi.get('answering_node_cpu_us_per_login')} µs on "
        f"each answering node, {fi.get('nats_server_cpu_us_per_login')} µs in nats-server) |",
        f"| logins/s, {k - 1} cluster nodes at once ({per * (k - 1)} users) | {re_.get('logins_per_s')} "
        f"(p50 {re_.get('ok_hello_p50_ms')} ms, p99 {re_.get('ok_hello_p99_ms')} ms) |",
        f"| NATS messages per login (in / out) | {fi.get('nats_in_msgs_per_login')} / "
        f"{fi.get('nats_out_msgs_per_login')} |",
        f"| nats thread CPU per login: asking node / each answering node | "
        f"{fi.get('asking_nats_thread_cpu_us_per_login')} µs / "
        f"{fi.get('answering_nats_thread_cpu_us_per_login')} µs |",
        f"| gateway RSS per connection: one node / cluster nodes | {s.get('rss_kib_per_conn')} KiB / "
        f"{', '.join(f'{v}' for v in (m.get('rss_kib_per_conn') or {}).values())} KiB |",
        f"| NATS: subscriptions / memory with {per * k} users held, no topics | "
        f"{m.get('nats_subscriptions')} / {round((m.get('nats_mem_bytes') or 0) / 2**20, 1)} MiB "
        f"({m.get('nats_mem_bytes_per_user')} B per user over the start) |",
        f"| NATS at rest (heartbeats): msgs/s in, out; bytes/s in | {i.get('nats_in_msgs_per_s')}, "
        f"{i.get('nats_out_msgs_per_s')}; {i.get('nats_in_bytes_per_s')} |",
        f"| broadcasts back to back to {b.get('connections')} connections: deliveries/s, p50, p99 | "
        f"{b.get('deliveries_per_s')}, {b.get('p50_ms')} ms, {b.get('p99_ms')} ms "
        f"({b.get('broadcasts')} broadcasts, {b.get('deliveries')} deliveries) |",
        f"| one broadcast every 1.5 s to {bp.get('connections')} connections: p50, p99 | "
        f"{bp.get('p50_ms')} ms, {bp.get('p99_ms')} ms ({bp.get('deliveries')} deliveries) |",
        f"| storm: {st.get('users')} users of a killed node, kill to last OK HELLO | "
        f"{st.get('seconds_kill_to_last_ok_hello')} s ({st.get('logins_per_s')} logins/s; "
        f"OK HELLO p50 {st.get('ok_hello_p50_ms')} ms, p99 {st.get('ok_hello_p99_ms')} ms, "
        f"max {st.get('ok_hello_max_ms')} ms; {st.get('ok_hello_over_timeout')} waited about "
        f"--cluster-timeout) |",
        f"| storm: user sends after OK HELLO arrived / lost / refused; send to arrival p50, p99 | "
        f"{st.get('sends_delivered')} / {(st.get('lost') or {}).get('count')} / "
        f"{(st.get('send_errors') or {}).get('count')}; "
        f"{round(((st.get('send_to_arrival') or {}).get('p50_us') or 0) / 1000, 1)} ms, "
        f"{round(((st.get('send_to_arrival') or {}).get('p99_us') or 0) / 1000, 1)} ms |",
        f"| after the storm: broadcast to {af.get('connections')} connections | "
        f"{af.get('deliveries')} of {af.get('expected')}, {af.get('deliveries_per_s')}/s, p99 {af.get('p99_ms')} ms |",
        f"| missing / reordered (every broadcast round) | "
        f"{sum(x.get('missing', 0) for x in [b, bp, af, t.get('broadcast') or {}])} / "
        f"{sum(x.get('reordered', 0) for x in [b, bp, af, t.get('broadcast') or {}])} |",
    ]
    if t.get("steps"):
        rows += [f"| one topic per user, step {i + 1} ({x['topics_before']} to {x['topics_after']} topics): "
                 f"SUBs/s; nats-thread CPU per SUB; SUB p99; then at rest, nats-thread CPU per node | "
                 f"{x['subs_per_s']}; {x['nats_thread_cpu_us_per_sub']} µs; {x['sub_p99_ms']} ms; "
                 f"{x.get('idle_nats_thread_cpu_pct')}% |"
                 for i, x in enumerate(t["steps"])]
        tb = t.get("broadcast") or {}
        rows += [
            f"| one topic per user: NATS subscriptions added; NATS memory per topic; gateway RSS per "
            f"topic (all nodes) | {t.get('nats_subscriptions_added')}; {t.get('nats_mem_bytes_per_topic')} B; "
            f"{t.get('node_rss_kib_per_topic')} KiB |",
            f"| with {t.get('topics')} topics, at rest: nats-thread CPU per node | "
            f"{', '.join(f'{v}%' for v in (t.get('idle_nats_thread_cpu_pct') or {}).values())} |",
            f"| with {t.get('topics')} topics: broadcast to {tb.get('connections')} connections | "
            f"{tb.get('deliveries')} of {tb.get('expected')}, {tb.get('deliveries_per_s')}/s, "
            f"p99 {tb.get('p99_ms')} ms |",
        ]
    trouble = {ph: {k: v for k, v in x.items() if v} for ph, x in (R.get("membership") or {}).items()}
    trouble = {ph: x for ph, x in trouble.items() if x}
    rows.append(f"| membership trouble logged (missed heartbeats, nodes gone, NATS lost, slow consumers) | "
                f"{'; '.join(f'{ph}: {x}' for ph, x in trouble.items()) or 'none'} |")
    if R["failures"]:
        rows += ["", "FAILED:"] + [f"- {x}" for x in R["failures"]]
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, required=True, help="users in the cluster, spread evenly over the nodes")
    ap.add_argument("--nodes", type=int, required=True, help="cluster nodes (at least 2)")
    ap.add_argument("--parallel", type=int, default=200, help="logins in flight per load process")
    ap.add_argument("--broadcasts", type=int, default=50, help="broadcasts per producer")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--cluster-timeout", type=int, default=1000)
    ap.add_argument("--topic-steps", type=int, default=4,
                    help="at the end, every user subscribes to its own topic in this many steps (0: not)")
    ap.add_argument("--storm-timeout", type=float, default=300.0, help="seconds")
    ap.add_argument("--gateway", default="target/release/gateway")
    ap.add_argument("--bench", default="target/release/gateway-bench")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.nodes < 2:
        fail(f"--nodes {a.nodes}: a cluster needs at least 2 nodes")
    if a.users < a.nodes:
        fail(f"--users {a.users}: at least one user per node ({a.nodes})")
    if a.topic_steps < 0:
        fail(f"--topic-steps {a.topic_steps}: must be 0 or more")
    if a.users % a.nodes:
        fail(f"--users {a.users} does not split evenly over {a.nodes} nodes")
    for name, v in [("--parallel", a.parallel), ("--broadcasts", a.broadcasts),
                    ("--producers", a.producers), ("--cluster-timeout", a.cluster_timeout)]:
        if v < 1:
            fail(f"{name} {v}: must be at least 1")
    a.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per = a.users // a.nodes
    after = per + -(-per // (a.nodes - 1))
    if after + FD_MARGIN > a.fd_limit:
        most = (a.fd_limit - FD_MARGIN) * (a.nodes - 1) // a.nodes * a.nodes
        fail(f"--users {a.users} --nodes {a.nodes}: after the storm a survivor holds {after} "
             f"connections, over what one process may open here (ulimit -n {a.fd_limit}, "
             f"{FD_MARGIN} kept for other files); use at most --users {most} with --nodes {a.nodes}, "
             f"or more nodes")
    for path in [a.gateway, a.bench]:
        if not os.access(path, os.X_OK):
            fail(f"{path} not found (cargo build --release -p gateway -p gateway-bench)")
    if not shutil.which("nats-server"):
        fail("nats-server not found (apt-get install nats-server)")
    out = pathlib.Path(a.out or time.strftime("target/bench/cluster-scale-%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    run = Run(a, out)
    started = time.time()
    try:
        run.main()
    except (RuntimeError, OSError) as e:
        run.results["failures"].append(f"aborted: {e}")
        log(f"aborted: {e}")
    finally:
        run.procs.stop()
    cpu = subprocess.run(["sh", "-c", "sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1"],
                         capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    machine = (f"{os.cpu_count()} CPUs ({cpu}) shared by nats-server, the nodes and the load; "
               f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, load average "
               f"{' '.join(open('/proc/loadavg').read().split()[:3])} at the end, "
               f"{time.time() - started:.0f}s; commit {commit}.")
    run.results["params"] = {"users": a.users, "nodes": a.nodes, "parallel": a.parallel,
                             "broadcasts": a.broadcasts, "producers": a.producers,
                             "cluster_timeout_ms": a.cluster_timeout, "machine": machine}
    (out / "results.json").write_text(json.dumps(run.results, indent=1))
    text = table(run.results, a, machine)
    (out / "table.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    sys.exit(1 if run.results["failures"] else 0)


if __name__ == "__main__":
    main()
