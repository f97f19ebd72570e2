#!/usr/bin/env python3
"""Helpers for deploy/check.sh: the deployment files agree with each other
and with the gateway.

Each file's own syntax and semantics are left to its tool: `docker-compose
config` (or `docker compose config --format json`) validates and normalizes
the compose file, which is read here only in that normalized form; promtool
checks the Prometheus configuration, the alert rules and their unit tests,
and every dashboard query as PromQL. What is here compares files: the
Dockerfile with the workspace and the compose file, the compose file with
the gateway's flags, Prometheus with the services it scrapes, Grafana with
its data source and the metrics the gateway exports.

usage: check_deploy.py COMMAND [ARGS...]   (run from the repository root)

  static GATEWAY_BIN COMPOSE_CONFIG        the files agree with each other and
                                           with the gateway's flags
  cluster COMPOSE_CONFIG                   the profile cluster (config made with
                                           --profile cluster): NATS, two nodes,
                                           scraped, on the dashboard, alerted on
  gateway-env COMPOSE_CONFIG [SERVICE]     the gateway's environment in the
                                           container (Dockerfile ENV, then
                                           compose environment), NAME=VALUE lines
  stage-manifests DEST                     copy what the Dockerfile's builder
                                           copies before its dependency build
  exprs-as-rules OUT                       every dashboard query as a recording
                                           rule, for promtool
  prom-config ADMIN_ADDRS OUT              a Prometheus config scraping
                                           ADMIN_ADDRS (comma separated) every 1s
                                           as deploy/prometheus.yml's gateway job
  wait-up PROM_URL TIMEOUT                 wait until the gateway target is up
  traffic CLIENT_ADDR                      a few short client sessions
  promql PROM_URL ADMIN_ADDR               run every dashboard and rule query;
                                           each metric they select is exported
  hold-client CLIENT_ADDR OUT              open a client, report what it reads

COMPOSE_CONFIG is the output of `docker-compose config` (YAML) or of
`docker compose config --format json`: YAML reads both.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import yaml

DEPLOY = "deploy"
DOCKERFILE = f"{DEPLOY}/Dockerfile"
COMPOSE = f"{DEPLOY}/docker-compose.yml"
PROMETHEUS = f"{DEPLOY}/prometheus.yml"
DASHBOARD_DIR = f"{DEPLOY}/grafana/dashboards"
PROVISIONING = f"{DEPLOY}/grafana/provisioning"
SERVICE = "gateway"
ALL_INTERFACES = ("0.0.0.0", "::")

# Contract section 1: every flag the deployment may set, and its default.
CONTRACT_FLAGS = {
    "--listen": "0.0.0.0:7000",
    "--admin-listen": "127.0.0.1:9000",
    "--framing": "lines",
    "--max-frame-bytes": "65536",
    "--max-connections": "10000",
    "--max-pending-bytes": "1048576",
    "--max-subscriptions": "1024",
    "--idle-timeout": "300",
    "--close-timeout": "10",
    "--shutdown-timeout": "10",
    "--pool-max-idle": "1024",
    "--workers": None,
    "--admin-token": None,
    "--log-format": "text",
}
CONTRACT_ENV = {"GATEWAY_" + f[2:].upper().replace("-", "_"): f for f in CONTRACT_FLAGS}

DASHBOARD_METRICS = (
    "gateway_connections_active", "gateway_connections_accepted_total", "gateway_connections_closed_total",
    "gateway_pool_reused_total", "gateway_pool_allocated_total", "gateway_close_flush_duration_seconds_bucket",
    "gateway_bytes_received_total", "gateway_bytes_sent_total", "gateway_frames_received_total",
    "gateway_frames_sent_total", 'reason="slow"', "process_resident_memory_bytes", "process_open_fds",
)
CLUSTER_NODES = ("gateway-node-1", "gateway-node-2")
CLUSTER_METRICS = ("gateway_nats_connected", "gateway_nats_reconnects_total", "gateway_cluster_messages_total",
                   "gateway_cluster_dropped_total", "gateway_cluster_missed_total")

failures = []


def check(cond, msg, detail=""):
    if cond:
        print(f"  ok: {msg}")
    else:
        print(f"  FAIL: {msg}" + (f" ({detail})" if detail else ""))
        failures.append(msg)
    return cond


def finish():
    if failures:
        print(f"  {len(failures)} check(s) failed")
        sys.exit(1)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------
# what each file says, read as little as the comparisons need


def dockerfile_stages():
    """[[(INSTRUCTION, args)]] per stage. Read by hand, as Debian ships no
    Dockerfile parser for Python: continued lines joined, comments skipped,
    nothing else (the image build checks the syntax)."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", f.read())
    stages = []
    for line in text.splitlines():
        instr, _, args = line.strip().partition(" ")
        if not instr or instr.startswith("#"):
            continue
        if instr.upper() == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((instr.upper(), args.strip()))
    return stages


