#!/usr/bin/env python3
"""Helpers for deploy/check.sh: static consistency checks and live PromQL checks.

usage: check_deploy.py COMMAND [ARGS...]   (run from the repository root)

  static GATEWAY_BIN COMPOSE_CONFIG_YAML   Dockerfile / compose / Prometheus /
                                           Grafana files agree with each other
                                           and with the gateway's flags
  cluster COMPOSE_CONFIG_YAML              the profile cluster (config made with
                                           --profile cluster): NATS, two nodes,
                                           scraped, on the dashboard, alerted on
  gateway-env COMPOSE_CONFIG_YAML [SERVICE]
                                           print the gateway's environment in
                                           the container (Dockerfile ENV, then
                                           compose environment) as NAME=VALUE lines
  stage-manifests DEST                     copy what the Dockerfile's builder
                                           copies before its dependency build
  prom-config ADMIN_ADDRS OUT              a Prometheus config for check.sh:
                                           deploy/prometheus.yml's gateway job
                                           and rules, scraping ADMIN_ADDRS (comma
                                           separated) every 1s
  wait-up PROM_URL TIMEOUT                 wait until the gateway target is up
  traffic CLIENT_ADDR                      a few short client sessions
  promql PROM_URL ADMIN_ADDR               run every dashboard and rule query
  rules PROM_URL TIMEOUT                   every alert rule loaded and evaluated
  hold-client CLIENT_ADDR OUT              open a client, report what it reads
"""

import json
import os
import re
import socket
import sys
import time
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

# Contract v1.1, section 1: every flag and the variable it also reads.
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

failures = []


def ok(msg):
    print(f"  ok: {msg}")


def fail(msg):
    print(f"  FAIL: {msg}")
    failures.append(msg)


def check(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        fail(msg + (f" ({detail})" if detail else ""))
    return cond


def finish():
    if failures:
        print(f"  {len(failures)} check(s) failed")
        sys.exit(1)


# --------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages(path=DOCKERFILE):
    """[(stage_name, [(INSTRUCTION, args)])] with continuations joined."""
    lines, cur = [], ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if not cur and line.lstrip().startswith("#"):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    stages = []
    for line in lines:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        args = args.strip()
        if instr == "FROM":
            m = re.search(r"\s+AS\s+(\S+)$", args, re.I)
            stages.append((m.group(1) if m else str(len(stages)), []))
        elif stages:
            stages[-1][1].append((instr, args))
    return stages


def exec_form(args):
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        val = json.loads(args)
    except ValueError:
        return None
    return val if isinstance(val, list) and all(isinstance(x, str) for x in val) else None


def env_pairs(args):
    out = {}
    if "=" not in args.split()[0]:
        key, _, val = args.partition(" ")
        out[key] = val.strip()
        return out
    for tok in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
        out[tok[0]] = tok[1].strip('"')
    return out


def copy_args(args):
    """(flags, sources, dest) of a COPY instruction."""
    parts = exec_form(args) or args.split()
    flags = [p for p in parts if p.startswith("--")]
    rest = [p for p in parts if not p.startswith("--")]
    return flags, rest[:-1], rest[-1]


def final_stage():
    stages = dockerfile_stages()
    return stages[-1][1]


def image_env():
    env = {}
    for instr, args in final_stage():
        if instr == "ENV":
            env.update(env_pairs(args))
    return env


def workspace_members():
    text = open("Cargo.toml", encoding="utf-8").read()
    try:
        import tomllib

        return tomllib.loads(text)["workspace"]["members"]
    except ImportError:
        m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
        return re.findall(r'"([^"]+)"', m.group(1))


# --------------------------------------------------------------------------
# helpers


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def host_of(addr):
    return addr.rsplit(":", 1)[0].strip("[]")


def duration_seconds(val):
    if isinstance(val, (int, float)):
        return float(val)
    total, found = 0.0, False
    for num, unit in re.findall(r"([\d.]+)(us|ms|s|m|h)", str(val)):
        found = True
        total += float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    if not found:
        raise ValueError(f"not a duration: {val!r}")
    return total


def compose_ports(svc):
    """[(published or None, target)] from short or long port syntax."""
    out = []
    for p in svc.get("ports", []) or []:
        if isinstance(p, dict):
            out.append((p.get("published"), int(p["target"])))
        else:
            s = str(p).split("/")[0]
            parts = s.split(":")
            out.append((":".join(parts[:-1]) or None, int(parts[-1])))
    return out


def compose_volumes(svc):
    """[{type, source, target}] from short ("src:dst:ro") or long syntax."""
    out = []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, dict):
            out.append({"type": v.get("type", "volume"), "source": v.get("source", ""), "target": v.get("target", "")})
        else:
            parts = str(v).split(":")
            src, tgt = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            out.append({"type": "bind" if src.startswith(("/", ".", "~")) else "volume", "source": src, "target": tgt})
    return out


