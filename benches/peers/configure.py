"""Set a peers-bench project's straddle.toml: concurrency fixed at C (the
Python clients keep C in flight too; `adaptive = true` would start at 1 and
grow), no denoiser (it would embed every text).

    python configure.py PATH/straddle.toml C
"""
import re
import sys


def put(text, section, key, value):
    m = re.search(r"(?m)^\[" + re.escape(section) + r"\]\n", text)
    if m is None:
        return text + f"\n[{section}]\n{key} = {value}\n"
    nxt = re.search(r"(?m)^\[", text[m.end():])
    end = m.end() + (nxt.start() if nxt else len(text) - m.end())
    body = text[m.end():end]
    if re.search(rf"(?m)^{key}\s*=", body):
        body = re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", body)
    else:
        body = f"{key} = {value}\n" + body
    return text[:m.end()] + body + text[end:]


path, c = sys.argv[1], sys.argv[2]
t = open(path).read()
t = put(t, "backend", "adaptive", "false")
t = put(t, "backend", "max_concurrency", c)
t = put(t, "denoise", "mode", '"off"')
open(path, "w").write(t)