def args_of(stage, instr):
    return [a for i, a in stage if i == instr]


def exec_form(args):
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        val = json.loads(args)
    except ValueError:
        return None
    return val if isinstance(val, list) and val and all(isinstance(x, str) for x in val) else None


def copies(stage):
    """(sources, destination) of each COPY from the build context."""
    out = []
    for args in args_of(stage, "COPY"):
        parts = exec_form(args) or args.split()
        if not any(p.startswith("--from") for p in parts):
            paths = [p for p in parts if not p.startswith("--")]
            out.append((paths[:-1], paths[-1]))
    return out


def image_env():
    """ENV of the runtime stage; ours are all KEY=VALUE without spaces."""
    env = {}
    for args in args_of(dockerfile_stages()[-1], "ENV"):
        env.update(pair.split("=", 1) for pair in args.split())
    return env


def gateway_env(compose_cfg, service=SERVICE):
    """The environment in the container: the image's, then compose's."""
    svc_env = compose_cfg["services"][service].get("environment") or {}
    return image_env() | {k: "" if v is None else str(v) for k, v in svc_env.items()}


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def host_of(addr):
    return addr.rsplit(":", 1)[0].strip("[]")


def published_targets(svc):
    """Container ports a service publishes (docker-compose v1 leaves some as
    `host:published:target/proto`, v2 writes them all long)."""
    return [int(p["target"]) if isinstance(p, dict) else int(str(p).split("/")[0].rsplit(":", 1)[1])
            for p in svc.get("ports") or []]


def binds(svc):
    """{real host path: container path} of a service's bind mounts (v1 writes
    them `/abs/source:target:mode`, v2 long)."""
    out = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = (v.get("source"), v.get("target")) if v.get("type") == "bind" else (None, None)
        else:
            src, dst = (str(v).split(":") + [""])[:2]
        if src and src.startswith("/"):
            out[os.path.realpath(src)] = dst
    return out


