#!/usr/bin/env python3
"""Record real SmolLM2 replies to straddle's prompts as parser fixtures.

Renders prompts/*.j2 with jinja2 (same trim/lstrip settings as straddle),
sends them to a running local server (scripts/local-llm.sh start PORT) and
writes tests/fixtures/smollm2/NN-<kind>.json holding the request and the raw
reply. Usage: record-smollm2-fixtures.py PORT [extra]  (extra: files 32+ only)
"""
import json, pathlib, random, sys, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "smollm2"
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8765

import jinja2

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(ROOT / "prompts"),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
)

TASK = {"name": "trec6", "description": "Questions people ask a search engine."}
CLASSES = [
    ("ABBR", "an abbreviation or what it stands for", ["What does NASA stand for?", "What is the abbreviation for ounce?"]),
    ("DESC", "a description, definition, manner or reason", ["Why is the sky blue?", "How do bees make honey?"]),
    ("ENTY", "an entity such as an animal, colour, food or product", ["What is the largest breed of dog?", "What colour is a ruby?"]),
    ("HUM", "a person or group of people", ["Who wrote Hamlet?", "Who invented the telephone?"]),
    ("LOC", "a location such as a city, country or mountain", ["Where is the Eiffel Tower?", "What is the capital of Peru?"]),
    ("NUM", "a number, date, amount or distance", ["How tall is Mount Everest?", "When did World War II end?"]),
]
GENERATED = [
    ("Who was the first person to walk on the moon?", "HUM"),
    ("What does CPU stand for?", "ABBR"),
    ("How far is Paris from London?", "NUM"),
    ("Why do cats purr?", "DESC"),
    ("Which river flows through Cairo?", "LOC"),
    ("What is the name of the fastest bird?", "ENTY"),
    ("Who founded the city of Rome and where is it?", "HUM"),
    ("How many people live in the capital of Japan?", "NUM"),
]

def cls(names, shots=2):
    return [{"name": n, "description": d, "examples": ex[:shots]} for (n, d, ex) in CLASSES if n in names]

def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/chat/completions",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())

def record(i, kind, body):
    resp = post(body)
    choice = resp["choices"][0]
    item = {"kind": kind, "request": body, "reply": choice["message"]["content"],
            "finish_reason": choice.get("finish_reason"),
            "logprobs": choice.get("logprobs"), "usage": resp.get("usage")}
    (OUT / f"{i:02d}-{kind}.json").write_text(json.dumps(item, indent=1, ensure_ascii=False) + "\n")
    print(i, kind, repr(item["reply"][:100]))

def extra():
    """JSON-array generation replies (a user's template override) and free
    relabel answers at temperature 1 (labels in other cases, extra words)."""
    rnd = random.Random(1)
    names = [c[0] for c in CLASSES]
    i = 32
    for _ in range(5):
        shown = sorted(rnd.sample(names, 4), key=names.index)
        target, minor = rnd.sample(shown, 2)
        major = rnd.randint(50, 95)
        prompt = env.get_template("mix.j2").render(task=TASK, classes=cls(shown), n=4, target=target,
                                                   minor=minor, major_pct=major, minor_pct=100 - major)
        prompt = prompt.replace("Answer with a numbered list, one text per line, and nothing else.",
                                'Answer with a JSON array of strings, like ["first text", "second text"].')
        record(i, "mix", {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                          "temperature": 1.0, "max_tokens": 160, "seed": i})
        i += 1
    for text, _ in GENERATED:
        prompt = env.get_template("relabel.j2").render(task=TASK, classes=cls(names), text=text, json=False)
        record(i, "relabel", {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                              "temperature": 1.0, "max_tokens": 24, "seed": i})
        i += 1

def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(0)
    names = [c[0] for c in CLASSES]
    i = 0
    for _ in range(14):
        shown = sorted(rnd.sample(names, 4), key=names.index)
        target, minor = rnd.sample(shown, 2)
        major = rnd.randint(50, 100)
        prompt = env.get_template("mix.j2").render(task=TASK, classes=cls(shown), n=5, target=target,
                                                   minor=minor if major < 100 else None,
                                                   major_pct=major, minor_pct=100 - major)
        record(i, "mix", {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                          "temperature": 1.0, "max_tokens": 200, "seed": i})
        i += 1
    for _ in range(6):
        target = rnd.choice(names)
        prompt = env.get_template("plain.j2").render(task=TASK, classes=cls([target]), n=5, target=target)
        record(i, "plain", {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                            "temperature": 1.0, "max_tokens": 200, "seed": i})
        i += 1
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": names}},
              "required": ["label"]}
    for j, (text, _) in enumerate(GENERATED):
        use_json = j % 2 == 0
        prompt = env.get_template("relabel.j2").render(task=TASK, classes=cls(names), text=text, json=use_json)
        body = {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.0, "max_tokens": 24, "logprobs": True, "top_logprobs": 5, "seed": i}
        if use_json:
            body["response_format"] = {"type": "json_object", "schema": schema}
        record(i, "relabel", body)
        i += 1
    # Free text relabel at a vote temperature, no logprobs.
    for text, _ in GENERATED[:4]:
        prompt = env.get_template("relabel.j2").render(task=TASK, classes=cls(names), text=text, json=False)
        record(i, "relabel", {"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                              "temperature": 0.7, "max_tokens": 24, "seed": i})
        i += 1

if len(sys.argv) > 2 and sys.argv[2] == "extra":
    extra()
else:
    main()
