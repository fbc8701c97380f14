#!/usr/bin/env bash
# Issue 15's memory target, measured over a whole TUI session on the real
# release binary (not only at open, as `scripts/scale.sh` does):
#
#   scripts/rss-session.sh [SAMPLES]          (default 200000)
#
# On a copy of the scale project (`scripts/scale.sh` writes it; its backend
# pointed at a closed port, so nothing reaches an LLM) it drives
# `straddle tui` in tmux through what a user does in a first session, each
# step waited for on screen:
#
#   open        the review list is shown;
#   measure     the judges' measure that starts at open has answered
#               (it embeds every generated text with the local embedder);
#   accept      5 accepts, and the measure they trigger has answered;
#   signals     `T`: training signals recomputed;
#   round       `R`: an S3 round trained and scored (its extrapolation fails:
#               no server);
#   export      `E`: the export dialog's data gate answered, then Esc;
#   map         `m`: the map shows every sample (vectors for all of them);
#   quit        `q`.
#
# The process's resident memory (VmRSS) is sampled every 100 ms; the peak of
# each step, the whole session's peak (also /usr/bin/time's max RSS) and
# the CPU time are printed. After each step but open (whose measure is then
# already running) has answered and the process is idle (under 0.05 s of
# CPU over 2 s: a job a step starts may not show on screen, as the measure
# the accepts start once judges are shown), the script waits, keys
# untouched, until RSS
# has stopped falling (at least REST_SECONDS, default 12: tokio keeps an
# idle job thread 10 s and the allocator frees its pages when it exits; at
# most 40 s) and prints the step's RSS "at rest", the lowest sample of that
# wait: what the step leaves resident for the next one, live data the TUI
# keeps plus what the allocator has not given back. The peaks are of the
# steps' own work, never of those waits. STEPS (a comma-separated subset of
# the names above, e.g. STEPS=measure,signals,export; open and quit always
# run) runs fewer steps; RSS_TRACE=FILE writes every sample (seconds, step,
# MB) to FILE.
# The figures need the local embedder installed
# (`scripts/embedder.sh install`); a step that does not answer within
# STEP_LIMIT seconds (default 1200) ends the run with the screen printed.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-200000}
SCALE_DIR=${SCALE_DIR:-/tmp/straddle-scale}
PROJECT=$SCALE_DIR/p$SAMPLES
if [ -z "${STRADDLE_BIN:-}" ]; then
    cargo build --release --quiet --bin straddle
fi
BIN=${STRADDLE_BIN:-$PWD/target/release/straddle}
if [ ! -f "$PROJECT/.complete" ]; then
    echo "no scale project at $PROJECT: run scripts/scale.sh $SAMPLES first" >&2
    exit 1
fi
cat "$PROJECT/journal.jsonl" >/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$BIN" "$PROJECT" "${STEP_LIMIT:-1200}" "${REST_SECONDS:-12}" "${STEPS:-}" \
    "${RSS_TRACE:-}" <<'EOF'
import os, re, shutil, subprocess, sys, tempfile, threading, time

BIN, PROJECT, LIMIT = sys.argv[1], sys.argv[2], float(sys.argv[3])
REST, STEPS, TRACE = float(sys.argv[4]), sys.argv[5], sys.argv[6]
tmp = tempfile.mkdtemp(prefix="straddle-rss-")
work = os.path.join(tmp, "p")
shutil.copytree(PROJECT, work)
toml = os.path.join(work, "straddle.toml")
cfg = open(toml).read()
cfg = re.sub(r'base_url\s*=\s*"[^"]*"', 'base_url = "http://127.0.0.1:9/v1"', cfg)
open(toml, "w").write(cfg)

sock = f"straddle-rss-{os.getpid()}"
def tmux(*args, **kw):
    return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], **kw)
def screen():
    return tmux("capture-pane", "-p", "-t", "app", capture_output=True, text=True).stdout

pid_f, time_f, end_f = (os.path.join(tmp, n) for n in ("pid", "tui.time", "end"))
cmd = (f"sh -c 'echo $$ > {pid_f}; exec /usr/bin/time -v -o {time_f} "
       f"env STRADDLE_CONFIG={tmp}/none.toml {BIN} tui {work}'; date +%s.%N > {end_f}")
tmux("new-session", "-d", "-s", "app", "-x", "140", "-y", "45", cmd, check=True)

step = ["open"]
peaks = {}
rests = {}
resting = [False]
samples = []
stop = False
def app_pid():
    while not os.path.exists(pid_f) or not open(pid_f).read().strip():
        time.sleep(0.01)
    tpid = open(pid_f).read().strip()
    while True:
        out = subprocess.run(["pgrep", "-P", tpid], capture_output=True, text=True).stdout.split()
        if out:
            return out[0]
        time.sleep(0.01)
def sampler(pid):
    t0 = time.perf_counter()
    while not stop:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    mb = int(line.split()[1]) / 1024
                    if resting[0]:
                        rests[step[0]] = min(rests.get(step[0], mb), mb)
                    else:
                        peaks[step[0]] = max(peaks.get(step[0], 0), mb)
                    samples.append((time.perf_counter() - t0, step[0], mb))
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.1)
pid = app_pid()
th = threading.Thread(target=sampler, args=(pid,), daemon=True)
th.start()

