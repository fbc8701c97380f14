#!/usr/bin/env bash
# Make a straddle project from one of the public labelled sets in
# ../shared/data: K seeds per class (drawn with a fixed seed) and N held-out
# validation rows, against the local model server (or --base-url/--model).
#
#   scripts/shared-project.sh agnews /tmp/agnews [--k 2] [--validation 200] [--seed 0]
#       [--base-url http://127.0.0.1:8765/v1] [--model smollm2]
#
# Then, for example (scripts/local-llm.sh start runs the local server):
#   straddle judge /tmp/agnews --sample 100     # the relabeler against chance on real rows
#   straddle generate /tmp/agnews --count 40    # then `straddle stats` shows the parser's rejections
set -euo pipefail
cd "$(dirname "$0")/.."
set_name="${1:?usage: scripts/shared-project.sh SET DIR [--k K] [--validation N] [--seed S] [--base-url URL] [--model M]}"
dir="${2:?usage: scripts/shared-project.sh SET DIR ...}"
shift 2
k=2 n=200 seed=0 url=http://127.0.0.1:8765/v1 model=smollm2
while [ $# -gt 0 ]; do
    case "$1" in
        --k) k="$2"; shift 2 ;;
        --validation) n="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --base-url) url="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        *) echo "shared-project: unknown option $1" >&2; exit 2 ;;
    esac
done
DATA="${STRADDLE_DATA:-../shared/data}"
[ -d "$DATA" ] || DATA=../../shared/data
file="$DATA/$set_name.jsonl"
if [ ! -f "$file" ]; then
    echo "shared-project: $file is missing (the public labelled sets live in ../shared/data; set STRADDLE_DATA=DIR)" >&2
    exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$file" "$work" "$k" "$n" "$seed" "$set_name" <<'PY'
import json, random, sys, csv
path, work, k, n, seed, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
rng = random.Random(seed)
rng.shuffle(rows)
labels = sorted({r["label"] for r in rows})
seeds, rest = [], []
taken = {l: 0 for l in labels}
for r in rows:
    if taken[r["label"]] < k:
        taken[r["label"]] += 1
        seeds.append(r)
    else:
        rest.append(r)
# One-line descriptions a user would write for these sets.
desc = {
    "agnews": {"World": "world news: politics, conflicts, diplomacy", "Sports": "sports news: games, players, results",
               "Business": "business news: companies, markets, the economy", "SciTech": "science and technology news"},
    "tweet_emotion": {"anger": "tweets expressing anger", "joy": "tweets expressing joy",
                      "optimism": "tweets expressing optimism or hope", "sadness": "tweets expressing sadness"},
    "financial_phrasebank": {"negative": "financial news with a negative outlook", "neutral": "neutral financial news",
                             "positive": "financial news with a positive outlook"},
}.get(name, {})
task = {
    "agnews": "News article headlines and first sentences.",
    "tweet_emotion": "Tweets, classified by the emotion they express.",
    "financial_phrasebank": "Sentences from financial news, classified by sentiment.",
    "clinc20": "Requests people make to a voice assistant, classified by intent.",
}.get(name, "Short texts.")
def write(fname, items):
    with open(f"{work}/{fname}", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for r in items:
            w.writerow([r["text"].replace("\n", " "), r["label"]])
write("seeds.csv", seeds)
write("validation.csv", rest[:n])
with open(f"{work}/classes.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["label", "description"])
    for l in labels:
        w.writerow([l, desc.get(l, "texts labelled " + l.replace("_", " "))])
open(f"{work}/task.txt", "w").write(task)
PY
bin=target/debug/straddle
[ -x target/release/straddle ] && bin=target/release/straddle
[ -x "$bin" ] || { cargo build --quiet; bin=target/debug/straddle; }
"$bin" init "$dir" --seeds "$work/seeds.csv" --descriptions "$work/classes.csv" \
    --task "$(cat "$work/task.txt")" --base-url "$url" --model "$model"
"$bin" import "$dir" "$work/validation.csv" --as validation