def seconds(duration):
    """A Go duration as both compose versions write stop_grace_period (`30s`, `1m30s`)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", str(duration)))


def help_names(gateway_bin):
    """The GATEWAY_* variables and the flags `gateway --help` lists."""
    out = subprocess.run([gateway_bin, "--help"], capture_output=True, text=True, timeout=10)
    text = out.stdout + out.stderr
    return set(re.findall(r"\bGATEWAY_[A-Z_]+\b", text)), set(re.findall(r"--[a-z][a-z-]+", text))


def gateway_job(prom):
    for job in prom.get("scrape_configs", []):
        if SERVICE in [n for c in job.get("dns_sd_configs", []) for n in c.get("names", [])]:
            return job
    return None


def dashboards():
    for name in sorted(os.listdir(DASHBOARD_DIR)):
        if name.endswith(".json"):
            path = os.path.join(DASHBOARD_DIR, name)
            with open(path, encoding="utf-8") as f:
                yield path, json.load(f)


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(dash):
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q)
            yield f"variable ${v['name']}", m.group(1) if m else q


GRAFANA_VARS = {"$__rate_interval": "10s", "${__rate_interval}": "10s", "$__interval": "2s",
                "${__interval}": "2s", "$__range": "1m", "${__range}": "1m"}


def substitute(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    # A dashboard variable's "All" is ".*" in a regex matcher.
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def rule_exprs():
    for rf in load_yaml(PROMETHEUS).get("rule_files", []):
        for g in load_yaml(os.path.join(DEPLOY, rf)).get("groups", []):
            for r in g.get("rules", []):
                yield f"rule {r.get('alert') or r.get('record')}", r["expr"]


def all_exprs():
    out = [(f"{os.path.basename(path)} {where}", substitute(e))
           for path, dash in dashboards() for where, e in dashboard_exprs(dash)]
    return out + list(rule_exprs())


# --------------------------------------------------------------------------
# static: the files against each other


def check_dockerfile_against_workspace():
    print("- Dockerfile against the workspace")
    builder = dockerfile_stages()[0]
    with open("Cargo.toml", "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    copied = {s.rstrip("/") for srcs, _ in copies(builder) for s in srcs}
    for src in sorted(copied):
        check(os.path.exists(src), f"COPY source {src} exists in the build context")
    check("Cargo.lock" in copied, "builder copies Cargo.lock (builds are --locked)")
    for m in members:
        check(f"{m}/Cargo.toml" in copied, f"builder copies member manifest {m}/Cargo.toml")
        check(m in copied, f"builder copies member sources {m}/")
    stub = re.search(r"stub-sources\s+([^>&|;]+)", " ".join(args_of(builder, "RUN")))
    check(stub and set(stub.group(1).split()) == set(members),
          "dependency layer stubs every workspace member", stub.group(1) if stub else "no stub-sources call")


def check_image(cfg, gateway_bin):
    """The runtime stage against the compose file and the gateway's flags; returns the exposed ports."""
    print("- the image against the compose file and the gateway's flags")
    final = dockerfile_stages()[-1]
    in_image = {dest for a in args_of(final, "COPY") for dest in [(exec_form(a) or a.split())[-1]]}
    ep = exec_form(args_of(final, "ENTRYPOINT")[-1]) if args_of(final, "ENTRYPOINT") else None
    check(ep and ep[0] in in_image and ep[0].endswith("/gateway"),
          "ENTRYPOINT runs the gateway binary the runtime stage copies, exec form (signals reach it)", ep)
    hc = args_of(final, "HEALTHCHECK")
    probe = exec_form(hc[-1].split(" CMD ", 1)[1]) if hc and " CMD " in hc[-1] else None
    check(probe and probe[0] in in_image, "HEALTHCHECK runs a probe the runtime stage copies", probe)
    exposed = {int(p.split("/")[0]) for a in args_of(final, "EXPOSE") for p in a.split()}
    # The gateway never needs root: a process reachable from the network
    # runs as a user of its own.
    users = args_of(final, "USER")
    check(users and users[-1].split(":")[0] not in ("0", "root"),
          "the runtime stage runs as a non-root USER", users)

    env = gateway_env(cfg)
    help_env, help_flags = help_names(gateway_bin)
    for name in sorted(k for k in env if k.startswith("GATEWAY_")):
        flag = CONTRACT_ENV.get(name)
        check(flag is not None, f"{name} is the variable of contract flag {flag or '?'}")
        check(name in help_env, f"{name} is listed by `gateway --help`")
        check(flag in help_flags, f"{flag} is listed by `gateway --help`")
    listen = env.get("GATEWAY_LISTEN", CONTRACT_FLAGS["--listen"])
    admin = env.get("GATEWAY_ADMIN_LISTEN", CONTRACT_FLAGS["--admin-listen"])
    check(host_of(image_env().get("GATEWAY_ADMIN_LISTEN", "127.0.0.1:0")) in ALL_INTERFACES,
          "the image sets GATEWAY_ADMIN_LISTEN to all interfaces (the default 127.0.0.1 is unreachable from outside)")
    check(host_of(admin) in ALL_INTERFACES, f"in compose the admin API listens on {admin}: reachable on the network")
    check(host_of(listen) in ALL_INTERFACES, f"in compose the client listener is {listen}")
    check(exposed == {port_of(listen), port_of(admin)},
          f"EXPOSE {sorted(exposed)}: the client and admin ports the environment listens on")
    return env, listen, admin


