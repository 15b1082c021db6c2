#!/usr/bin/python3
"""Helpers for scripts/bench that are awkward in bash (stdlib only).

  bench.py free-port
  bench.py wait-ready --port P --pid PID [--timeout S] [--body TEXT]
  bench.py run --out FILE --timeout S -- CMD...   (prints the child's CPU seconds)
  bench.py http-report --runs FILE --out FILE.json
  bench.py push-report --section sse|longpoll --runs FILE --out FILE.json
  bench.py ws-report --runs FILE --out FILE.json
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time


def cmd_free_port(_args):
    # Bind-to-0 and release: racy in theory, but only loopback benchmarks
    # use these ports, and the server reports a bind error if it loses.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmd_wait_ready(args):
    """Wait until the server accepts connections, then check that GET / gives
    the expected body twice on one connection (i.e. keep-alive works)."""
    deadline = time.monotonic() + args.timeout
    while True:
        if args.pid and not _pid_alive(args.pid):
            print(f"server process {args.pid} exited before accepting connections", file=sys.stderr)
            return 3
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                print(f"nothing accepted connections on 127.0.0.1:{args.port} within {args.timeout}s",
                      file=sys.stderr)
                return 4
            time.sleep(0.05)

    want = args.body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=5)
    try:
        for i in range(2):
            try:
                conn.request("GET", args.path)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as e:
                if i == 0:
                    print(f"GET {args.path} failed: {e!r}", file=sys.stderr)
                    return 5
                # Still benchmarkable (wrk reconnects) but the numbers would
                # measure connection setup, so say so loudly.
                print(f"WARNING: second request on the same connection failed ({e!r}); "
                      "keep-alive looks broken", file=sys.stderr)
                return 0
            if resp.status != 200 or body != want:
                print(f"GET {args.path}: expected 200 {want!r}, got {resp.status} {body[:80]!r}",
                      file=sys.stderr)
                return 5
            if i == 0 and (resp.getheader("Connection") or "").lower() == "close":
                print("WARNING: server answered 'Connection: close'; keep-alive looks broken",
                      file=sys.stderr)
                return 0
    finally:
        conn.close()
    return 0


def cmd_run(args):
    """Run the load generator with a hard time limit and report its own CPU
    time (from wait4's rusage), so a client-bound run can be flagged."""
    cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    with open(args.out, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    timer = threading.Timer(args.timeout, p.send_signal, (signal.SIGKILL,))
    timer.start()
    # Take wrk down with us if the harness is told to stop.
    signal.signal(signal.SIGTERM, lambda *_: p.send_signal(signal.SIGKILL))
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    print(f"{ru.ru_utime + ru.ru_stime:.3f}")
    return p.returncode if p.returncode >= 0 else 128 - p.returncode


# ------------------------------------------------------------------ wrk parsing

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _dur_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNITS_US[m.group(2)] if m else None


def parse_wrk(text):
    out = {"requests": None, "seconds": None, "rps": None, "p50_us": None, "p90_us": None,
           "p99_us": None, "latency_avg_us": None, "socket_errors": {}, "non_2xx_3xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = _dur_us(m.group(2)) / 1e6 if _dur_us(m.group(2)) else None
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("90", "p90_us"), ("99", "p99_us")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+\w+)", text, re.M)
        if m:
            out[key] = _dur_us(m.group(1))
    m = re.search(r"^\s+Latency\s+([\d.]+\w+)", text, re.M)
    if m:
        out["latency_avg_us"] = _dur_us(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx_3xx"] = int(m.group(1))
    # wrk prints 0.00us for percentiles it failed to find; never report those.
    for key in ("p50_us", "p90_us", "p99_us"):
        if not out[key]:
            out[key] = None
    out["latency_source"] = "wrk --latency"
    # Pipelined runs: wrk's own percentiles are broken (see bench/http/pipeline.lua),
    # which prints corrected per-batch figures instead.
    m = re.search(r"^pipeline-latency: (.*)$", text, re.M)
    if m:
        kv = dict(f.split("=", 1) for f in m.group(1).split())
        if "error" in kv:
            out["latency_note"] = f"pipeline.lua could not rebuild latencies: {kv['error']}"
        else:
            for key in ("p50_us", "p90_us", "p99_us"):
                out[key] = float(kv[key])
                out["raw_" + key] = float(kv["raw_" + key])
            out["latency_avg_us"] = float(kv["mean_us"])
            out["raw_latency_avg_us"] = float(kv["raw_mean_us"])
            out["batches"] = int(kv["batches"])
            out["latency_source"] = (f"bench/http/pipeline.lua: per batch of {kv['depth']} requests, "
                                     "wrk's correction redone with the per-batch interval")
    return out


# ------------------------------------------------------------------ report

LABEL = {"moonwire": "moonwire", "nginx": "nginx+Lua", "node": "Node http"}
MODES = ("unpipelined", "pipelined")


def _fmt_us(us):
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e3:
        return f"{us / 1e3:.2f}ms"
    return f"{us:.0f}us"


def _num(x, fmt):
    return "-" if x is None else format(x, fmt)


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


_CORE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _core_usage(before, after, proc_ticks):
    """Shares of one core's time over a run, from two /proc/stat cpuN samples.
    'other' estimates time on that core used by anything but the measured
    process (other processes, the harness), i.e. interference."""
    try:
        a = [int(x) for x in before.split(",")][:8]
        b = [int(x) for x in after.split(",")][:8]
    except ValueError:
        return None
    if len(a) < 8 or len(b) < 8:
        return None
    d = dict(zip(_CORE_FIELDS, (y - x for x, y in zip(a, b))))
    total = sum(d.values())
    if total <= 0:
        return None
    task = d["user"] + d["nice"] + d["system"]
    out = {k + "_frac": v / total for k, v in d.items()}
    out["busy_ticks"] = total - d["idle"] - d["iowait"]
    out["total_ticks"] = total
    if proc_ticks is not None:
        # Some kernels charge softirq work done in process context to the
        # process (then it can exceed the core's user+system time), others
        # do not; pick the estimate that does not count softirq as "other".
        if proc_ticks >= task:
            other = out["busy_ticks"] - proc_ticks
        else:
            other = task - proc_ticks
        out["other_frac"] = max(0.0, other / total)
    return out


def cmd_http_report(args):
    env = os.environ
    clk_tck = int(env.get("CLK_TCK", "100"))
    results = []
    with open(args.runs) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if not fields or not fields[0]:
                continue
            (server, mode, status, detail, wrk_out, t0, t1, wrk_rc, wrk_cpu,
             s0, s1, c0, c1) = (fields + [""] * 13)[:13]
            r = {"server": server, "label": LABEL.get(server, server), "mode": mode,
                 "status": status, "detail": detail or None}
            if status == "ok" and not os.path.exists(wrk_out):
                r["status"], r["detail"] = "failed", f"no wrk output (rc {wrk_rc})"
            elif status == "ok":
                with open(wrk_out) as w:
                    raw = w.read()
                r.update(parse_wrk(raw))
                r["wrk_rc"] = int(wrk_rc)
                r["cpu_ticks"] = int(t1) - int(t0)
                r["cpu_seconds"] = r["cpu_ticks"] / clk_tck
                if r["requests"]:
                    r["cpu_us_per_req"] = r["cpu_seconds"] * 1e6 / r["requests"]
                else:
                    r["cpu_us_per_req"] = None
                r["client_cpu_seconds"] = float(wrk_cpu) if wrk_cpu else None
                if r["seconds"]:
                    r["server_cpu_util"] = r["cpu_seconds"] / r["seconds"]
                    if r["client_cpu_seconds"] is not None:
                        r["client_cpu_util"] = r["client_cpu_seconds"] / r["seconds"]
                r["server_core"] = _core_usage(s0, s1, r["cpu_ticks"])
                wrk_ticks = r["client_cpu_seconds"] * clk_tck if r["client_cpu_seconds"] is not None else None
                r["client_core"] = _core_usage(c0, c1, wrk_ticks)
                sc = r["server_core"]
                if sc and r["requests"]:
                    # Everything the server's core did, incl. softirq network
                    # work that /proc/PID/stat does not charge to the process.
                    r["server_core_us_per_req"] = (sc["busy_ticks"] / clk_tck) * 1e6 / r["requests"]
                errs = sum(r["socket_errors"].values()) + r["non_2xx_3xx"]
                r["errors"] = errs
                if r["wrk_rc"] != 0 or r["rps"] is None or r["requests"] is None:
                    r["status"] = "failed"
                    r["detail"] = f"wrk exited {r['wrk_rc']} or produced no result"
                r["wrk_output"] = raw
            results.append(r)

    by = {(r["server"], r["mode"]): r for r in results}

    def get(server, mode, key):
        r = by.get((server, mode))
        return r.get(key) if r and r["status"] == "ok" else None

    ratios = {}
    for peer in ("nginx", "node"):
        for mode in MODES:
            ratios[f"moonwire/{peer}"] = ratios.get(f"moonwire/{peer}", {})
            ratios[f"moonwire/{peer}"][mode] = {
                "rps": _ratio(get("moonwire", mode, "rps"), get(peer, mode, "rps")),
                "cpu_per_req": _ratio(get("moonwire", mode, "cpu_us_per_req"),
                                      get(peer, mode, "cpu_us_per_req")),
            }

    def target(name, value, op, limit, desc):
        if value is None:
            status = "n/a"
        else:
            status = "PASS" if (value <= limit if op == "<=" else value >= limit) else "FAIL"
        return {"name": name, "description": desc, "value": value, "op": op,
                "limit": limit, "status": status}

    targets = [
        target("unpipelined_cpu_per_req_vs_nginx",
               ratios["moonwire/nginx"]["unpipelined"]["cpu_per_req"], "<=", 1.0,
               "unpipelined: moonwire CPU/request <= nginx+Lua's"),
        target("pipelined_rps_vs_nginx",
               ratios["moonwire/nginx"]["pipelined"]["rps"], ">=", 2.0,
               "pipelined: moonwire req/s >= 2x nginx+Lua"),
        target("pipelined_rps_vs_node",
               ratios["moonwire/node"]["pipelined"]["rps"], ">=", 4.0,
               "pipelined: moonwire req/s >= 4x Node"),
    ]

    # ---- text table
    p = print
    dur, conns, depth = env.get("BENCH_SECONDS"), env.get("BENCH_CONNECTIONS"), env.get("BENCH_PIPELINE")
    p()
    p(f"HTTP GET / -> 'Hello, World!'   wrk -t1 -c{conns} -d{dur}s --latency   "
      f"server on CPU {env.get('BENCH_SERVER_CPU')}, wrk on CPU {env.get('BENCH_CLIENT_CPU')}")
    p(f"pipelined = {depth} requests per write; its p99 is per {depth}-request batch.")
    p("srv CPU / wrk CPU = CPU time of the server / of wrk over the run's wall time.")
    hdr = (f"{'server':<11} {'mode':<12} {'req/s':>10} {'p99':>9} {'CPU us/req':>10} "
           f"{'srv CPU':>7} {'wrk CPU':>7} {'requests':>10} {'errors':>6}")
    p(hdr)
    p("-" * len(hdr))

    for r in results:
        if r["status"] != "ok":
            p(f"{r['label']:<11} {r['mode']:<12} {r['status'].upper()}: {r['detail'] or ''}")
            continue
        p(f"{r['label']:<11} {r['mode']:<12} {_num(r['rps'], ',.0f'):>10} {_fmt_us(r['p99_us']):>9} "
          f"{_num(r['cpu_us_per_req'], '.2f'):>10} {_pct(r.get('server_cpu_util')):>7} "
          f"{_pct(r.get('client_cpu_util')):>7} {_num(r['requests'], ',d'):>10} {r['errors']:>6}")
    p()
    p("moonwire ratios (req/s: higher is better; CPU/req: lower is better)")
    for peer in ("nginx", "node"):
        for mode in MODES:
            rr = ratios[f"moonwire/{peer}"][mode]
            p(f"  vs {LABEL[peer]:<10} {mode:<12} req/s x{_num(rr['rps'], '.2f'):<6}  "
              f"CPU/req x{_num(rr['cpu_per_req'], '.2f')}")
    p()
    p("targets")
    for t in targets:
        v = "-" if t["value"] is None else f"x{t['value']:.2f}"
        p(f"  [{t['status']:>4}] {t['description']:<48} (got {v}, need {t['op']} x{t['limit']:g})")
    for r in results:
        if r["status"] != "ok":
            continue
        if r["errors"]:
            p(f"  WARNING: {r['label']} {r['mode']}: {r['errors']} errors "
              f"(socket {r['socket_errors']}, non-2xx/3xx {r['non_2xx_3xx']})")
        if (r.get("client_cpu_util") or 0) >= 0.9:
            # One wrk thread on one core: past this point req/s measures wrk.
            p(f"  NOTE: {r['label']} {r['mode']}: wrk used {_pct(r['client_cpu_util'])} of its core; "
              "req/s may be client-bound (a lower bound for the server)")
        _print_core_notes(p, f"{r['label']} {r['mode']}", r, "wrk")
        if r.get("latency_note"):
            p(f"  NOTE: {r['label']} {r['mode']}: {r['latency_note']}")
    p()

    # ---- JSON
    doc = {
        "benchmark": "http-hello",
        "timestamp": env.get("BENCH_TIMESTAMP") or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": {
            "duration_s": int(dur) if dur else None,
            "warmup_s_per_mode": int(env.get("BENCH_WARMUP", "0")),
            "threads": 1,
            "connections": int(conns) if conns else None,
            "pipeline_depth": int(depth) if depth else None,
            "server_cpu": env.get("BENCH_SERVER_CPU"),
            "client_cpu": env.get("BENCH_CLIENT_CPU"),
            "clk_tck": clk_tck,
        },
        "host": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
        },
        "versions": {
            "wrk": env.get("V_WRK"), "nginx": env.get("V_NGINX"), "node": env.get("V_NODE"),
            "moonwire_bin": env.get("MOONWIRE_BIN") or None,
            "moonwire_git": env.get("V_MOONWIRE_GIT") or None,
        },
        "results": results,
        "ratios": ratios,
        "targets": targets,
    }
    return _write_report(p, args.out, doc)


# ------------------------------------------------------------------ push report

PUSH_TARGETS = {
    # section: (rate ratio vs Node, description)
    "sse": (2.2, "SSE fan-out delivery rate >= 2.2x Node"),
    "longpoll": (2.5, "long-poll delivery rate >= 2.5x Node"),
}
P99_LIMIT_US = 100_000          # p99 publish-to-receive to 10,000 SSE subscribers
IDLE_LIMIT_BYTES = 1024         # server memory per idle SSE connection


def _load_push_runs(path, clk_tck):
    results = []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if not fields or not fields[0]:
                continue
            server, scenario, kind, clients, pacing, status, detail, out = (fields + [""] * 8)[:8]
            r = {"server": server, "label": LABEL.get(server, server), "scenario": scenario,
                 "kind": kind, "clients": int(clients), "pacing": pacing if pacing != "none" else None,
                 "status": status, "detail": detail or None}
            if out and os.path.exists(out) and os.path.getsize(out) > 0:
                try:
                    with open(out) as j:
                        r["client"] = json.load(j)
                except (OSError, ValueError) as e:
                    r["status"], r["detail"] = "failed", f"unreadable client output: {e}"
            elif status == "ok":
                r["status"], r["detail"] = "failed", "no client output"
            c = r.get("client")
            if c and r["status"] == "ok":
                _derive_push(r, c, clk_tck)
            results.append(r)
    return results


def _derive_push(r, c, clk_tck):
    if c.get("end_reason") not in ("done", "drain timeout"):
        r["status"], r["detail"] = "failed", f"client: {c.get('end_reason')}"
        return
    if r["kind"] == "idle":
        r["bytes_per_conn"] = c.get("bytes_per_conn")
        if c.get("ready"):
            r["anon_bytes_per_conn"] = (c["rss_anon_after_kb"] - c["rss_anon_before_kb"]) * 1024 / c["ready"]
            r["private_bytes_per_conn"] = (c["private_after_kb"] - c["private_before_kb"]) * 1024 / c["ready"]
        return
    for k in ("delivery_rate", "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_p999_us",
              "latency_max_us", "lost", "duplicates", "out_of_order", "delivered", "expected",
              "run_s", "measured_s", "server_cpu_s", "client_cpu_s", "interval_ms",
              "fanout_span_p50_us", "fanout_span_max_us", "publish_errors", "closed_early",
              "http_errors", "parse_errors", "connect_errors"):
        r[k] = c.get(k)
    m = c.get("measured_s") or 0
    if m > 0:
        if c.get("server_cpu_s") is not None:
            r["server_cpu_util"] = c["server_cpu_s"] / m
        r["client_cpu_util"] = c["client_cpu_s"] / m
    if c.get("delivered") and c.get("server_cpu_s") is not None:
        r["server_cpu_us_per_delivery"] = c["server_cpu_s"] * 1e6 / c["delivered"]
    srv_ticks = c["server_cpu_s"] * clk_tck if c.get("server_cpu_s") is not None else None
    r["server_core"] = _core_usage(c.get("server_core_before", ""), c.get("server_core_after", ""), srv_ticks)
    r["client_core"] = _core_usage(c.get("client_core_before", ""), c.get("client_core_after", ""),
                                   c["client_cpu_s"] * clk_tck)
    sc = r["server_core"]
    if sc and c.get("delivered"):
        r["server_core_us_per_delivery"] = (sc["busy_ticks"] / clk_tck) * 1e6 / c["delivered"]
    if r["pacing"] == "paced" and c.get("interval_ms"):
        r["offered_rate"] = r["clients"] * 1000.0 / c["interval_ms"]
    errs = sum(c.get(k) or 0 for k in ("http_errors", "parse_errors", "connect_errors", "publish_errors"))
    r["errors"] = errs


def _kept_up(r):
    """Paced run in which the last message reached every client within 50 ms
    (or 10% of the publish span) of its publish: the server was not behind."""
    if r.get("pacing") != "paced" or r.get("lost"):
        return False
    c = r.get("client") or {}
    span, run = c.get("publish_span_s"), r.get("run_s")
    if span is None or run is None:
        return False
    return run - span <= max(0.05, 0.1 * span)


def _saturated(r):
    """The server's core was (nearly) fully busy over the run."""
    busy = r.get("server_cpu_util") or 0
    sc = r.get("server_core")
    if sc and sc.get("total_ticks"):
        busy = max(busy, sc["busy_ticks"] / sc["total_ticks"])
    return busy >= 0.85


# ------------------------------------------------- report pieces (push, ws)

def _pct(x):
    return "-" if x is None else f"{x * 100:.0f}%"


def _print_core_notes(p, tag, r, client, disturbed=True):
    """Notes on the two cores a run used: time the hypervisor stole, and
    (when `disturbed` may be judged) time other processes took."""
    for side, who in (("server_core", "server"), ("client_core", client)):
        cc = r.get(side) or {}
        if cc.get("steal_frac", 0) > 0.02:
            p(f"  NOTE: {tag}: {_pct(cc['steal_frac'])} of the {who} core was stolen by the hypervisor")
        if cc.get("other_frac", 0) > 0.05 and disturbed:
            p(f"  NOTE: {tag}: something else used {_pct(cc['other_frac'])} "
              f"of the {who} core; this run is disturbed, rerun on a quiet machine")


def _print_fanout_table(p, rows):
    """Fan-out runs (SSE, long poll, WebSocket): one line each."""
    hdr = (f"{'server':<10} {'scenario':<17} {'deliv/s':>10} {'p50':>9} {'p99':>9} {'max':>9} "
           f"{'lost':>5} {'dup':>4} {'ooo':>4} {'us/deliv':>8} {'srv CPU':>7} {'cli CPU':>7} {'run':>7}")
    p(hdr)
    p("-" * len(hdr))
    for r in rows:
        if r["status"] != "ok":
            p(f"{r['label']:<10} {r['scenario']:<17} {r['status'].upper()}: {r['detail'] or ''}")
            continue
        p(f"{r['label']:<10} {r['scenario']:<17} {_num(r['delivery_rate'], ',.0f'):>10} "
          f"{_fmt_us(r['latency_p50_us']):>9} {_fmt_us(r['latency_p99_us']):>9} "
          f"{_fmt_us(r['latency_max_us']):>9} {_num(r['lost'], '.0f'):>5} {_num(r['duplicates'], '.0f'):>4} "
          f"{_num(r['out_of_order'], '.0f'):>4} {_num(r.get('server_cpu_us_per_delivery'), '.2f'):>8} "
          f"{_pct(r.get('server_cpu_util')):>7} {_pct(r.get('client_cpu_util')):>7} "
          f"{_num(r['run_s'], '.2f'):>6}s")


def _print_idle_table(p, rows, noun):
    """Idle-connection runs: RSS before and after, bytes per connection."""
    h2 = (f"{'server':<10} {noun + 's':>8} {'RSS before':>11} {'RSS after':>11} {'B/' + noun:>9} "
          f"{'anon B/' + noun:>13}")
    p(h2)
    p("-" * len(h2))
    for r in rows:
        if r["status"] != "ok":
            p(f"{r['label']:<10} {r['clients']:>8} {r['status'].upper()}: {r['detail'] or ''}")
            continue
        c = r["client"]
        p(f"{r['label']:<10} {c['ready']:>8} {c['rss_before_kb']:>8} kB {c['rss_after_kb']:>8} kB "
          f"{_num(r.get('bytes_per_conn'), ',.0f'):>9} {_num(r.get('anon_bytes_per_conn'), ',.0f'):>13}")


def _print_targets(p, targets):
    p()
    p("targets")
    for t in targets:
        if t["value"] is None:
            v = "-"
        elif t["unit"] == "x":
            v = f"x{t['value']:.2f}"
        elif t["unit"] == "us":
            v = _fmt_us(t["value"])
        elif t["unit"] == "B":
            v = f"{t['value']:,.0f} B"
        else:
            v = f"{t['value']:g}"
        lim = {"x": f"x{t['limit']:g}", "us": _fmt_us(t["limit"]), "B": f"{t['limit']:,} B"}.get(t["unit"], f"{t['limit']:g}")
        p(f"  [{t['status']:>4}] {t['description']:<64} (got {v}, need {t['op']} {lim})")
        if t.get("note"):
            p(f"         {t['note']}")


def _print_run_notes(p, rows, figure, errors):
    """Warnings and notes on runs that may mislead: errors, early closes,
    a busy client (`figure` is what may be client-bound), a disturbed core.
    errors(r, c) gives the error counts as text."""
    for r in rows:
        if r["status"] != "ok":
            continue
        c = r.get("client") or {}
        if r.get("errors"):
            p(f"  WARNING: {r['label']} {r['scenario']}: errors: {errors(c)}")
        if r.get("closed_early"):
            p(f"  WARNING: {r['label']} {r['scenario']}: {r['closed_early']} client connections closed early")
        if (r.get("client_cpu_util") or 0) >= 0.9:
            p(f"  NOTE: {r['label']} {r['scenario']}: the client used {_pct(r['client_cpu_util'])} of its core; "
              f"{figure} may be client-bound (a lower bound for the server)")
        # runs shorter than half a second are too short to call disturbed
        _print_core_notes(p, f"{r['label']} {r['scenario']}", r, "client",
                          disturbed=(r.get("measured_s") or 0) >= 0.5)


def _write_report(p, out, doc):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    p(f"results written to {out}")
    return 1 if any(r["status"] == "failed" for r in doc["results"]) else 0


def cmd_push_report(args):
    env = os.environ
    clk_tck = int(env.get("CLK_TCK", "100"))
    section = args.section
    results = _load_push_runs(args.runs, clk_tck)
    ok = {(r["server"], r["scenario"]): r for r in results if r["status"] == "ok"}
    scenarios = []
    for r in results:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])

    ratio_min, ratio_desc = PUSH_TARGETS[section]
    ratios, targets = {}, []

    def target(name, desc, value, op, limit, status=None, note=None, unit=""):
        if status is None:
            if value is None:
                status = "n/a"
            elif op == ">=":
                status = "PASS" if value >= limit else "FAIL"
            elif op == "<=":
                status = "PASS" if value <= limit else "FAIL"
            elif op == "<":
                status = "PASS" if value < limit else "FAIL"
            elif op == "==":
                status = "PASS" if value == limit else "FAIL"
        t = {"name": name, "description": desc, "value": value, "op": op, "limit": limit,
             "status": status, "unit": unit}
        if note:
            t["note"] = note
        targets.append(t)

    for sc in scenarios:
        mw, nd = ok.get(("moonwire", sc)), ok.get(("node", sc))
        if sc.startswith("idle"):
            continue
        rr = {"delivery_rate": _ratio(mw and mw.get("delivery_rate"), nd and nd.get("delivery_rate")),
              "server_cpu_per_delivery": _ratio(mw and mw.get("server_cpu_us_per_delivery"),
                                                nd and nd.get("server_cpu_us_per_delivery")),
              "p99": _ratio(mw and mw.get("latency_p99_us"), nd and nd.get("latency_p99_us"))}
        ratios[sc] = rr
        note, status = None, None
        v = rr["delivery_rate"]
        if v is not None:
            # Paced: a server that keeps up delivers at the publish rate, so
            # when both keep up the ratio says nothing about either.
            mw_up, nd_up = _kept_up(mw), _kept_up(nd)
            if mw_up and nd_up:
                status, note = "n/a", "both kept up with the publish rate (pace-bound); see the burst/closed runs"
            elif mw_up and v < ratio_min:
                status, note = "n/a", "moonwire kept up with the publish rate: the ratio is a lower bound"
            elif not _saturated(mw) and v < ratio_min:
                note = "moonwire's core was not saturated"
                if mw.get("client_cpu_util", 0) >= 0.9:
                    note += " and the client used >= 90% of its core: client-bound"
        target(f"delivery_rate_vs_node[{sc}]", f"{ratio_desc} ({sc})", v, ">=", ratio_min,
               status=status, note=note, unit="x")

    for r in results:
        if r["server"] != "moonwire" or r["kind"] == "idle":
            continue
        if r["status"] != "ok":
            target(f"no_loss[{r['scenario']}]", f"moonwire {r['scenario']}: lost = 0, duplicates = 0",
                   None, "==", 0)
            continue
        bad = (r.get("lost") or 0) + (r.get("duplicates") or 0) + (r.get("out_of_order") or 0)
        target(f"no_loss[{r['scenario']}]",
               f"moonwire {r['scenario']}: lost + duplicates + out of order = 0", bad, "==", 0)

    if section == "sse":
        p99s = [r for r in results if r["server"] == "moonwire" and r["kind"] == "sse"
                and r["clients"] == 10000 and r["pacing"] == "paced"]
        for r in p99s or [None]:
            v = r.get("latency_p99_us") if r and r["status"] == "ok" else None
            target("p99_10000_sse", "p99 publish-to-receive to 10,000 SSE subscribers < 100 ms (moonwire, paced)",
                   v, "<", P99_LIMIT_US, unit="us")
        idles = [r for r in results if r["server"] == "moonwire" and r["kind"] == "idle"]
        for r in idles or [None]:
            v = r.get("bytes_per_conn") if r and r["status"] == "ok" else None
            target("idle_sse_bytes_per_conn", "moonwire memory per idle SSE connection <= 1 KiB",
                   v, "<=", IDLE_LIMIT_BYTES, unit="B")

    # ---- text
    p = print
    msgs, interval = env.get("BENCH_PUSH_MESSAGES"), env.get("BENCH_PUSH_INTERVAL_MS")
    title = {"sse": "SSE fan-out", "longpoll": "Long polling"}[section]
    p()
    p(f"{title}: {msgs} messages of {env.get('BENCH_PUSH_PAYLOAD')} bytes; paced = one every {interval} ms, "
      "burst = all published at once, closed = each after the previous one is answered")
    p(f"server on CPU {env.get('BENCH_SERVER_CPU')}, client (bench/client/pushload.c) on CPU "
      f"{env.get('BENCH_CLIENT_CPU')}; latency = publish request written -> message parsed at the client")
    p("deliv/s = messages received by all clients / (last receive - first publish); "
      "us/deliv = server CPU per delivered message;")
    p("srv CPU / cli CPU = CPU time of the server / of the client over the run's wall time")
    pr = [r for r in results if r["kind"] != "idle"]
    if pr:
        _print_fanout_table(p, pr)
    idle = [r for r in results if r["kind"] == "idle"]
    if idle:
        p()
        p("Idle SSE streams: server RSS (VmRSS) after opening N streams minus before, / N")
        _print_idle_table(p, idle, "stream")
    if ratios:
        p()
        p("moonwire / Node")
        for sc, rr in ratios.items():
            p(f"  {sc:<17} delivery rate x{_num(rr['delivery_rate'], '.2f'):<6} "
              f"server CPU per delivery x{_num(rr['server_cpu_per_delivery'], '.2f'):<6} "
              f"p99 x{_num(rr['p99'], '.2f')}")
    _print_targets(p, targets)
    _print_run_notes(p, pr, "the delivery rate", lambda c: (
        f"connect {c.get('connect_errors')}, http {c.get('http_errors')}, parse {c.get('parse_errors')}, "
        f"publish {c.get('publish_errors')}"))
    p()

    doc = {
        "benchmark": section,
        "timestamp": env.get("BENCH_TIMESTAMP") or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": {
            "messages": int(msgs) if msgs else None,
            "interval_ms": float(interval) if interval else None,
            "pacing": env.get("BENCH_SSE_PACING") if section == "sse" else env.get("BENCH_POLL_PACING"),
            "payload_bytes": int(env.get("BENCH_PUSH_PAYLOAD", "0")),
            "history": int(env.get("BENCH_PUSH_HISTORY", "0")),
            "sse_clients": env.get("BENCH_SSE_CLIENTS"),
            "idle_clients": env.get("BENCH_SSE_IDLE_CLIENTS"),
            "poll_clients": env.get("BENCH_POLL_CLIENTS"),
            "server_cpu": env.get("BENCH_SERVER_CPU"),
            "client_cpu": env.get("BENCH_CLIENT_CPU"),
            "clk_tck": clk_tck,
        },
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": _cpu_model()},
        "versions": {
            "node": env.get("V_NODE"),
            "moonwire_bin": env.get("MOONWIRE_BIN") or None,
            "moonwire_git": env.get("V_MOONWIRE_GIT") or None,
        },
        "results": results,
        "ratios": ratios,
        "targets": targets,
    }
    return _write_report(p, args.out, doc)


