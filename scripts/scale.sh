#!/usr/bin/env bash
# Issue 15's scale figures, measured on the real release binary:
#
#   scripts/scale.sh [SAMPLES]            (default 200000)
#
# 1. builds `straddle` in release and `examples/scale_project` (debug is
#    enough: it only writes the fixture, the same bytes every time);
# 2. writes the project once into $SCALE_DIR (default /tmp/straddle-scale):
#    200,000 generated samples, ~600,000 events, ~163 MB journal, one 10 MB
#    seed text (see src/store/scale.rs);
# 3. `straddle stats DIR` RUNS times (default 5) under /usr/bin/time -v:
#    median wall, CPU (user+sys) and max RSS;
# 4. `straddle tui` on a copy of the project in a 120×40 tmux: time until the
#    review list is on screen ("Review 1/N"), then per-key latency (send-keys
#    → the screen shows the key's effect, by capture-pane polling) for moves
#    (`j`), accepts (`a`, durable before the screen shows them) and
#    selecting the 10 MB seed, then `q` → process exit, and the process's
#    max RSS and CPU (from /usr/bin/time -v).
#
# The figures are warm-cache (the journal is read once before measuring).
# The key latency includes tmux's own cost (spawning send-keys, one
# `capture-pane` per poll); the same loop on a pane that only echoes the key
# is printed beside it ("tmux alone"): the app's part is the difference. The machine's load average is
# printed too: the figures are only comparable on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-200000}
SCALE_DIR=${SCALE_DIR:-/tmp/straddle-scale}
RUNS=${RUNS:-5}
KEYS=${KEYS:-40}

# STRADDLE_BIN=path measures another build (e.g. a copy of an older one).
if [ -z "${STRADDLE_BIN:-}" ]; then
    cargo build --release --quiet --bin straddle
fi
BIN=${STRADDLE_BIN:-$PWD/target/release/straddle}
cargo build --quiet --example scale_project
PROJECT=$SCALE_DIR/p$SAMPLES
# Bump when src/store/scale.rs writes other bytes: an older project is
# written again (2: the 4 samples of a request share one provenance).
FIXTURE=2
if [ "$(cat "$PROJECT/.complete" 2>/dev/null)" != "$FIXTURE" ]; then
    rm -rf "$PROJECT"
    mkdir -p "$SCALE_DIR"
    target/debug/examples/scale_project "$PROJECT" "$SAMPLES"
    echo "$FIXTURE" >"$PROJECT/.complete"
fi
cat "$PROJECT/journal.jsonl" >/dev/null

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "project: $PROJECT ($(du -m "$PROJECT/journal.jsonl" | cut -f1) MB journal)"

python3 - "$BIN" "$PROJECT" "$RUNS" "$KEYS" <<'EOF'
import os, re, shutil, statistics, subprocess, sys, tempfile, time

BIN, PROJECT, RUNS, KEYS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def time_v(path):
    """Wall (s), user+sys (s), max RSS (MB) from a /usr/bin/time -v file."""
    t = open(path).read()
    def f(key):
        return re.search(re.escape(key) + r":\s*(\S+)", t).group(1)
    wall = f("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
    return secs, cpu, int(f("Maximum resident set size (kbytes)")) / 1024

def med(xs):
    return statistics.median(xs)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

# --- stats -----------------------------------------------------------------
tmp = tempfile.mkdtemp(prefix="straddle-scale-")
walls, cpus, rss = [], [], []
for i in range(RUNS):
    tf = os.path.join(tmp, "stats.time")
    subprocess.run(["/usr/bin/time", "-v", "-o", tf, BIN, "stats", PROJECT],
                   check=True, stdout=subprocess.DEVNULL)
    w, c, r = time_v(tf)
    walls.append(w); cpus.append(c); rss.append(r)
print(f"stats: wall {med(walls)*1000:.0f} ms (min {min(walls)*1000:.0f}), "
      f"CPU {med(cpus)*1000:.0f} ms, max RSS {med(rss):.0f} MB  [median of {RUNS}]")

# --- tui -------------------------------------------------------------------
work = os.path.join(tmp, "p")
shutil.copytree(PROJECT, work)
sock = f"straddle-scale-{os.getpid()}"
def tmux(*args, **kw):
    return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], **kw)
def screen():
    return tmux("capture-pane", "-p", "-t", "app", capture_output=True, text=True).stdout
