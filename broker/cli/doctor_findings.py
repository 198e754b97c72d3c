"""What each `doctor` check returns: a level, what it found, and the command that fixes it."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, PROBLEM = "ok", "warning", "problem"


@dataclass(frozen=True)
class Finding:
    level: str
    what: str
    fix: str = ""
