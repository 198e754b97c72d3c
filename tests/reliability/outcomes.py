"""Outcomes as observed: each test counts what happened before it asserts what should have.

A bad input is refused, accepted (served or forwarded), crashed (a 5xx, or closed without a
reply where one was due) or answered otherwise; an injected fault is survived or not. The
counts go into the figures table, so a regression shows as a number, not only as a failure.
"""

from __future__ import annotations

from typing import Any

BAD_INPUT_OUTCOMES = ("refused", "accepted", "crashed", "answered otherwise")
FAULT_OUTCOMES = ("survived", "not survived")


def observe(figures: dict[str, Any], outcome: str, n: int = 1) -> str:
    """Count `n` bad inputs (outcome in BAD_INPUT_OUTCOMES) or injected faults (FAULT_OUTCOMES)
    as observed; returns the outcome, for the assert that follows."""
    if outcome in BAD_INPUT_OUTCOMES:
        figures["bad inputs tried"] += n
        figures[f"bad inputs {outcome}"] += n
    elif outcome in FAULT_OUTCOMES:
        figures["faults injected"] += n
        figures[f"faults {outcome}"] += n
    else:
        raise ValueError(f"unknown outcome {outcome!r}")
    return outcome


def answer_outcome(status: int, refused: set[int] | frozenset[int], *, forwarded: bool = False) -> str:
    """What an answer to a bad input was: a refusal it should get, passage (served, forwarded),
    a crash (5xx, or closed without a reply where one was due), or another answer."""
    if forwarded:
        return "accepted"
    if status in refused:
        return "refused"
    if status == 0 or status >= 500:
        return "crashed"
    if 200 <= status < 400:
        return "accepted"
    return "answered otherwise"