# ---------------------------------------------------------------- ws section

WS_ECHO_RATIO = 1.6
WS_FANOUT_RATIO = 1.5
WS_IDLE_LIMIT_BYTES = 1024


def _derive_ws(r, c, clk_tck):
    """Per-run figures of the ws section (kinds echo, ws, ws-idle)."""
    if c.get("end_reason") not in ("done", "drain timeout"):
        r["status"], r["detail"] = "failed", f"client: {c.get('end_reason')}"
        return
    if r["kind"] == "ws-idle":
        r["kind"] = "idle"
        _derive_push(r, c, clk_tck)
        r["kind"] = "ws-idle"
        return
    if r["kind"] == "ws":
        _derive_push(r, c, clk_tck)
        return
    # echo
    for k in ("roundtrips", "roundtrips_per_s", "latency_p50_us", "latency_p99_us", "latency_max_us",
              "bad_echoes", "measured_s", "server_cpu_s", "client_cpu_s", "connect_errors",
              "http_errors", "parse_errors", "closed_early"):
        r[k] = c.get(k)
    m = c.get("measured_s") or 0
    if m > 0:
        if c.get("server_cpu_s") is not None:
            r["server_cpu_util"] = c["server_cpu_s"] / m
        r["client_cpu_util"] = c["client_cpu_s"] / m
    if c.get("roundtrips") and c.get("server_cpu_s") is not None:
        r["server_cpu_us_per_roundtrip"] = c["server_cpu_s"] * 1e6 / c["roundtrips"]
    srv_ticks = c["server_cpu_s"] * clk_tck if c.get("server_cpu_s") is not None else None
    r["server_core"] = _core_usage(c.get("server_core_before", ""), c.get("server_core_after", ""), srv_ticks)
    r["client_core"] = _core_usage(c.get("client_core_before", ""), c.get("client_core_after", ""),
                                   c["client_cpu_s"] * clk_tck)
    r["errors"] = sum(c.get(k) or 0 for k in ("http_errors", "parse_errors", "connect_errors", "bad_echoes"))


