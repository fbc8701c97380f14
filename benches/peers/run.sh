#!/usr/bin/env bash
# The peers bench (issue 15): `straddle generate` beside openai-python,
# bespokelabs-curator and distilabel, each sending the same chat
# completions to the same fake OpenAI-compatible server
# (benches/peers/server.rs), client pinned to one core and server to the
# other, whole-process wall and CPU (user + system, start-up included)
# from /usr/bin/time, the median of PEERS_RUNS runs in rotated order, at
# 0 ms and 200 ms server latency. Prints a Markdown table.
#
#   benches/peers/run.sh            # everything (installs the Python tools once)
#   PEERS_CLIENTS="straddle openai-plain" PEERS_LATENCIES=0 benches/peers/run.sh
#
# Settings (environment):
#   PEERS_N=2000 PEERS_CONCURRENCY=64 PEERS_RUNS=3 PEERS_LATENCIES="0 200"
#   PEERS_CLIENTS="straddle straddle-tmpfs openai-plain openai-stream curator distilabel"
#   PEERS_VENVS=/tmp/peers-venvs   throwaway virtualenvs (never in the repo)
#   PEERS_WORK=target/peers        projects and logs (on disk: fsync is real)
#   PEERS_CLIENT_CPU=0 PEERS_SERVER_CPU=1
#   PEERS_PYTHON=python3.11
#   PEERS_BUILD=0 (use the binaries as built) PEERS_STRADDLE=path/to/straddle
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
N=${PEERS_N:-2000}
C=${PEERS_CONCURRENCY:-64}
RUNS=${PEERS_RUNS:-3}
LATENCIES=${PEERS_LATENCIES:-"0 200"}
CLIENTS=${PEERS_CLIENTS:-"straddle straddle-tmpfs openai-plain openai-stream curator distilabel"}
VENVS=${PEERS_VENVS:-/tmp/peers-venvs}
WORK=${PEERS_WORK:-$root/target/peers}
CCPU=${PEERS_CLIENT_CPU:-0}
SCPU=${PEERS_SERVER_CPU:-1}
PY=${PEERS_PYTHON:-python3.11}
# The versions measured; change them here.
OPENAI_PKG="openai"
CURATOR_PKG="bespokelabs-curator"
DISTILABEL_PKG="distilabel[openai] requests"  # 1.5.3 imports requests without declaring it

mkdir -p "$WORK"
results="$WORK/results.tsv"
: >"$results"

say() { echo "peers: $*" >&2; }

# --- build and install (once) ---------------------------------------------
if [ "${PEERS_BUILD:-1}" = 1 ]; then
    say "building straddle and the fake server (release)"
    # Two builds: with the example, cargo would build the binary with the
    # dev-dependencies' features (test-fixtures) too.
    cargo build --release --quiet --bin straddle
    cargo build --release --quiet --example peers_server
fi
STRADDLE=${PEERS_STRADDLE:-$root/target/release/straddle}
SERVER="$root/target/release/examples/peers_server"

venv() { # name package
    local dir="$VENVS/$1"
    if [ ! -x "$dir/bin/python" ] || [ ! -e "$dir/.installed" ]; then
        say "installing $2 into $dir (once)"
        "$PY" -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check $2  # may name several
        touch "$dir/.installed"
    fi
}
needs() { case " $CLIENTS " in *" $1"*) return 0 ;; *) return 1 ;; esac; }
needs openai && venv openai "$OPENAI_PKG"
needs curator && venv curator "$CURATOR_PKG"
needs distilabel && venv distilabel "$DISTILABEL_PKG"

version() { "$VENVS/$1/bin/python" -c "import importlib.metadata as m; print(m.version('$2'))"; }

# --- one server per latency -------------------------------------------------
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap stop_server EXIT

start_server() { # latency_ms
    local log="$WORK/server.out"
    : >"$log"
    taskset -c "$SCPU" "$SERVER" --latency-ms "$1" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        URL=$(sed -n 's/^listening on //p' "$log")
        [ -n "$URL" ] && return 0
        sleep 0.1
    done
    say "the server did not start: $(cat "$log")"
    exit 1
}

# A fresh straddle project in $1 against $URL: concurrency fixed at $C
# (the Python clients keep $C in flight too; `adaptive = true` would start
# at 1 and grow), no denoiser (it would embed every text), relabel off.
straddle_project() {
    rm -rf "$1"
    "$STRADDLE" init "$1" --example trec6 --base-url "$URL" --model test-model >/dev/null
    "$PY" benches/peers/configure.py "$1/straddle.toml" "$C"
}

# litellm's bundled tiktoken files in venv $1 (empty when it has none).
tiktoken_dir() {
    local d
    for d in "$VENVS/$1"/lib/python3*/site-packages/litellm/litellm_core_utils/tokenizers; do
        [ -d "$d" ] && echo "$d"
    done
}

