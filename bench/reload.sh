#!/usr/bin/env bash
# Reload latency: how long after a save the new code answers.
#
# Copies an example app (default: the showcase) to a temp folder, runs it
# with --reload, and saves app.lua 20 times the way editors do (write a temp
# file, rename it over the old one). For each save it takes the runtime's
# own log line ("reloaded ... in X ms, Y ms after the change": Y runs from
# the first inotify event of the save to the new version serving) and also
# measures, from outside, the time from the rename until GET /__version
# answers with the new version. Prints median and max of both.
#
#   BENCH_RELOAD_APP   example folder to copy (default examples/showcase)
#   BENCH_RELOAD_SAVES number of saves (default 20)
set -euo pipefail
. "$BENCH_ROOT/bench/lib/common.sh"

[[ -n ${MOONWIRE_SKIP:-} ]] && { log_err "reload: $MOONWIRE_SKIP"; exit 1; }
app_src=${BENCH_RELOAD_APP:-$BENCH_ROOT/examples/showcase}
saves=${BENCH_RELOAD_SAVES:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$app_src" "$work/app"

/usr/bin/python3 - "$MOONWIRE_BIN" "$work/app" "$saves" "$BENCH_ROOT/bench/results" <<'PY'
import json, os, re, statistics, subprocess, sys, threading, time, urllib.request
binary, folder, saves, results = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
app = os.path.join(folder, "app.lua")
original = open(app).read()
# a route that names the version, added before `return app`
def version_text(n):
    body = original.rstrip()
    assert body.endswith("return app"), "the app must end with `return app`"
    return body[: -len("return app")] + (
        'app:get("/__version", function(req, res) res:send("%d") end)\nreturn app\n' % n)
with open(app, "w") as f:
    f.write(version_text(0))
proc = subprocess.Popen([binary, "--reload", "-l", "127.0.0.1:0", app],
                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
lines, url = [], None
ready = threading.Event()
def reader():
    global url
    for line in proc.stderr:
        lines.append(line)
        m = re.match(r"moonwire listening on (\S+)", line)
        if m:
            url = m.group(1)
            ready.set()
threading.Thread(target=reader, daemon=True).start()
if not ready.wait(20):
    proc.kill()
    sys.exit("moonwire did not start:\n" + "".join(lines))
def version():
    try:
        return urllib.request.urlopen(url + "/__version", timeout=2).read().decode()
    except Exception:
        return None
inside, outside = [], []
try:
    for n in range(1, saves + 1):
        seen = len(lines)
        tmp = os.path.join(folder, ".app.lua.tmp")
        with open(tmp, "w") as f:
            f.write(version_text(n))
        t0 = time.perf_counter()
        os.replace(tmp, app)
        while version() != str(n):
            if time.perf_counter() - t0 > 10:
                sys.exit("save %d never served:\n%s" % (n, "".join(lines[seen:])))
            time.sleep(0.001)
        outside.append((time.perf_counter() - t0) * 1000)
        deadline = time.time() + 5
        while time.time() < deadline:
            m = [re.search(r"reloaded .* in ([\d.]+) ms, ([\d.]+) ms after the change", l) for l in lines[seen:]]
            m = [x for x in m if x]
            if m:
                inside.append(float(m[-1].group(2)))
                break
            time.sleep(0.005)
        time.sleep(0.15)  # let each save stand alone
finally:
    proc.terminate()
    proc.wait(20)
def show(name, xs):
    print("  %-44s median %6.1f ms   max %6.1f ms   (n=%d)" % (name, statistics.median(xs), max(xs), len(xs)))
print("reload latency, %s, %d saves" % (os.path.basename(folder.rstrip("/")), saves))
show("logged (first inotify event -> new version)", inside)
show("measured (rename -> new code answers GET)", outside)
print("  target: well under 100 ms ->", "met" if max(outside) < 100 else "MISSED")
os.makedirs(results, exist_ok=True)
with open(os.path.join(results, "reload-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())), "w") as f:
    json.dump({"logged_ms": inside, "measured_ms": outside}, f)
PY