def check_compose(cfg, env, listen, admin):
    print("- docker-compose.yml against the Dockerfile and the gateway")
    svc = cfg["services"][SERVICE]
    build = svc.get("build") or {}
    check(os.path.realpath(build.get("context", "")) == os.path.realpath("."), "build context is the repository root")
    check(build.get("dockerfile") in (DOCKERFILE, os.path.realpath(DOCKERFILE)), f"build uses {DOCKERFILE}")
    check("entrypoint" not in svc, "compose keeps the image's exec-form ENTRYPOINT")
    check("container_name" not in svc, "no container_name (replicas can be scaled)")
    targets = published_targets(svc)
    for target in targets:
        check(target in (port_of(listen), port_of(admin)), f"published container port {target} is a gateway listener")
    check(port_of(listen) in targets, "the client port is published")
    check(env.get("GATEWAY_ADMIN_TOKEN"), "GATEWAY_ADMIN_TOKEN is set")
    with open(COMPOSE, encoding="utf-8") as f:
        raw = f.read()
    check(re.search(r"GATEWAY_ADMIN_TOKEN:\s*\"?\$\{GATEWAY_ADMIN_TOKEN", raw) is not None,
          "the token comes from the GATEWAY_ADMIN_TOKEN variable of the caller's environment")
    shutdown = float(env.get("GATEWAY_SHUTDOWN_TIMEOUT", CONTRACT_FLAGS["--shutdown-timeout"]))
    grace = seconds(svc.get("stop_grace_period", "10s"))
    check(grace >= shutdown + 5, f"stop_grace_period {grace:g}s exceeds the shutdown timeout {shutdown:g}s with headroom")
    check(svc.get("stop_signal", "SIGTERM") in ("SIGTERM", "SIGINT"), "the stop signal starts the drain")
    nofile = (svc.get("ulimits") or {}).get("nofile")
    soft = nofile.get("soft") if isinstance(nofile, dict) else nofile
    maxconn = int(env.get("GATEWAY_MAX_CONNECTIONS", CONTRACT_FLAGS["--max-connections"]))
    check(soft is not None and int(soft) >= maxconn + 1024, f"ulimit nofile {soft} leaves room for {maxconn} connections")
    for name, s in cfg["services"].items():
        for src in binds(s):
            check(os.path.exists(src), f"{name}: bind-mount source {os.path.relpath(src)} exists")


def check_prometheus(cfg, admin):
    print("- prometheus.yml against the compose file")
    prom = load_yaml(PROMETHEUS)
    job = gateway_job(prom)
    if not check(job is not None, f"a scrape job finds the {SERVICE} service through DNS (dns_sd_configs)"):
        return
    ports = [c.get("port") for c in job["dns_sd_configs"] if SERVICE in c.get("names", [])]
    check(port_of(admin) in ports, f"job {job['job_name']} scrapes the admin port {port_of(admin)}")
    check(job.get("metrics_path", "/metrics") == "/metrics", "metrics path is /metrics (open without a token)")
    mounts = binds(cfg["services"].get("prometheus", {}))
    cfg_target = mounts.get(os.path.realpath(PROMETHEUS))
    check(cfg_target is not None, f"prometheus mounts {PROMETHEUS}")
    for rf in prom.get("rule_files", []):
        want = os.path.join(os.path.dirname(cfg_target or "/"), rf)
        check(mounts.get(os.path.realpath(os.path.join(DEPLOY, rf))) == want,
              f"rule file {rf} is mounted where the config looks for it ({want})")


def check_grafana(cfg):
    print("- Grafana against the compose file, its data source and the gateway's metrics")
    ds = load_yaml(f"{PROVISIONING}/datasources/prometheus.yml")["datasources"]
    for d in ds:
        u = urllib.parse.urlparse(d["url"])
        check(u.hostname in cfg["services"] and u.port == 9090,
              f"data source {d['name']} points at service {u.hostname}:{u.port}")
    mounts = binds(cfg["services"].get("grafana", {}))
    check(mounts.get(os.path.realpath(PROVISIONING)) == "/etc/grafana/provisioning", "provisioning folder mounted")
    for p in load_yaml(f"{PROVISIONING}/dashboards/gateway.yml")["providers"]:
        check(mounts.get(os.path.realpath(DASHBOARD_DIR)) == p["options"]["path"],
              f"dashboard provider {p['name']} reads the mounted folder {p['options']['path']}")
    uids = {d.get("uid") for d in ds} | {"${datasource}"}
    for path, dash in dashboards():
        bad = [p["title"] for p in all_panels(dash)
               if p.get("type") != "row" and (p.get("datasource") or {}).get("uid") not in uids]
        check(not bad, f"{path}: every panel uses a provisioned data source", ", ".join(bad))
        exprs = [e for _, e in dashboard_exprs(dash)]
        for want in DASHBOARD_METRICS:
            check(any(want in e for e in exprs), f"{path}: a panel shows {want}")


def cmd_static(gateway_bin, compose_config_path):
    cfg = load_yaml(compose_config_path)
    check_dockerfile_against_workspace()
    env, listen, admin = check_image(cfg, gateway_bin)
    check_compose(cfg, env, listen, admin)
    check_prometheus(cfg, admin)
    check_grafana(cfg)
    finish()