def gateway_env(compose_cfg, service=SERVICE):
    env = dict(image_env())
    svc_env = compose_cfg["services"][service].get("environment") or {}
    if isinstance(svc_env, list):
        svc_env = dict(e.split("=", 1) if "=" in e else (e, "") for e in svc_env)
    env.update({k: "" if v is None else str(v) for k, v in svc_env.items()})
    return env


def help_env_names(gateway_bin):
    import subprocess

    try:
        out = subprocess.run([gateway_bin, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    text = out.stdout + out.stderr
    return set(re.findall(r"\bGATEWAY_[A-Z_]+\b", text)), set(re.findall(r"--[a-z][a-z-]+", text))


# --------------------------------------------------------------------------
# static


def cmd_static(gateway_bin, compose_config_path):
    cfg = yaml.safe_load(open(compose_config_path, encoding="utf-8"))
    raw_compose = open(COMPOSE, encoding="utf-8").read()
    stages = dockerfile_stages()
    final = stages[-1][1]
    final_copies = [copy_args(a) for i, a in final if i == "COPY"]
    final_dests = {d for _, _, d in final_copies}

    print("- Dockerfile")
    check(len(stages) >= 2, f"multi-stage build ({len(stages)} stages: {', '.join(s for s, _ in stages)})")
    builder = stages[0][1]
    members = workspace_members()
    copied = set()
    for instr, args in builder:
        if instr == "COPY":
            flags, srcs, _ = copy_args(args)
            if not any(f.startswith("--from") for f in flags):
                copied.update(s.rstrip("/") for s in srcs)
    for src in sorted(copied):
        check(os.path.exists(src) or any(c in src for c in "*?["), f"COPY source {src} exists in the build context")
    check("Cargo.lock" in copied, "builder copies Cargo.lock (builds are --locked)")
    for m in members:
        check(f"{m}/Cargo.toml" in copied, f"builder copies member manifest {m}/Cargo.toml")
        check(m in copied, f"builder copies member sources {m}/")
    runs = " ".join(a for i, a in builder if i == "RUN")
    stub = re.search(r"stub-sources\s+([^>&|;]+)", runs)
    check(stub and set(stub.group(1).split()) == set(members),
          "dependency layer stubs every workspace member", stub.group(1) if stub else "no stub-sources call")

    ep = [a for i, a in final if i == "ENTRYPOINT"]
    ep_form = exec_form(ep[-1]) if ep else None
    check(ep_form is not None, "ENTRYPOINT is in exec form (no shell: signals and arguments reach the gateway)",
          ep[-1] if ep else "no ENTRYPOINT")
    if ep_form:
        check(ep_form[0] in final_dests and ep_form[0].endswith("/gateway"),
              f"ENTRYPOINT runs the copied gateway binary {ep_form[0]}")
        check(os.path.basename(ep_form[0]) not in ("sh", "bash", "dash"), "ENTRYPOINT is not a shell")
    cmds = [a for i, a in final if i == "CMD"]
    check(not cmds or exec_form(cmds[-1]) is not None, "no shell-form CMD in the runtime stage")
    user = [a for i, a in final if i == "USER"]
    check(user and user[-1].split(":")[0] not in ("root", "0"), f"runtime user is not root (USER {user[-1] if user else '-'})")
    hc = [a for i, a in final if i == "HEALTHCHECK"]
    hc_cmd = exec_form(hc[-1].split(" CMD ", 1)[1]) if hc and " CMD " in hc[-1] else None
    check(hc_cmd is not None and hc_cmd[0] in final_dests,
          "HEALTHCHECK runs a probe copied into the image, exec form", hc[-1] if hc else "no HEALTHCHECK")
    exposed = set()
    for i, a in final:
        if i == "EXPOSE":
            exposed.update(int(p.split("/")[0]) for p in a.split())
    check(exposed == {7000, 9000}, f"EXPOSE {sorted(exposed)}: client 7000 and admin 9000")

    print("- variables against the contract's flags (section 1) and the binary")
    img_env = image_env()
    env = gateway_env(cfg)
    help_env, help_flags = help_env_names(gateway_bin)
    if not help_env:
        print(f"  note: `{gateway_bin} --help` names no GATEWAY_* variable; checking against the contract only")
    for name in sorted(k for k in env if k.startswith("GATEWAY_")):
        flag = CONTRACT_ENV.get(name)
        check(flag is not None, f"{name} is the variable of contract flag {flag or '?'}")
        if help_env:
            check(name in help_env, f"{name} is listed by `gateway --help`")
        if flag and help_flags:
            check(flag in help_flags, f"{flag} is listed by `gateway --help`")

    listen = env.get("GATEWAY_LISTEN", CONTRACT_FLAGS["--listen"])
    admin = env.get("GATEWAY_ADMIN_LISTEN", CONTRACT_FLAGS["--admin-listen"])
    check("GATEWAY_ADMIN_LISTEN" in img_env and host_of(img_env["GATEWAY_ADMIN_LISTEN"]) in ("0.0.0.0", "::"),
          "the image sets GATEWAY_ADMIN_LISTEN to all interfaces (the default 127.0.0.1 is unreachable from outside)")
    check(host_of(admin) in ("0.0.0.0", "::"), f"in compose the admin API listens on {admin}: reachable on the network")
    check(host_of(listen) in ("0.0.0.0", "::"), f"in compose the client listener is {listen}")
    check(port_of(listen) in exposed, f"client port {port_of(listen)} is exposed")
    check(port_of(admin) in exposed, f"admin port {port_of(admin)} is exposed")

    print("- docker-compose.yml")
    svc = cfg["services"].get(SERVICE)
    check(svc is not None, f"service {SERVICE} exists")
    build = svc.get("build") or {}
    ctx = build.get("context", "") if isinstance(build, dict) else build
    check(os.path.realpath(ctx) == os.path.realpath("."), f"build context {ctx} is the repository root")
    check(isinstance(build, dict) and build.get("dockerfile") in ("deploy/Dockerfile", os.path.realpath(DOCKERFILE)),
          "build uses deploy/Dockerfile")
    check("container_name" not in svc, "no container_name (replicas can be scaled)")
    check("entrypoint" not in svc, "compose keeps the image's exec-form ENTRYPOINT")
    check(not isinstance(svc.get("command"), str), "no shell-string command")
    ports = compose_ports(svc)
    for pub, target in ports:
        check(target in exposed and target in (port_of(listen), port_of(admin)),
              f"published container port {target} (host {pub}) is exposed and a gateway listener")
    check(port_of(listen) in [t for _, t in ports], "the client port is published")
    check("GATEWAY_ADMIN_TOKEN" in env and env["GATEWAY_ADMIN_TOKEN"] != "", "GATEWAY_ADMIN_TOKEN is set")
    check(re.search(r"GATEWAY_ADMIN_TOKEN:\s*\"?\$\{GATEWAY_ADMIN_TOKEN", raw_compose) is not None,
          "the token comes from the GATEWAY_ADMIN_TOKEN variable of the caller's environment")
    shutdown = float(env.get("GATEWAY_SHUTDOWN_TIMEOUT", CONTRACT_FLAGS["--shutdown-timeout"]))
    grace = duration_seconds(svc.get("stop_grace_period", "10s"))
    check(grace >= shutdown + 5, f"stop_grace_period {grace:g}s exceeds the shutdown timeout {shutdown:g}s with headroom")
    check(svc.get("stop_signal", "SIGTERM") in ("SIGTERM", "TERM", "SIGINT", "INT"),
          f"stop signal {svc.get('stop_signal', 'SIGTERM')} starts the drain")
    nofile = ((svc.get("ulimits") or {}).get("nofile"))
    soft = nofile.get("soft") if isinstance(nofile, dict) else nofile
    maxconn = int(env.get("GATEWAY_MAX_CONNECTIONS", CONTRACT_FLAGS["--max-connections"]))
    check(soft is not None and int(soft) >= maxconn + 1024,
          f"ulimit nofile {soft} leaves room for {maxconn} connections")
    for name, s in cfg["services"].items():
        for v in compose_volumes(s):
            if v["type"] == "bind":
                check(os.path.exists(v["source"]), f"{name}: bind-mount source {os.path.relpath(v['source'])} exists")

    print("- prometheus.yml")
    prom = yaml.safe_load(open(PROMETHEUS, encoding="utf-8"))
    job = gateway_job(prom)
    check(job is not None, "a scrape job targets the gateway service")
    if job:
        sd_ports = [c.get("port") for c in job.get("dns_sd_configs", []) if SERVICE in c.get("names", [])]
        static = [t for c in job.get("static_configs", []) for t in c.get("targets", []) if t.split(":")[0] == SERVICE]
        check(any(p == port_of(admin) for p in sd_ports) or any(port_of(t) == port_of(admin) for t in static),
              f"job {job['job_name']} scrapes the admin port {port_of(admin)}")
        check(bool(sd_ports), f"job {job['job_name']} finds replicas through DNS (dns_sd_configs names: [{SERVICE}])")
        check(job.get("metrics_path", "/metrics") == "/metrics", "metrics path is /metrics (open without a token)")
        psvc = cfg["services"].get("prometheus", {})
        mounts = {os.path.realpath(v["source"]): v["target"] for v in compose_volumes(psvc) if v["type"] == "bind"}
        cfg_target = mounts.get(os.path.realpath(PROMETHEUS))
        check(cfg_target is not None, f"prometheus mounts {PROMETHEUS}")
        for rf in prom.get("rule_files", []):
            local = os.path.join(DEPLOY, rf)
            tgt = mounts.get(os.path.realpath(local))
            want = os.path.join(os.path.dirname(cfg_target or "/"), rf) if not os.path.isabs(rf) else rf
            check(tgt == want, f"rule file {rf} is mounted where the config looks for it ({want})")

    print("- Grafana")
    ds = yaml.safe_load(open(f"{PROVISIONING}/datasources/prometheus.yml", encoding="utf-8"))["datasources"]
    uids = {d.get("uid") for d in ds}
    for d in ds:
        u = urllib.parse.urlparse(d["url"])
        check(u.hostname in cfg["services"] and u.port == 9090, f"data source {d['name']} points at service {u.hostname}:{u.port}")
    gsvc = cfg["services"].get("grafana", {})
    gmounts = {os.path.realpath(v["source"]): v["target"] for v in compose_volumes(gsvc) if v["type"] == "bind"}
    check(gmounts.get(os.path.realpath(PROVISIONING)) == "/etc/grafana/provisioning", "provisioning folder mounted")
    prov = yaml.safe_load(open(f"{PROVISIONING}/dashboards/gateway.yml", encoding="utf-8"))["providers"]
    for p in prov:
        check(gmounts.get(os.path.realpath(DASHBOARD_DIR)) == p["options"]["path"],
              f"dashboard provider {p['name']} reads the mounted folder {p['options']['path']}")
    for path, dash in dashboards():
        ids = [p["id"] for p in all_panels(dash)]
        check(len(ids) == len(set(ids)), f"{path}: panel ids unique ({len(ids)} panels)")
        bad = [p["title"] for p in all_panels(dash) if p.get("type") != "row"
               and (p.get("datasource") or {}).get("uid") not in uids | {"${datasource}"}]
        check(not bad, f"{path}: every panel uses a provisioned data source", ", ".join(bad))
        for want in ("gateway_connections_active", "gateway_connections_accepted_total",
                     "gateway_connections_closed_total", "gateway_pool_reused_total", "gateway_pool_allocated_total",
                     "gateway_close_flush_duration_seconds_bucket", "gateway_bytes_received_total",
                     "gateway_bytes_sent_total", "gateway_frames_received_total", "gateway_frames_sent_total",
                     'reason="slow"', "process_resident_memory_bytes", "process_open_fds"):
            check(any(want in e for _, e in dashboard_exprs(dash)), f"{path}: a panel shows {want}")
    finish()


CLUSTER_NODES = ("gateway-node-1", "gateway-node-2")
CLUSTER_METRICS = ("gateway_nats_connected", "gateway_nats_reconnects_total", "gateway_cluster_messages_total",
                   "gateway_cluster_dropped_total", "gateway_cluster_missed_total")


def cmd_cluster(compose_config_path):
    """The profile `cluster`: NATS, two nodes of the gateway service's kind, all scraped and shown."""
    cfg = yaml.safe_load(open(compose_config_path, encoding="utf-8"))
    services = cfg["services"]
    print("- profile cluster")
    check("nats" in services, "service nats")
    nats_cmd = [str(a) for a in (services.get("nats", {}).get("command") or [])]
    nats_port = nats_cmd[nats_cmd.index("--port") + 1] if "--port" in nats_cmd[:-1] else "4222"
    check("--jetstream" not in nats_cmd and "-js" not in nats_cmd, "nats runs core NATS (no JetStream)")
    base = gateway_env(cfg)
    ids = []
    for name in CLUSTER_NODES:
        check(name in services, f"service {name}")
        if name not in services:
            continue
        svc = services[name]
        env = gateway_env(cfg, name)
        check(env.get("GATEWAY_NATS_URL") == f"nats://nats:{nats_port}",
              f"{name}: GATEWAY_NATS_URL={env.get('GATEWAY_NATS_URL')} names the nats service's port {nats_port}")
        ids.append(env.get("GATEWAY_NODE_ID"))
        differs = [k for k, v in base.items() if env.get(k) != v]
        check(not differs, f"{name}: the gateway service's environment, plus the cluster's", ", ".join(differs))
        check("cluster" in (svc.get("profiles") or []), f"{name}: only under the profile cluster")
        for key in ("stop_grace_period", "stop_signal", "ulimits"):
            check(svc.get(key) == services[SERVICE].get(key), f"{name}: {key} as the gateway service's")
    check(len(ids) == len(set(ids)) and all(ids), f"distinct node ids: {', '.join(map(str, ids))}")
    prom = yaml.safe_load(open(PROMETHEUS, encoding="utf-8"))
    job = gateway_job(prom) or {}
    names = [n for c in job.get("dns_sd_configs", []) for n in c.get("names", [])]
    for name in CLUSTER_NODES:
        check(name in names, f"Prometheus job {job.get('job_name')} finds {name} through DNS")
    for path, dash in dashboards():
        for want in CLUSTER_METRICS:
            check(any(want in e for _, e in dashboard_exprs(dash)), f"{path}: a panel shows {want}")
    check(any("gateway_nats_connected" in e for _, e in rule_exprs()), "an alert rule watches gateway_nats_connected")
    finish()


def gateway_job(prom):
    for job in prom.get("scrape_configs", []):
        names = [n for c in job.get("dns_sd_configs", []) for n in c.get("names", [])]
        targets = [t for c in job.get("static_configs", []) for t in c.get("targets", [])]
        if SERVICE in names or any(t.split(":")[0] == SERVICE for t in targets):
            return job
    return None


# --------------------------------------------------------------------------
# dashboards and rules


def dashboards():
    for name in sorted(os.listdir(DASHBOARD_DIR)):
        if name.endswith(".json"):
            path = os.path.join(DASHBOARD_DIR, name)
            yield path, json.load(open(path, encoding="utf-8"))


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
    # dashboard variables: "All" is ".*" in a regex matcher
    expr = re.sub(r"\$\{?(\w+)\}?", ".*", expr)
    return expr


def rule_exprs():
    prom = yaml.safe_load(open(PROMETHEUS, encoding="utf-8"))
    for rf in prom.get("rule_files", []):
        doc = yaml.safe_load(open(os.path.join(DEPLOY, rf), encoding="utf-8"))
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                yield f"rule {r.get('alert') or r.get('record')}", r["expr"]


def all_exprs():
    out = []
    for path, dash in dashboards():
        for where, e in dashboard_exprs(dash):
            out.append((f"{os.path.basename(path)} {where}", substitute(e)))
    out.extend(rule_exprs())
    return out


# --------------------------------------------------------------------------
# live checks


def http_get(url, timeout=5, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom_query(prom_url, expr):
    status, body = http_get(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    try:
        doc = json.loads(body)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}
    return doc


def cmd_prom_config(admin_addr, out):
    prom = yaml.safe_load(open(PROMETHEUS, encoding="utf-8"))
    job = gateway_job(prom)
    if job is None:
        sys.exit("no gateway job in deploy/prometheus.yml")
    rules = [os.path.realpath(os.path.join(DEPLOY, rf)) for rf in prom.get("rule_files", [])]
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
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
    print(f"  job {job['job_name']!r} -> {admin_addr}, rule files: {', '.join(os.path.relpath(r) for r in rules)}")


def cmd_wait_up(prom_url, timeout):
    job = gateway_job(yaml.safe_load(open(PROMETHEUS, encoding="utf-8")))["job_name"]
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


def cmd_traffic(client_addr):
    host, port = host_of(client_addr), port_of(client_addr)
    sessions = [b"HELLO deploy-check-1\nSUB deploy.check\nPUB deploy.check hello\nPING\nQUIT\n",
                b"HELLO deploy-check-2\nSUB deploy.check\nPUB deploy.check again\nQUIT\n",
                b"PING\nQUIT\n"]
    for i, data in enumerate(sessions):
        try:
            with socket.create_connection((host, port), timeout=3) as s:
                s.sendall(data)
                got = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            print(f"  client session {i + 1}: sent {len(data)} bytes, read {len(got)} bytes")
        except OSError as e:
            print(f"  note: client session {i + 1}: {e} (traffic only feeds the rates)")


def cmd_promql(prom_url, admin_addr):
    status, body = http_get(f"http://{admin_addr}/metrics")
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", body.decode("utf-8", "replace"), re.M))
    exprs = all_exprs()
    with_data = 0
    for where, expr in exprs:
        doc = prom_query(prom_url, expr)
        if doc.get("status") != "success":
            fail(f"{where}: query error: {doc.get('errorType', '')} {doc.get('error')}\n        {expr}")
            continue
        n = len(doc["data"]["result"]) if isinstance(doc["data"]["result"], list) else 1
        with_data += n > 0
        ok(f"{where}: {n} series")
    print(f"  {len(exprs)} queries ran, {with_data} returned data")

    print("- every metric and label value the queries select is exported by the gateway")
    selectors = set()
    for where, expr in exprs:
        for m in re.finditer(r"\b((?:gateway|process)_[a-z_]+)(\{[^}]*\})?", expr):
            name, labels = m.group(1), m.group(2) or ""
            keep = [lm for lm in re.findall(r'\w+\s*=\s*"[^"]*"', labels) if not lm.startswith(("job", "instance"))]
            selectors.add(name + ("{" + ",".join(sorted(keep)) + "}" if keep else ""))
    for sel in sorted(selectors):
        name = sel.split("{")[0]
        check(name in exported, f"{sel}: family exported on /metrics")
        if "{" in sel:
            doc = prom_query(prom_url, f"count({sel})")
            check(doc.get("status") == "success" and doc["data"]["result"], f"{sel}: series present in Prometheus")
    finish()


def cmd_rules(prom_url, timeout):
    want = {}
    prom = yaml.safe_load(open(PROMETHEUS, encoding="utf-8"))
    for rf in prom.get("rule_files", []):
        for g in yaml.safe_load(open(os.path.join(DEPLOY, rf), encoding="utf-8"))["groups"]:
            want[g["name"]] = {r.get("alert") or r.get("record") for r in g["rules"]}
    deadline = time.monotonic() + float(timeout)
    while True:
        _, body = http_get(f"{prom_url}/api/v1/rules")
        groups = {g["name"]: g for g in json.loads(body)["data"]["groups"]}
        evaluated = all(r.get("lastEvaluation", "0001").startswith("0001") is False
                        for g in groups.values() for r in g["rules"])
        if evaluated and set(groups) >= set(want) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for gname, names in want.items():
        g = groups.get(gname)
        if not check(g is not None, f"rule group {gname} loaded"):
            continue
        for r in g["rules"]:
            check(r.get("health") == "ok", f"{gname}/{r['name']}: evaluated, health {r.get('health')}",
                  r.get("lastError", ""))
        check({r["name"] for r in g["rules"]} == names, f"{gname}: all {len(names)} rules loaded")
    finish()


def cmd_exprs_as_rules(out):
    """Every dashboard query as a recording rule, so promtool parses them."""
    rules = []
    for where, expr in all_exprs():
        if where.startswith("rule "):
            continue
        rules.append({"record": f"dashboard:query:{len(rules)}", "expr": expr})
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
    print(f"  {len(rules)} dashboard queries (Grafana variables substituted) written as recording rules")


def cmd_hold_client(client_addr, out):
    """Connect, identify, then read until EOF (at most 30 s); write what was read."""
    with socket.create_connection((host_of(client_addr), port_of(client_addr)), timeout=30) as s:
        s.sendall(b"HELLO deploy-check-drain\n")
        open(out + ".connected", "w").close()
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError as e:
            got += f"\n<read error: {e}>".encode()
    with open(out, "wb") as f:
        f.write(got)


def cmd_stage_manifests(dest):
    """Copy what the builder stage copies before its first RUN that builds."""
    import shutil

    for instr, args in dockerfile_stages()[0][1]:
        if instr == "RUN" and "cargo build" in args:
            break
        if instr == "COPY":
            flags, srcs, target = copy_args(args)
            if any(f.startswith("--from") for f in flags):
                continue
            for src in srcs:
                if target.startswith("/"):
                    continue  # tools such as the stub script, used from the repo
                to = os.path.join(dest, target)
                if target.endswith("/") or len(srcs) > 1:
                    to = os.path.join(to, os.path.basename(src))
                os.makedirs(os.path.dirname(to), exist_ok=True)
                shutil.copy(src, to)
                print(f"  staged {src}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "static":
        cmd_static(*args)
    elif cmd == "gateway-env":
        cfg = yaml.safe_load(open(args[0], encoding="utf-8"))
        for k, v in sorted(gateway_env(cfg, *args[1:]).items()):
            print(f"{k}={v}")
    elif cmd == "cluster":
        cmd_cluster(*args)
    elif cmd == "stage-manifests":
        cmd_stage_manifests(*args)
    elif cmd == "prom-config":
        cmd_prom_config(*args)
    elif cmd == "wait-up":
        cmd_wait_up(*args)
    elif cmd == "traffic":
        cmd_traffic(*args)
    elif cmd == "promql":
        cmd_promql(*args)
    elif cmd == "rules":
        cmd_rules(*args)
    elif cmd == "exprs-as-rules":
        cmd_exprs_as_rules(*args)
    elif cmd == "hold-client":
        cmd_hold_client(*args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
