"""The plan's rolling windows (5-hour, weekly, ...) as the API reports them.

Two sources say the same thing in different shapes: every API response carries
`anthropic-ratelimit-unified-*` headers (utilization as a fraction, resets as epoch seconds),
and the OAuth usage endpoint answers JSON (utilization in percent, resets in ISO 8601). Both
are parsed here into one `PlanLimits`, kept with the time it was seen. Nothing here raises
on odd input: a malformed value is dropped, the rest is kept, because a header the API adds
tomorrow must never break a sandbox's request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from broker.common.clock import iso

PREFIX = "anthropic-ratelimit-unified-"
# Header window prefixes and the usage endpoint's names for the same windows.
WINDOW_NAMES = {"5h": "five_hour", "7d": "seven_day", "7d_oi": "seven_day_oauth_apps",
                "7d_opus": "seven_day_opus", "7d_sonnet": "seven_day_sonnet"}
LABELS = {"five_hour": "5-hour", "seven_day": "Weekly", "seven_day_opus": "Weekly (Opus)",
          "seven_day_sonnet": "Weekly (Sonnet)", "seven_day_oauth_apps": "Weekly (apps)"}
WINDOW_FIELDS = ("utilization", "reset", "status", "surpassed-threshold")


@dataclass(frozen=True)
class Window:
    name: str  # "five_hour", "seven_day", ...
    percent: float | None = None  # 0-100
    resets_at: float | None = None  # epoch seconds
    status: str | None = None  # "allowed", "allowed_warning", "rejected"
    surpassed_threshold: float | None = None  # percent

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name.replace("_", " "))

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "utilization": self.percent, "resets_at": iso(self.resets_at),
                "status": self.status, "surpassed_threshold": self.surpassed_threshold}


@dataclass(frozen=True)
class PlanLimits:
    seen_at: float  # epoch seconds when these values arrived
    source: str  # "headers" | "usage endpoint"
    windows: tuple[Window, ...] = ()
    status: str | None = None
    resets_at: float | None = None
    representative_claim: str | None = None
    overage_status: str | None = None
    overage_resets_at: float | None = None
    fallback_percentage: float | None = None
    extra: tuple[tuple[str, str], ...] = ()  # anything else, as sent (unknown headers, extra usage)

    def window(self, name: str) -> Window | None:
        return next((w for w in self.windows if w.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """`limits.*` of `status --json`: one key per window plus what applies to all."""
        out: dict[str, Any] = {w.name: w.to_json() for w in self.windows}
        out.update({
            "status": self.status, "resets_at": iso(self.resets_at), "seen_at": iso(self.seen_at),
            "source": self.source, "representative_claim": self.representative_claim,
            "overage_status": self.overage_status, "overage_resets_at": iso(self.overage_resets_at),
            "fallback_percentage": self.fallback_percentage, "extra": dict(self.extra),
        })
        return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a number, a numeric string, or ISO 8601 (with Z or an offset)."""
    n = _number(value)
    if n is not None:
        if n <= 0:
            return None
        return n / 1000 if n > 1e11 else n  # milliseconds, seen in some payloads
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo else None


def _percent(value: Any, *, fraction: bool) -> float | None:
    n = _number(value)
    if n is None or n < 0:
        return None
    return round(n * 100, 2) if fraction else round(n, 2)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _split_window(rest: str) -> tuple[str, str] | None:
    for fld in WINDOW_FIELDS:
        if rest.endswith("-" + fld) and len(rest) > len(fld) + 1:
            return rest[: -len(fld) - 1], fld
    return None


def from_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]], now: float) -> PlanLimits | None:
    """Every `anthropic-ratelimit-unified-*` header, or None when there is none."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    raw = {k.lower()[len(PREFIX):]: v for k, v in items if k.lower().startswith(PREFIX) and len(k) > len(PREFIX)}
    if not raw:
        return None
    windows: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    extra: list[tuple[str, str]] = []
    for key, value in sorted(raw.items()):
        split = _split_window(key)
        if split and split[0] not in ("overage", "fallback"):
            prefix, fld = split
            w = windows.setdefault(WINDOW_NAMES.get(prefix, prefix), {})
            if fld == "utilization":
                w["percent"] = _percent(value, fraction=True)
            elif fld == "reset":
                w["resets_at"] = _epoch(value)
            elif fld == "status":
                w["status"] = _text(value)
            else:
                w["surpassed_threshold"] = _percent(value, fraction=True)
        elif key in ("status", "representative-claim", "overage-status"):
            top[key.replace("-", "_")] = _text(value)
        elif key in ("reset", "overage-reset"):
            top["resets_at" if key == "reset" else "overage_resets_at"] = _epoch(value)
        elif key == "fallback-percentage":
            top["fallback_percentage"] = _percent(value, fraction=True)
        else:
            extra.append((key, value[:200]))
    return PlanLimits(seen_at=now, source="headers", extra=tuple(extra),
                      windows=tuple(Window(name, **w) for name, w in windows.items()), **top)


def from_usage(doc: Any, now: float) -> PlanLimits | None:
    """The OAuth usage endpoint's JSON ({"five_hour": {"utilization": 62.0, "resets_at": ...}})."""
    if not isinstance(doc, dict):
        return None
    windows = []
    extra: list[tuple[str, str]] = []
    for name, value in sorted(doc.items()):
        if not isinstance(name, str) or not isinstance(value, dict):
            continue
        if "utilization" in value and name != "extra_usage":
            windows.append(Window(name, percent=_percent(value.get("utilization"), fraction=False),
                                  resets_at=_epoch(value.get("resets_at"))))
        elif name == "extra_usage":
            for k, v in sorted(value.items()):
                if isinstance(v, (str, int, float, bool)) or v is None:
                    extra.append((f"extra_usage.{k}", str(v)[:200]))
    if not windows and not extra:
        return None
    return PlanLimits(seen_at=now, source="usage endpoint", windows=tuple(windows), extra=tuple(extra))


def combine(old: PlanLimits | None, new: PlanLimits | None) -> PlanLimits | None:
    """The newer report wins; windows only the older one knows (per-model weekly) are kept."""
    if old is None or new is None:
        return new or old
    if new.seen_at < old.seen_at:
        old, new = new, old
    names = {w.name for w in new.windows}
    kept = tuple(w for w in old.windows if w.name not in names)
    extra = dict(old.extra)
    extra.update(new.extra)
    merged = replace(new, windows=new.windows + kept, extra=tuple(sorted(extra.items())))
    if new.source != "headers":  # the endpoint says nothing about the overall status: keep it
        merged = replace(merged, status=old.status, resets_at=old.resets_at,
                         representative_claim=old.representative_claim, overage_status=old.overage_status,
                         overage_resets_at=old.overage_resets_at, fallback_percentage=old.fallback_percentage)
    return merged

