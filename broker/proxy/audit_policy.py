"""What a sandbox can put into the audit trail: bounded fields, no secrets, a fair share.

Audit lines are built from request fields a sandbox controls (the model string, the path).
Unbounded, seven requests with a 12 MiB model rotated every earlier entry away; a key in the
path landed there verbatim. So every string is scrubbed and cut to `MAX_FIELD` characters,
and each sandbox gets a byte budget per hour: over it, its entries are counted, not written,
and one line says so; other sandboxes' entries stay.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from broker.common.redact import REDACTED, REGISTRY, scrub

MAX_FIELD = 128
PATH_FIELDS = frozenset({"path", "url"})
# Anything shaped like a credential, whatever its prefix: a long run of token characters.
_KEYLIKE_RE = re.compile(r"[A-Za-z0-9_\-]{32,}")


def bound_text(value: str, limit: int = MAX_FIELD, keylike: bool = False) -> str:
    """Scrubbed and cut to `limit` characters; `keylike` also redacts long token-shaped runs."""
    head = value[: limit + 256]  # room to recognise a secret that straddles the cut
    clean = scrub(head)
    if keylike:
        clean = _KEYLIKE_RE.sub(REDACTED, clean)
    total = len(clean) + len(value) - len(head)
    return clean if total <= limit else f"{clean[:limit]}…(+{total - limit} chars)"


def bound_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A copy with every string field scrubbed and bounded (numbers pass as they are).

    A path may carry a key in any shape (a sandbox pasting it where it does not belong), so
    in paths any long token-shaped run is redacted, not only the known prefixes. Every
    request has such fields and most repeat (sandbox, method, path, model, client), so short
    ones are remembered per set of known secrets: a new secret starts a fresh memory.
    """
    secrets = REGISTRY.snapshot()
    return {k: (_bound_short(v, k in PATH_FIELDS, secrets) if len(v) <= MAX_FIELD else
                bound_text(v, keylike=k in PATH_FIELDS)) if isinstance(v, str) else v
            for k, v in entry.items()}


@functools.lru_cache(maxsize=1024)
def _bound_short(value: str, keylike: bool, secrets: frozenset[str]) -> str:
    return bound_text(value, keylike=keylike)


@dataclass
class _Share:
    window_start: float
    used: int = 0
    suppressed: int = 0


@dataclass
class AuditBudget:
    """Per-sandbox bytes per `window` seconds; decides, the caller writes."""

    bytes_per_window: int
    window: float = 3600.0
    _shares: dict[str, _Share] = field(default_factory=dict)

    def admit(self, sandbox: str, size: int, now: float) -> list[dict[str, Any]]:
        """The lines to write for an entry of `size` bytes: [] (over budget, counted), or
        the entry's turn, possibly preceded by a summary of what was held back before."""
        share = self._shares.get(sandbox)
        out: list[dict[str, Any]] = []
        if share is None or now - share.window_start >= self.window:
            if share is not None and share.suppressed:
                out.append({"sandbox": sandbox, "note": "audit budget was spent; entries not written",
                            "suppressed": share.suppressed, "time": round(now, 3)})
            share = self._shares[sandbox] = _Share(now)
        if share.used + size > self.bytes_per_window:
            share.suppressed += 1
            if share.suppressed == 1:  # say it once per window, at once
                return [{"sandbox": sandbox, "note": "audit budget spent for this hour; counting entries "
                         "instead of writing them", "time": round(now, 3)}]
            return []
        share.used += size
        return out + [{}]  # {}: the caller's entry goes here