def cmd_cluster(compose_config_path):
    """The profile `cluster`: NATS, two nodes of the gateway service's kind, all scraped and shown."""
    cfg = load_yaml(compose_config_path)
    services = cfg["services"]
    print("- profile cluster")
    check("nats" in services, "service nats")
    nats_cmd = [str(a) for a in (services.get("nats", {}).get("command") or [])]
    nats_port = nats_cmd[nats_cmd.index("--port") + 1] if "--port" in nats_cmd[:-1] else "4222"
    check("--jetstream" in nats_cmd or "-js" in nats_cmd, "nats runs JetStream (history's stream)")
    store = nats_cmd[nats_cmd.index("--store_dir") + 1] if "--store_dir" in nats_cmd[:-1] else None
    mounts = [str(v).split(":")[1] for v in services.get("nats", {}).get("volumes") or [] if ":" in str(v)]
    check(store is not None and store in mounts, f"nats keeps its store ({store}) on a volume: {mounts}")
    base = gateway_env(cfg)
    ids = []
    for name in CLUSTER_NODES:
        if not check(name in services, f"service {name}"):
            continue
        svc = services[name]
        env = gateway_env(cfg, name)
        check(env.get("GATEWAY_NATS_URL") == f"nats://nats:{nats_port}",
              f"{name}: GATEWAY_NATS_URL={env.get('GATEWAY_NATS_URL')} names the nats service's port {nats_port}")
        ids.append(env.get("GATEWAY_NODE_ID"))
        differs = [k for k, v in base.items() if env.get(k) != v]
        check(not differs, f"{name}: the gateway service's environment, plus the cluster's", ", ".join(differs))
        check(str(env.get("GATEWAY_HISTORY_SIZE", "0")).split(":-")[-1].rstrip("}") not in ("", "0"),
              f"{name}: history on (GATEWAY_HISTORY_SIZE={env.get('GATEWAY_HISTORY_SIZE')})")
        check("cluster" in (svc.get("profiles") or []), f"{name}: only under the profile cluster")
        for key in ("stop_grace_period", "stop_signal", "ulimits"):
            check(svc.get(key) == services[SERVICE].get(key), f"{name}: {key} as the gateway service's")
    check(len(ids) == len(set(ids)) and all(ids), f"distinct node ids: {', '.join(map(str, ids))}")
    job = gateway_job(load_yaml(PROMETHEUS)) or {}
    names = [n for c in job.get("dns_sd_configs", []) for n in c.get("names", [])]
    for name in CLUSTER_NODES:
        check(name in names, f"Prometheus job {job.get('job_name')} finds {name} through DNS")
    for path, dash in dashboards():
        exprs = [e for _, e in dashboard_exprs(dash)]
        for want in CLUSTER_METRICS:
            check(any(want in e for e in exprs), f"{path}: a panel shows {want}")
    check(any("gateway_nats_connected" in e for _, e in rule_exprs()), "an alert rule watches gateway_nats_connected")
    finish()


def cmd_stage_manifests(dest):
    """Copy what the builder stage copies from the context before its first cargo build."""
    builder = dockerfile_stages()[0]
    first_build = next(i for i, (instr, a) in enumerate(builder) if instr == "RUN" and "cargo build" in a)
    for srcs, target in copies(builder[:first_build]):
        if target.startswith("/"):
            continue  # tools such as the stub script, used from the repository
        for src in srcs:
            to = os.path.join(dest, target)
            if target.endswith("/") or len(srcs) > 1:
                to = os.path.join(to, os.path.basename(src))
            os.makedirs(os.path.dirname(to), exist_ok=True)
            shutil.copy(src, to)
            print(f"  staged {src}")


def cmd_exprs_as_rules(out):
    """Every dashboard query as a recording rule, so promtool parses them."""
    rules = [{"record": f"dashboard:query:{i}", "expr": expr}
             for i, (where, expr) in enumerate(e for e in all_exprs() if not e[0].startswith("rule "))]
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
    print(f"  {len(rules)} dashboard queries (Grafana variables substituted) written as recording rules")


# --------------------------------------------------------------------------
# live: a real Prometheus against a real gateway


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom_query(prom_url, expr):
    status, body = http_get(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    try:
        return json.loads(body)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}