def cmd_ws_report(args):
    env = os.environ
    clk_tck = int(env.get("CLK_TCK", "100"))
    results = []
    with open(args.runs) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if not fields or not fields[0]:
                continue
            server, scenario, kind, clients, pacing, status, detail, out = (fields + [""] * 8)[:8]
            r = {"server": server, "label": LABEL.get(server, server), "scenario": scenario,
                 "kind": kind, "clients": int(clients), "pacing": pacing if pacing != "none" else None,
                 "status": status, "detail": detail or None}
            if out and os.path.exists(out) and os.path.getsize(out) > 0:
                try:
                    with open(out) as j:
                        r["client"] = json.load(j)
                except (OSError, ValueError) as e:
                    r["status"], r["detail"] = "failed", f"unreadable client output: {e}"
            elif status == "ok":
                r["status"], r["detail"] = "failed", "no client output"
            if server == "node":
                r["label"] = "Node ws"
            if r.get("client") and r["status"] == "ok":
                _derive_ws(r, r["client"], clk_tck)
            results.append(r)
    ok = {(r["server"], r["scenario"]): r for r in results if r["status"] == "ok"}
    scenarios = []
    for r in results:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    kinds = {r["scenario"]: r["kind"] for r in results}
    targets, ratios = [], {}

    def target(name, desc, value, op, limit, unit="", note=None, status=None):
        if status is None:
            if value is None:
                status = "n/a"
            elif op == ">=":
                status = "PASS" if value >= limit else "FAIL"
            elif op == "<=":
                status = "PASS" if value <= limit else "FAIL"
            else:
                status = "PASS" if value == limit else "FAIL"
        t = {"name": name, "description": desc, "value": value, "op": op, "limit": limit,
             "status": status, "unit": unit}
        if note:
            t["note"] = note
        targets.append(t)

    def g(server, sc, key):
        r = ok.get((server, sc))
        return r.get(key) if r else None

    for sc in scenarios:
        kind = kinds[sc]
        if kind == "echo":
            v = _ratio(g("moonwire", sc, "roundtrips_per_s"), g("node", sc, "roundtrips_per_s"))
            ratios[sc] = {"roundtrips_per_s": v,
                          "server_cpu_per_roundtrip": _ratio(g("moonwire", sc, "server_cpu_us_per_roundtrip"),
                                                             g("node", sc, "server_cpu_us_per_roundtrip"))}
            note = None
            mw = ok.get(("moonwire", sc))
            if v is not None and v < WS_ECHO_RATIO and mw and (mw.get("client_cpu_util") or 0) >= 0.9:
                note = "the client used >= 90% of its core: moonwire's figure is client-bound (a lower bound)"
            target(f"echo_vs_node[{sc}]", f"echo round-trips/s >= {WS_ECHO_RATIO}x Node ws ({sc})",
                   v, ">=", WS_ECHO_RATIO, unit="x", note=note)
        elif kind == "ws":
            mw, nd = ok.get(("moonwire", sc)), ok.get(("node", sc))
            v = _ratio(mw and mw.get("delivery_rate"), nd and nd.get("delivery_rate"))
            ratios[sc] = {"delivery_rate": v,
                          "server_cpu_per_delivery": _ratio(mw and mw.get("server_cpu_us_per_delivery"),
                                                            nd and nd.get("server_cpu_us_per_delivery")),
                          "p99": _ratio(mw and mw.get("latency_p99_us"), nd and nd.get("latency_p99_us"))}
            note, status = None, None
            if v is not None:
                if _kept_up(mw) and _kept_up(nd):
                    status, note = "n/a", "both kept up with the publish rate (pace-bound); run BENCH_WS_PACING=burst"
                elif _kept_up(mw) and v < WS_FANOUT_RATIO:
                    status, note = "n/a", "moonwire kept up with the publish rate: the ratio is a lower bound"
            target(f"fanout_vs_node[{sc}]", f"fan-out delivery rate >= {WS_FANOUT_RATIO}x Node ws ({sc})",
                   v, ">=", WS_FANOUT_RATIO, unit="x", note=note, status=status)
            for who in ("moonwire", "node"):
                r = ok.get((who, sc))
                if r:
                    bad = (r.get("lost") or 0) + (r.get("duplicates") or 0) + (r.get("out_of_order") or 0)
                    target(f"no_loss[{who}:{sc}]", f"{'Node ws' if who == 'node' else who} {sc}: lost + duplicates + out of order = 0",
                           bad, "==", 0)
                elif who == "moonwire":
                    target(f"no_loss[{who}:{sc}]", f"moonwire {sc}: lost = 0", None, "==", 0)
        elif kind == "ws-idle":
            v = g("moonwire", sc, "bytes_per_conn")
            nd = g("node", sc, "bytes_per_conn")
            target(f"idle_ws_bytes_per_conn[{sc}]", "moonwire memory per idle WebSocket connection <= 1 KiB",
                   v, "<=", WS_IDLE_LIMIT_BYTES, unit="B",
                   note=f"Node ws: {nd:,.0f} B per connection" if nd is not None else None)

    p = print
    p()
    p(f"WebSocket: server on CPU {env.get('BENCH_SERVER_CPU')}, client (bench/client/pushload.c) on CPU "
      f"{env.get('BENCH_CLIENT_CPU')}; Node {env.get('V_NODE')} + ws {env.get('V_NODE_WS')}, one process")
    echo = [r for r in results if r["kind"] == "echo"]
    if echo:
        p()
        p(f"Echo: {env.get('BENCH_WS_ECHO_CLIENTS')} connections, each sends a masked {env.get('BENCH_WS_ECHO_PAYLOAD')}-byte "
          f"text frame and waits for its echo; {env.get('BENCH_SECONDS')} s measured after {env.get('BENCH_WARMUP')} s warm-up")
        h = f"{'server':<10} {'round-trips/s':>14} {'p50':>9} {'p99':>9} {'max':>9} {'us/rt':>7} {'srv CPU':>7} {'cli CPU':>7}"
        p(h)
        p("-" * len(h))
        for r in echo:
            if r["status"] != "ok":
                p(f"{r['label']:<10} {r['status'].upper()}: {r['detail'] or ''}")
                continue
            p(f"{r['label']:<10} {_num(r['roundtrips_per_s'], ',.0f'):>14} {_fmt_us(r['latency_p50_us']):>9} "
              f"{_fmt_us(r['latency_p99_us']):>9} {_fmt_us(r['latency_max_us']):>9} "
              f"{_num(r.get('server_cpu_us_per_roundtrip'), '.2f'):>7} {_pct(r.get('server_cpu_util')):>7} "
              f"{_pct(r.get('client_cpu_util')):>7}")
    fan = [r for r in results if r["kind"] == "ws"]
    if fan:
        p()
        p(f"Fan-out: {env.get('BENCH_PUSH_MESSAGES')} messages of {env.get('BENCH_PUSH_PAYLOAD')} bytes published over "
          f"HTTP POST /publish (paced = one every {env.get('BENCH_PUSH_INTERVAL_MS')} ms, burst = all at once) "
          "to N WebSocket subscribers;")
        p("latency = publish request written -> frame parsed at the client; "
          "deliv/s = messages received by all clients / (last receive - first publish)")
        _print_fanout_table(p, fan)
    idle = [r for r in results if r["kind"] == "ws-idle"]
    if idle:
        p()
        p("Idle WebSockets (each subscribed to one channel): server VmRSS after opening N more minus before, / N")
        _print_idle_table(p, idle, "socket")
        mwb = g("moonwire", idle[0]["scenario"], "bytes_per_conn")
        ndb = g("node", idle[0]["scenario"], "bytes_per_conn")
        if mwb and ndb:
            ratios[idle[0]["scenario"]] = {"bytes_per_conn": mwb / ndb}
    if ratios:
        p()
        p("moonwire / Node ws")
        for sc, rr in ratios.items():
            p("  " + f"{sc:<17} " + "  ".join(f"{k} x{_num(v, '.2f')}" for k, v in rr.items()))
    _print_targets(p, targets)
    _print_run_notes(p, results, "the figure", lambda c: (
        f"connect {c.get('connect_errors')}, http {c.get('http_errors')}, parse {c.get('parse_errors')}, "
        f"publish {c.get('publish_errors')}, bad echoes {c.get('bad_echoes')}"))
    p()
    doc = {
        "benchmark": "ws",
        "timestamp": env.get("BENCH_TIMESTAMP") or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": {
            "seconds": int(env.get("BENCH_SECONDS", "0")),
            "warmup_s": int(env.get("BENCH_WARMUP", "0")),
            "echo_clients": env.get("BENCH_WS_ECHO_CLIENTS"),
            "echo_payload_bytes": env.get("BENCH_WS_ECHO_PAYLOAD"),
            "fanout_clients": env.get("BENCH_WS_CLIENTS"),
            "fanout_pacing": env.get("BENCH_WS_PACING"),
            "messages": int(env.get("BENCH_PUSH_MESSAGES", "0")),
            "interval_ms": float(env.get("BENCH_PUSH_INTERVAL_MS", "0")),
            "payload_bytes": int(env.get("BENCH_PUSH_PAYLOAD", "0")),
            "idle_clients": env.get("BENCH_WS_IDLE_CLIENTS"),
            "server_cpu": env.get("BENCH_SERVER_CPU"),
            "client_cpu": env.get("BENCH_CLIENT_CPU"),
            "clk_tck": clk_tck,
        },
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": _cpu_model()},
        "versions": {"node": env.get("V_NODE"), "node_ws": env.get("V_NODE_WS"),
                     "moonwire_bin": env.get("MOONWIRE_BIN") or None,
                     "moonwire_git": env.get("V_MOONWIRE_GIT") or None},
        "results": results,
        "ratios": ratios,
        "targets": targets,
    }
    return _write_report(p, args.out, doc)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    w = sub.add_parser("wait-ready")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--pid", type=int)
    w.add_argument("--timeout", type=float, default=10)
    w.add_argument("--path", default="/")
    w.add_argument("--body", default="Hello, World!")
    x = sub.add_parser("run")
    x.add_argument("--out", required=True)
    x.add_argument("--timeout", type=float, required=True)
    x.add_argument("argv", nargs=argparse.REMAINDER)
    r = sub.add_parser("http-report")
    r.add_argument("--runs", required=True)
    r.add_argument("--out", required=True)
    q = sub.add_parser("push-report")
    q.add_argument("--section", required=True, choices=sorted(PUSH_TARGETS))
    q.add_argument("--runs", required=True)
    q.add_argument("--out", required=True)
    wr = sub.add_parser("ws-report")
    wr.add_argument("--runs", required=True)
    wr.add_argument("--out", required=True)
    args = ap.parse_args()
    return {"free-port": cmd_free_port, "wait-ready": cmd_wait_ready,
            "run": cmd_run, "http-report": cmd_http_report,
            "push-report": cmd_push_report, "ws-report": cmd_ws_report}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
