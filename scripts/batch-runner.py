#!/usr/bin/env python3
"""Run an OpenAI batch input file against any OpenAI-compatible server and
write the batch output file, as `vllm run-batch` or the Batch API would.

    scripts/batch-runner.py -i batches/b1/input.jsonl -o results.jsonl \
        [--base-url http://127.0.0.1:8765/v1] [--api-key KEY]

Each input line is `{"custom_id", "method": "POST", "url", "body"}`; its
body is POSTed to BASE_URL + the line's url (without its leading `/v1`).
Each output line is `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`, or `"response": null` and an
`error` object when the request could not be made. Lines are answered one
after another; the output file is written line by line (a crash leaves a
prefix, and `straddle batch ingest` skips what it already has).
Standard library only.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-i", "--input", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()
    base = a.base_url.rstrip("/")
    done = failed = 0
    with open(a.input, encoding="utf-8") as inp, open(a.output, "w", encoding="utf-8") as out:
        for n, raw in enumerate(inp):
            if not raw.strip():
                continue
            line = json.loads(raw)
            url = line.get("url", "/v1/chat/completions")
            if url.startswith("/v1/"):
                url = url[3:]
            req = urllib.request.Request(
                base + url,
                data=json.dumps(line["body"]).encode(),
                headers={"Content-Type": "application/json"},
                method=line.get("method", "POST"),
            )
            if a.api_key:
                req.add_header("Authorization", "Bearer " + a.api_key)
            rec = {"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": None, "error": None}
            try:
                with urllib.request.urlopen(req, timeout=a.timeout) as resp:
                    body = json.loads(resp.read())
                    rec["response"] = {"status_code": resp.status, "request_id": f"req_{n}", "body": body}
                    done += 1
            except urllib.error.HTTPError as e:
                text = e.read().decode("utf-8", "replace")
                try:
                    body = json.loads(text)
                except ValueError:
                    body = {"error": {"message": text}}
                rec["response"] = {"status_code": e.code, "request_id": f"req_{n}", "body": body}
                failed += 1
            except (urllib.error.URLError, OSError) as e:
                rec["error"] = {"code": "request_failed", "message": str(e)}
                failed += 1
            out.write(json.dumps(rec) + "\n")
            out.flush()
    print(f"{done} answered, {failed} failed -> {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
