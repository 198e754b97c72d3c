"""Driving the real Claude Code interactively, as a person at a terminal would, and reading
what it shows: the prompt, the plan, an answer, a plan-limit warning, an error."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.e2e.infra.tmux import Terminal

PROMPT = r"^❯\s*$"  # the empty input line, once the UI is ready for typing
# What must never show on the way to the prompt: onboarding (theme picker, login method),
# its connectivity check, the API-key approval question, the folder trust dialog.
NOT_BEFORE_PROMPT = ("Choose the text style", "Select login method", "Unable to connect",
                     "Detected a custom API key", "Do you want to use this API key", "trust this folder")
# The plan-limit headers of a subscription at 92% of its 5-hour window (Claude Code warns).
NEAR_LIMIT = {
    "anthropic-ratelimit-unified-status": "allowed_warning",
    "anthropic-ratelimit-unified-5h-utilization": "0.92",
    "anthropic-ratelimit-unified-5h-surpassed-threshold": "0.9",
    "anthropic-ratelimit-unified-5h-status": "allowed_warning",  # 2.1.3xx reads the window's own
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
}
# 2.1.197 says "session limit", 2.1.332 "5-hour limit".
LIMIT_WARNING = r"You've used 92% of your (session|5-hour) limit"
# After `sandbox revoke` the sandbox's dir is gone: Claude Code finds no login before it sends
# anything. (A stale key whose dir remains gets the broker's 401 "invalid sandbox key".)
REVOKED = "Not logged in · Please run /login"


def near_limit_headers() -> dict[str, str]:
    reset = str(int(time.time()) + 3 * 3600)
    return {**NEAR_LIMIT, "anthropic-ratelimit-unified-5h-reset": reset, "anthropic-ratelimit-unified-reset": reset}


def reach_prompt(term: Terminal, plan: str = "Claude Max", timeout: float = 90.0) -> str:
    """Wait for the ready prompt and check nothing stood in the way."""
    screen = term.wait_for(PROMPT, timeout, label="prompt")
    before = term.seen()
    for text in NOT_BEFORE_PROMPT:
        assert text not in before, f"{text!r} on the way to the prompt:\n{screen}"
    assert plan in screen, f"the banner does not show {plan!r}:\n{screen}"
    return screen


def ask(term: Terminal, prompt: str, expect: str, label: str, timeout: float = 60.0) -> str:
    term.type(prompt)
    return term.wait_for(expect, timeout, label=label)


def leave(term: Terminal, timeout: float = 30.0) -> str:
    """`/exit`, then wait until the command line behind it has ended."""
    term.type("/exit")
    return term.wait_for(r"\[command exited with status \d+\]", timeout, label="exited")


def wait_saved(config_dir: Path, text: str, timeout: float = 20.0) -> Path:
    """Wait until Claude Code has written `text` into a session transcript in its config dir."""
    deadline = time.monotonic() + timeout
    while True:
        for path in config_dir.glob("projects/*/*.jsonl"):
            if text.encode() in path.read_bytes():
                return path
        if time.monotonic() > deadline:
            found = {str(p): p.stat().st_size for p in config_dir.glob("projects/*/*.jsonl")}
            raise AssertionError(f"no session transcript holds {text!r} after {timeout:.0f}s: {found}")
        time.sleep(0.1)


def files_containing(root: Path, needles: list[str]) -> list[str]:
    """Files under `root` whose bytes contain any of `needles`."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            data = path.read_bytes()
            if any(n.encode() in data for n in needles if n):
                hits.append(str(path))
    return hits