def wait(cond, what, limit=120.0):
    t0 = time.perf_counter()
    while True:
        s = screen()
        if cond(s):
            return time.perf_counter(), s
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"timed out waiting for {what}; screen:\n{s}")

start_f, end_f, time_f = (os.path.join(tmp, n) for n in ("start", "end", "tui.time"))
cmd = (f"date +%s.%N > {start_f}; STRADDLE_CONFIG={tmp}/none.toml STRADDLE_DENOISE=off "
       f"/usr/bin/time -v -o {time_f} {BIN} tui {work}; date +%s.%N > {end_f}")
tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40", cmd, check=True)
try:
    review = re.compile(r"Review (\d+)/(\d+)")
    shown, s = wait(lambda s: review.search(s) and "idle" in s, "the review list")
    t_start = float(open(start_f).read())
    open_ms = (time.time() - (time.perf_counter() - shown) - t_start) * 1000

    probe = []
    for _ in range(20):
        t0 = time.perf_counter(); screen(); probe.append(time.perf_counter() - t0)
    # tmux's own round trip: the same send-keys → capture-pane loop on a
    # pane whose terminal echoes the key itself (no app in between).
    tmux("new-session", "-d", "-s", "echo", "-x", "120", "-y", "40", "cat", check=True)
    echo = []
    for _ in range(KEYS):
        cap = lambda: tmux("capture-pane", "-p", "-t", "echo", capture_output=True, text=True).stdout
        before = cap().count("x")
        t0 = time.perf_counter()
        tmux("send-keys", "-t", "echo", "-l", "x", check=True)
        while cap().count("x") == before:
            pass
        echo.append(time.perf_counter() - t0)
    tmux("kill-session", "-t", "echo")

    def key_latency(key, changed, n):
        lat = []
        for _ in range(n):
            before = screen()
            t0 = time.perf_counter()
            tmux("send-keys", "-t", "app", "-l", key, check=True)
            t1, _ = wait(lambda s: changed(before, s), f"the effect of {key!r}", 30)
            lat.append(t1 - t0)
        return lat

    def pos(s):
        m = review.search(s)
        return m and (m.group(1), m.group(2))
    def counts(s):
        m = re.search(r"gen · ✓(\d+) ✗(\d+) ·(\d+)", s)
        return m and m.groups()

    moves = key_latency("j", lambda a, b: pos(a) != pos(b), KEYS)
    accepts = key_latency("a", lambda a, b: counts(a) != counts(b), KEYS // 2)
    # The 10 MB seed (class DESC, the second): Tab focuses the Seeds pane,
    # then j / k move between ABBR and DESC, so every other frame lays out
    # the pane with the huge text in it.
    s0 = screen()
    tmux("send-keys", "-t", "app", "Tab", check=True)
    t0 = time.perf_counter()
    while screen() == s0 and time.perf_counter() - t0 < 2:
        pass
    seeds = []
    for i in range(KEYS // 2):
        seeds += key_latency("jk"[i % 2], lambda a, b: a != b, 1)
    def report(name, xs):
        print(f"  {name:<22} median {med(xs)*1000:6.1f} ms, p95 {pct(xs,95)*1000:6.1f} ms, "
              f"max {max(xs)*1000:6.1f} ms  [{len(xs)} keys]")
    print(f"tui: review list shown {open_ms:.0f} ms after start")
    print(f"  probe (one capture-pane) median {med(probe)*1000:.1f} ms; tmux alone "
          f"(send-keys → echo on screen, no app) median {med(echo)*1000:.1f} ms, "
          f"p95 {pct(echo,95)*1000:.1f} ms")
    report("move (j)", moves)
    report("accept (a, durable)", accepts)
    report("seeds j/k (10 MB seed)", seeds)

    t0 = time.time()
    tmux("send-keys", "-t", "app", "-l", "q", check=True)
    deadline = time.perf_counter() + 60
    while not os.path.exists(end_f) or not open(end_f).read().strip():
        if time.perf_counter() > deadline:
            raise SystemExit("the app did not quit")
        time.sleep(0.002)
    quit_ms = (float(open(end_f).read()) - t0) * 1000
    w, c, r = time_v(time_f)
    print(f"  quit (q → exit)        {quit_ms:.0f} ms")
    print(f"  process: wall {w:.1f} s, CPU {c*1000:.0f} ms, max RSS {r:.0f} MB")
finally:
    tmux("kill-server", stderr=subprocess.DEVNULL)
    shutil.rmtree(tmp, ignore_errors=True)
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
