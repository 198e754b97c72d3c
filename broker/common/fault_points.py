"""Named steps of a refresh, where a test can make the broker fail or die.

The product calls `reached(step)` at each step and nothing happens. A test arms one hook
(in its own process, or in a broker it starts through `tests/fakes/fault_launcher.py`) that
raises or kills the process there, to check that no step loses a login.
"""

from __future__ import annotations

from typing import Callable

LOCKS_TAKEN = "locks taken"
REQUEST_SENT = "request sent"
ANSWER_RECEIVED = "answer received"
PAIR_SAVED = "pair saved"
STORE_READ = "store read"
STORE_WRITTEN = "store written"
LOCKS_RELEASED = "locks released"
STEPS = (LOCKS_TAKEN, REQUEST_SENT, ANSWER_RECEIVED, PAIR_SAVED, STORE_READ, STORE_WRITTEN, LOCKS_RELEASED)

_hook: Callable[[str], None] | None = None


def arm(hook: Callable[[str], None] | None) -> None:
    """Install (or with None, remove) the test's hook."""
    global _hook
    _hook = hook


def reached(step: str) -> None:
    if _hook is not None:
        _hook(step)