def cmd_prom_config(admin_addr, out):
    job = gateway_job(load_yaml(PROMETHEUS))
    if job is None:
        sys.exit(f"no gateway job in {PROMETHEUS}")
    cfg = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{
            "job_name": job["job_name"],
            "metrics_path": job.get("metrics_path", "/metrics"),
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": admin_addr.split(",")}],
        }],
    }
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    print(f"  job {job['job_name']!r} -> {admin_addr}")


def cmd_wait_up(prom_url, timeout):
    job = gateway_job(load_yaml(PROMETHEUS))["job_name"]
    deadline = time.monotonic() + float(timeout)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            doc = prom_query(prom_url, f'up{{job="{job}"}}')
            res = doc.get("data", {}).get("result", [])
            if res and res[0]["value"][1] == "1":
                print(f"  ok: Prometheus scraped the gateway: up{{job=\"{job}\"}} = 1")
                return
            last = json.dumps(res) if doc.get("status") == "success" else doc.get("error")
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    sys.exit(f"  FAIL: no successful scrape of the gateway within {timeout}s (last: {last})")


def session(client_addr, data, timeout, sent=lambda: None):
    """Sends `data` on a new client connection, calls `sent`, and returns what
    it read until EOF."""
    got = b""
    with socket.create_connection((host_of(client_addr), port_of(client_addr)), timeout=timeout) as s:
        s.sendall(data)
        sent()
        while chunk := s.recv(4096):
            got += chunk
    return got


def cmd_traffic(client_addr):
    sessions = [b"HELLO deploy-check-1\nSUB deploy.check\nPUB deploy.check hello\nPING\nQUIT\n",
                b"HELLO deploy-check-2\nSUB deploy.check\nPUB deploy.check again\nQUIT\n",
                b"PING\nQUIT\n"]
    for i, data in enumerate(sessions):
        try:
            got = session(client_addr, data, 3)
            print(f"  client session {i + 1}: sent {len(data)} bytes, read {len(got)} bytes")
        except OSError as e:
            print(f"  note: client session {i + 1}: {e} (traffic only feeds the rates)")


def cmd_promql(prom_url, admin_addr):
    _, body = http_get(f"http://{admin_addr}/metrics")
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", body.decode("utf-8", "replace"), re.M))
    exprs = all_exprs()
    with_data = 0
    for where, expr in exprs:
        doc = prom_query(prom_url, expr)
        if not check(doc.get("status") == "success", f"{where}: runs",
                     f"{doc.get('errorType', '')} {doc.get('error')}: {expr}"):
            continue
        n = len(doc["data"]["result"]) if isinstance(doc["data"]["result"], list) else 1
        with_data += n > 0
    print(f"  {len(exprs)} queries ran, {with_data} returned data")

    print("- every metric and label value the queries select is exported by the gateway")
    selectors = set()
    for _, expr in exprs:
        for m in re.finditer(r"\b((?:gateway|process)_[a-z_]+)(\{[^}]*\})?", expr):
            name, labels = m.group(1), m.group(2) or ""
            keep = [lm for lm in re.findall(r'\w+\s*=\s*"[^"]*"', labels) if not lm.startswith(("job", "instance"))]
            selectors.add(name + ("{" + ",".join(sorted(keep)) + "}" if keep else ""))
    for sel in sorted(selectors):
        check(sel.split("{")[0] in exported, f"{sel}: family exported on /metrics")
        if "{" in sel:
            doc = prom_query(prom_url, f"count({sel})")
            check(doc.get("status") == "success" and doc["data"]["result"], f"{sel}: series present in Prometheus")
    finish()


def cmd_hold_client(client_addr, out):
    """Connect, identify, then read until EOF (at most 30 s); write what was read."""
    try:
        got = session(client_addr, b"HELLO deploy-check-drain\n", 30,
                      sent=lambda: open(out + ".connected", "w").close())
    except OSError as e:
        got = f"<read error: {e}>".encode()
    with open(out, "wb") as f:
        f.write(got)


def main():
    commands = {
        "static": cmd_static,
        "cluster": cmd_cluster,
        "gateway-env": lambda path, *service: print(
            "\n".join(f"{k}={v}" for k, v in sorted(gateway_env(load_yaml(path), *service).items()))),
        "stage-manifests": cmd_stage_manifests,
        "exprs-as-rules": cmd_exprs_as_rules,
        "prom-config": cmd_prom_config,
        "wait-up": cmd_wait_up,
        "traffic": cmd_traffic,
        "promql": cmd_promql,
        "hold-client": cmd_hold_client,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
