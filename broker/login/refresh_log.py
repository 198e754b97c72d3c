"""`refresh-events.jsonl` read back: the newest refresh events (time, trigger, outcome,
fingerprints only) for the dashboard. The service writes the file (an `AuditLog`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TAIL_BYTES = 64 * 1024  # enough for the last few dozen events


def tail(path: Path, count: int = 10) -> list[dict[str, Any]]:
    """The newest `count` events, newest first; unreadable lines are skipped."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = fh.read().splitlines()[-count:]
    except FileNotFoundError:
        return []
    out = []
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out
