#!/usr/bin/env bash
# The outcome benchmark: seeds only vs seeds + real labelled rows (the
# ceiling) vs seeds + curated examples, with the n-gram and the embedding
# small model, on the public sets in ../shared/data (mean over draws).
#
#   scripts/outcome.sh                                   # all four sets, 5 draws
#   scripts/outcome.sh --sets agnews,clinc20 --draws 3
#   scripts/outcome.sh --curated agnews=run.jsonl        # + a recorded generation run (text,label lines)
#   scripts/outcome.sh --project agnews=my-agnews        # + a project's accepted generated examples
#   scripts/outcome.sh --run agnews=assets/outcome-runs/agnews --run clinc20=assets/outcome-runs/clinc20
#       # a recorded generation run (a project made by scripts/shared-project.sh): seeds only,
#       # + generated filtered by the LLM judge / by the chosen judge, + as many real rows
#
# Needs the local embedder (installed here if missing) and the data folder
# (../shared/data beside the clone, or STRADDLE_DATA=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${STRADDLE_DATA:-../shared/data}"
[ -d "$DATA" ] || [ -n "${STRADDLE_DATA:-}" ] || DATA=../../shared/data   # a worktree one level deeper
if [ ! -d "$DATA" ]; then
    echo "outcome: $DATA is missing (the public labelled sets); set STRADDLE_DATA=DIR" >&2
    exit 2
fi
scripts/embedder.sh install
exec cargo run --release --quiet --example outcome -- --data "$DATA" "$@"
