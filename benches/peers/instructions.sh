#!/usr/bin/env bash
# Instructions per request of the whole `straddle generate` process,
# counted by valgrind (callgrind): a load-independent figure, repeatable on
# a busy machine where wall and CPU times are not.
#
#   benches/peers/instructions.sh [STRADDLE_BINARY] [N_SMALL N_LARGE]
#
# Runs `generate --count N --per-request 1 --no-relabel` (concurrency 64,
# fixed, no denoiser: the peers bench's project) against the peers server
# at 0 ms latency for two counts and prints the instructions per request
# including start-up (N_LARGE) and the marginal ones (the difference over
# N_LARGE - N_SMALL requests). Leaves callgrind.out files in
# target/peers/ for `callgrind_annotate`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
BIN=${1:-$root/target/release/straddle}
SMALL=${2:-200}
LARGE=${3:-1000}
WORK=${PEERS_WORK:-$root/target/peers}
PY=${PEERS_PYTHON:-python3.11}
mkdir -p "$WORK"
[ -x "$BIN" ] || cargo build --release --quiet --bin straddle
[ -x target/release/examples/peers_server ] || cargo build --release --quiet --example peers_server

target/release/examples/peers_server >"$WORK/iserver.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    URL=$(sed -n 's/^listening on //p' "$WORK/iserver.out")
    [ -n "$URL" ] && break
    sleep 0.1
done

count() { # n -> instructions
    local dir="$WORK/iproject"
    rm -rf "$dir"
    "$BIN" init "$dir" --example trec6 --base-url "$URL" --model test-model >/dev/null
    "$PY" "$root/benches/peers/configure.py" "$dir/straddle.toml" 64
    local out="$WORK/callgrind.out.$(basename "$BIN").$1"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" generate "$dir" --count "$1" --per-request 1 --no-relabel >"$WORK/igenerate.log" 2>&1
    grep -q "$1 examples added" "$WORK/igenerate.log" || { cat "$WORK/igenerate.log" >&2; exit 1; }
    sed -n 's/^summary: //p' "$out"
}
small=$(count "$SMALL")
large=$(count "$LARGE")
"$PY" - "$small" "$large" "$SMALL" "$LARGE" "$BIN" <<'EOF'
import sys
small, large, ns, nl, binary = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"{binary}: {large:,} instructions for {nl} requests = {large / nl:,.0f} per request "
      f"including start-up; marginal {(large - small) / (nl - ns):,.0f} per request "
      f"({small:,} for {ns})")
EOF