def wait(cond, what, limit=LIMIT):
    t0 = time.perf_counter()
    while True:
        s = screen()
        if cond(s):
            return s
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"timed out waiting for {what}; screen:\n{s}")
        time.sleep(0.05)
def send(*keys):
    tmux("send-keys", "-t", "app", *keys, check=True)

times = {}
def cpu_seconds():
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return None

def wait_idle(name):
    # What the screen shows is not always all a step started: once judges
    # are shown, the measure the accepts start shows only as a
    # " · measuring again…" past the pane's edge. The step ends when the
    # process is idle too (under 0.05 s of CPU over 2 s).
    t0 = time.perf_counter()
    last = cpu_seconds()
    while time.perf_counter() - t0 < LIMIT:
        time.sleep(2)
        now = cpu_seconds()
        if now is None or last is None or now - last < 0.05:
            return
        last = now
    raise SystemExit(f"{name}: still busy after {LIMIT} s")

def run(name, fn):
    step[0] = name
    t0 = time.perf_counter()
    fn()
    if name not in ("open", "quit"):
        wait_idle(name)
    times[name] = time.perf_counter() - t0
    # At open the judges' measure is already running: no rest to wait for.
    if name not in ("open", "quit"):
        rest(name)

def rest(name):
    # The step has answered: keep sampling, keys untouched, until RSS stops
    # falling (less than 1 MB over the last second, after REST seconds).
    resting[0] = True
    t0 = time.perf_counter()
    n0 = len(samples)
    while True:
        time.sleep(0.25)
        now = time.perf_counter() - t0
        mine = samples[n0:]
        if now >= 40 or not th.is_alive():
            break
        if now >= REST and len(mine) > 12 and mine[-11][2] - mine[-1][2] < 1:
            break
    resting[0] = False

review = re.compile(r"Review (\d+)/(\d+)")
measuring = "measuring judges"
def measured(s):
    return "judges:" in s and measuring not in s
def counts(s):
    m = re.search(r"gen · ✓(\d+) ✗(\d+) ·(\d+)", s)
    return m and m.groups()

def open_():
    wait(lambda s: review.search(s) and "idle" in s, "the review list")
def measure():
    wait(measured, "the judges' measure")
def accept():
    for _ in range(5):
        before = counts(screen())
        send("-l", "a")
        wait(lambda s: counts(s) != before, "an accept", 30)
    # The measure they trigger starts after a short debounce.
    try:
        wait(lambda s: measuring in s, "the measure to start", 10)
    except SystemExit:
        pass
    wait(measured, "the judges' measure after the accepts")
def signals():
    send("-l", "T")
    wait(lambda s: "training signals updated" in s or "training signals failed" in s,
         "training signals")
def round_():
    send("-l", "R")
    wait(lambda s: "held-out wrong" in s or "S3 round failed" in s or "no held-out" in s,
         "the S3 round")
def export():
    send("-l", "E")
    wait(lambda s: "data gate:" in s and "checking" not in s or "data gate could not run" in s,
         "the data gate")
    send("Escape")
def map_():
    total = int(re.search(r"(\d+) gen", screen()).group(1))
    send("-l", "m")
    def done(s):
        m = re.search(r"Map · (\d+) points", s)
        return m and int(m.group(1)) >= total
    wait(done, "the map's points")
    send("-l", "m")
def quit_():
    send("-l", "q")
    while not os.path.exists(end_f) or not open(end_f).read().strip():
        time.sleep(0.01)

try:
    for name, fn in [("open", open_), ("measure", measure), ("accept", accept),
                     ("signals", signals), ("round", round_), ("export", export),
                     ("map", map_), ("quit", quit_)]:
        if not STEPS or name in STEPS.split(",") or name in ("open", "quit"):
            run(name, fn)
finally:
    stop = True
    tmux("kill-server", stderr=subprocess.DEVNULL)
    for name, mb in peaks.items():
        print(f"  {name:<8} {times.get(name, float('nan')):7.1f} s   peak RSS {mb:6.0f} MB")
    if rests:
        print("at rest (lowest RSS once the step answered, until it stopped falling):")
        for name, mb in rests.items():
            print(f"  {name:<8} {mb:6.0f} MB")
    if TRACE:
        with open(TRACE, "w") as out:
            for t, name, mb in samples:
                out.write(f"{t:.2f} {name} {mb:.1f}\n")

t = open(time_f).read()
def f(key):
    return re.search(re.escape(key) + r":\s*(\S+)", t).group(1)
cpu = float(f("User time (seconds)")) + float(f("System time (seconds)"))
max_rss = int(f("Maximum resident set size (kbytes)")) / 1024
print(f"session: CPU {cpu:.1f} s, max RSS {max_rss:.0f} MB (/usr/bin/time), "
      f"sampled peak {max(peaks.values()):.0f} MB")
shutil.rmtree(tmp, ignore_errors=True)
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