# The command line of client $1 (after its set-up).
client_cmd() {
    case "$1" in
    straddle)
        straddle_project "$WORK/project"
        CMD=("$STRADDLE" generate "$WORK/project" --count "$N" --per-request 1 --no-relabel)
        ;;
    straddle-tmpfs)
        straddle_project /dev/shm/straddle-peers-project
        CMD=("$STRADDLE" generate /dev/shm/straddle-peers-project --count "$N" --per-request 1 --no-relabel)
        ;;
    openai-plain) CMD=("$VENVS/openai/bin/python" benches/peers/openai_client.py "$URL" "$N" "$C" plain) ;;
    openai-stream) CMD=("$VENVS/openai/bin/python" benches/peers/openai_client.py "$URL" "$N" "$C" stream) ;;
    curator)
        rm -rf "$WORK/curator-cache"
        # No telemetry upload; tiktoken's cl100k_base from the copy litellm
        # ships (it would download it).
        CMD=(env CURATOR_CACHE_DIR="$WORK/curator-cache" CURATOR_DISABLE_CACHE=1
            TELEMETRY_ENABLED=false TIKTOKEN_CACHE_DIR="$(tiktoken_dir curator)"
            "$VENVS/curator/bin/python" benches/peers/curator_client.py "$URL" "$N" "$C")
        ;;
    distilabel)
        rm -rf "$WORK/distilabel-cache"
        CMD=(env DISTILABEL_CACHE_DIR="$WORK/distilabel-cache"
            "$VENVS/distilabel/bin/python" benches/peers/distilabel_client.py "$URL" "$N" "$C")
        ;;
    *) say "unknown client $1"; exit 2 ;;
    esac
}

read -r -a clients <<<"$CLIENTS"
for lat in $LATENCIES; do
    start_server "$lat"
    say "server at $URL, latency $lat ms"
    for run in $(seq "$RUNS"); do
        # Rotate the order so no client always runs first (or last).
        k=$(( (run - 1) % ${#clients[@]} ))
        order=("${clients[@]:k}" "${clients[@]:0:k}")
        for c in "${order[@]}"; do
            client_cmd "$c"
            log="$WORK/$c-$lat-$run.log"
            if ! /usr/bin/time -f "%e %U %S" -o "$WORK/time" taskset -c "$CCPU" "${CMD[@]}" >"$log" 2>&1; then
                say "$c failed (latency $lat, run $run); see $log"
                tail -5 "$log" >&2
                continue
            fi
            read -r wall user sys <"$WORK/time"
            printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$lat" "$wall" "$user" "$sys" >>"$results"
            say "$(printf '%-15s %4s ms  run %s: wall %6.2f s  cpu %6.2f s' "$c" "$lat" "$run" "$wall" "$(echo "$user + $sys" | bc)")"
        done
    done
    stop_server
done

versions=""
needs openai && versions+="openai-python $(version openai openai); "
needs curator && versions+="curator $(version curator bespokelabs-curator); "
needs distilabel && versions+="distilabel $(version distilabel distilabel); "
load=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$results" "$N" "$C" "$versions" "$load" "$(nproc)" <<'EOF'
import statistics, sys
from collections import defaultdict
path, n, c, versions, load, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
runs = defaultdict(list)
order = []
for line in open(path):
    name, lat, wall, user, sys_ = line.split("\t")
    if name not in order:
        order.append(name)
    runs[(name, int(lat))].append((float(wall), float(user) + float(sys_)))
names = {
    "straddle": "`straddle generate` (project on disk)",
    "straddle-tmpfs": "same, project on tmpfs",
    "openai-plain": "openai-python AsyncOpenAI, non-streaming",
    "openai-stream": "openai-python AsyncOpenAI, streaming",
    "curator": "bespokelabs-curator",
    "distilabel": "distilabel",
}
ideal = n / c * 0.2
def med(xs):
    return statistics.median(xs) if xs else None
print(f"{n} chat completions at concurrency {c}, client on one core, server on the other; "
      f"medians of {max(len(v) for v in runs.values())} rotated runs; CPU = user + system of the "
      f"whole client process, start-up included")
print()
print(f"| client | req/s, 0 ms latency | client CPU per request | wall at 200 ms latency (ideal {ideal:.2f} s) |")
print("|---|---|---|---|")
for name in order:
    z = runs.get((name, 0), [])
    s = runs.get((name, 200), [])
    rps = f"{n / med([w for w, _ in z]):,.0f}" if z else "–"
    cpus = [cpu for _, cpu in z] or [cpu for _, cpu in s]
    cpu = f"{med(cpus) * 1000 / n:.3f} ms" if cpus else "–"
    if s:
        w = med([w for w, _ in s])
        wall = f"{w:.2f} s ({100 * (w / ideal - 1):+.1f}%)"
    else:
        wall = "–"
    print(f"| {names.get(name, name)} | {rps} | {cpu} | {wall} |")
print()
print(f"{versions}load average at the end {load} on {cores} cores")
EOF
