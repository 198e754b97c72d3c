"""`sandbox check`: the script a throwaway container runs, and what its output says.

The container is started with the sandbox's own flags, as the image's user, and walks the way
Claude Code would: read its config dir, resolve `inference.local`, connect, send one free
request (count_tokens) with the sandbox key. The first step that fails is named with its fix.
The script prints `IB ...` marker lines; everything else it prints is the client's own words,
which `diagnose` reads (busybox wget, GNU wget and curl phrase errors differently).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

COUNT_BODY = json.dumps({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]})

SCRIPT = r"""
d="$CLAUDE_CONFIG_DIR"
echo "IB uid $(id -u 2>/dev/null)"
if ! cat "$d/.credentials.json" >/dev/null 2>&1; then echo "IB dir-unreadable"; exit 0; fi
KEY=$(sed -n 's/.*"accessToken": *"\([^"]*\)".*/\1/p' "$d/.credentials.json")
h=${ANTHROPIC_BASE_URL#*://}; h=${h%%/*}; host=${h%:*}
addr=""
if command -v getent >/dev/null 2>&1; then addr=$(getent hosts "$host" | awk '{print $1; exit}'); fi
if [ -z "$addr" ]; then
  addr=$(awk -v h="$host" '$1 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == h) { print $1; exit } }' /etc/hosts 2>/dev/null)
fi
case "$host" in *[!0-9.]*) ;; *) addr="$host" ;; esac
if [ -z "$addr" ]; then echo "IB resolve-failed $host"; exit 0; fi
echo "IB addr $addr"
url="$ANTHROPIC_BASE_URL/v1/messages/count_tokens"
t=""; command -v timeout >/dev/null 2>&1 && t="timeout 15"
if command -v curl >/dev/null 2>&1; then
  echo "IB tool curl"
  $t curl -sS -o /dev/null -w 'IB status %{http_code}\n' -X POST -H "x-api-key: $KEY" \
    -H "anthropic-version: 2023-06-01" -H "content-type: application/json" --data "$IB_BODY" "$url" 2>&1
  echo "IB rc $?"
elif command -v wget >/dev/null 2>&1; then
  echo "IB tool wget"
  $t wget -S -O /dev/null --header "x-api-key: $KEY" --header "anthropic-version: 2023-06-01" \
    --post-data "$IB_BODY" "$url" 2>&1
  echo "IB rc $?"
else
  echo "IB tool none"
fi
"""

DIR, RESOLVE, ROUTE, LISTENING, KEY, CLIENT = ("config dir", "name resolution", "route", "listening", "key",
                                               "client")


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _markers(output: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("IB "):
            key, _, value = line[3:].partition(" ")
            out.setdefault(key, value.strip())
    return out


def _http_status(output: str, marks: dict[str, str]) -> int | None:
    if marks.get("status", "").isdigit() and marks["status"] != "000":
        return int(marks["status"])
    found = re.findall(r"HTTP/\d(?:\.\d)? (\d{3})", output)
    if found:
        return int(found[-1])
    m = re.search(r"ERROR (\d{3})", output)
    return int(m.group(1)) if m else None


def diagnose(output: str, *, name: str, host_address: str, port: int, symbol: str | None) -> list[Step]:
    """The steps the container got through, the last one failed unless all are ok.

    `host_address` is where `inference.local` should point; `symbol` the listen entry that
    serves it (`docker`, `podman`, or None for host loopback)."""
    marks = _markers(output)
    uid = marks.get("uid", "?")
    steps: list[Step] = []
    if "dir-unreadable" in marks:
        return [Step(DIR, False, f"the container's user (uid {uid}) cannot read the sandbox's config dir",
                     f"`inference-broker exec {name} -- ...` hands it to the image's user, or "
                     f"`inference-broker docker-args {name} --rotate --uid {uid}` (rootful engines)")]
    steps.append(Step(DIR, True, f"readable by uid {uid}"))
    if "resolve-failed" in marks:
        return steps + [Step(RESOLVE, False, f"{marks['resolve-failed']} does not resolve in the container",
                             "keep the --add-host (extra_hosts) line of `docker-args`, and an ANTHROPIC_BASE_URL "
                             "of http://inference.local:PORT (an image or compose file may set its own)")]
    addr = marks.get("addr", "?")
    steps.append(Step(RESOLVE, True, f"inference.local is {addr}"))
    if marks.get("tool") == "none":
        return steps + [Step(CLIENT, False, "the image has neither curl nor wget to call the broker with",
                             "check with another image of yours: --image IMAGE")]
    status = _http_status(output, marks)
    text = output.lower()
    if status is None:
        if "refused" in text:
            fix = (f"add `{symbol}:{port}` to `listen` in the config (or remove `listen` to serve every bridge), "
                   "then restart the broker" if symbol else
                   f"the broker must listen on 127.0.0.1:{port}: check `listen` in the config")
            return steps + [Step(ROUTE, True, f"{addr} answers"),
                            Step(LISTENING, False, f"nothing listens on {addr}:{port}", fix)]
        why = next((w for w in ("network is unreachable", "no route to host", "host is unreachable", "timed out")
                    if w in text), "no connection")
        fix = ("the container's network has no way to the host: drop --network options that cut it off, "
               "or use the network mode `docker-args` prints")
        if addr != host_address:
            fix = f"inference.local should be {host_address} for this engine: use the flags `docker-args` prints"
        return steps + [Step(ROUTE, False, f"{why} to {addr}:{port}", fix)]
    steps += [Step(ROUTE, True, f"{addr} answers"), Step(LISTENING, True, f"the broker answers on {addr}:{port}")]
    if status == 401:
        return steps + [Step(KEY, False, "the broker refused the sandbox's key (revoked, or rotated elsewhere)",
                             f"`inference-broker docker-args {name} --rotate` writes a new one into its dir")]
    return steps + [Step(KEY, True, f"accepted (HTTP {status})")]
