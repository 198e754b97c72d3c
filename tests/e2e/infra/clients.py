"""What sandboxes run against the broker: command lines for clients nobody here wrote
(busybox wget, curl, the anthropic SDK, Claude Code), and reading their streamed answers."""

from __future__ import annotations

import json
import sys

MODEL = "claude-sonnet-4-6"
BODY = json.dumps({
    "model": MODEL, "max_tokens": 64, "stream": True,
    "messages": [{"role": "user", "content": "say hi"}],
})
# Claude Code: fail fast instead of retrying a refused request for a minute, and stay quiet.
CLAUDE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "0", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}

# busybox wget, inside a container wired by `docker-args` (ANTHROPIC_BASE_URL, the sandbox's
# Claude Code dir at $CLAUDE_CONFIG_DIR) with BODY set: the key comes from the stand-in login
# (or from $KEY).
# `timeout` bounds it (`wget -T` crashes in busybox 1.35); -S puts the status line on stderr.
# No content-type header: --post-data always adds its own, and a second one is a 400.
WGET_STREAM = (
    'KEY=${KEY:-$(sed -n \'s/.*"accessToken": "\\([^"]*\\)".*/\\1/p\' "$CLAUDE_CONFIG_DIR/.credentials.json")}; '
    'timeout 20 wget -S -qO- --header "x-api-key: $KEY" '
    '--header "anthropic-version: 2023-06-01" '
    '--post-data "$BODY" "$ANTHROPIC_BASE_URL/v1/messages"'
)


def curl_stream(base_url: str, key: str) -> list[str]:
    """curl streaming a message (-N: no buffering); -w appends the status on its own line."""
    return [
        "curl", "-sS", "-N", "--max-time", "20", "-w", "\\n%{http_code}\\n",
        "-H", f"x-api-key: {key}", "-H", "anthropic-version: 2023-06-01",
        "-H", "content-type: application/json", "--data", BODY, f"{base_url}/v1/messages",
    ]


SDK_SCRIPT = f"""
import anthropic
client = anthropic.Anthropic(max_retries=0)  # ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY from env
with client.messages.stream(model={MODEL!r}, max_tokens=64,
                            messages=[{{"role": "user", "content": "say hi"}}]) as stream:
    print("".join(stream.text_stream))
"""


def sdk_stream() -> list[str]:
    """The anthropic SDK (this interpreter's) streaming a message, reading its env for wiring."""
    return [sys.executable, "-c", SDK_SCRIPT]


def claude_print(prompt: str = "say hi") -> list[str]:
    return ["claude", "-p", prompt]


def sse_text(raw: str) -> str:
    """The text an SSE message stream carries (its text_delta events, joined)."""
    parts = []
    for line in raw.splitlines():
        if line.startswith("data:"):
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            delta = event.get("delta", {}) if isinstance(event, dict) else {}
            if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                parts.append(delta["text"])
    return "".join(parts)


def sse_events(raw: str) -> list[str]:
    return [line[6:].strip() for line in raw.splitlines() if line.startswith("event:")]
