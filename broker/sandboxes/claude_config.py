"""What a sandbox's own Claude Code config dir holds, as data (written by sandboxes.claude_dir).

Claude Code in a sandbox should start offline and behave like the host's for a subscriber: no
onboarding (its connectivity check calls api.anthropic.com directly and exits without a route),
the plan and its default model shown, plan-limit warnings read from the headers the broker
passes through. A stand-in login does that: `.credentials.json` whose access token is the
*sandbox key* (Claude Code sends it as `Authorization: Bearer`, the broker swaps it for the real
token) with the host's plan and a far-future expiry, so Claude Code never refreshes ahead of
time. Its refresh token is a marker no token endpoint accepts. (An empty one would skip even the
refresh attempt Claude Code makes on a 401, but 2.1.3xx reads "" as a dead login and shows
"Login: Expired - log in again" in /status.) A revoked key gives "Please run /login · API Error:
401 …" at the prompt, with one failed refresh attempt behind it, never a loop; a rotated key
written here is picked up by a running Claude Code on its next request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from broker.common.errors import BrokerError

CREDENTIALS_FILE = ".credentials.json"
CONFIG_FILE = ".claude.json"
# 2100-01-01: Claude Code refreshes when <= 5 min remain; a stand-in must never get there.
STAND_IN_EXPIRES_MS = 4_102_444_800_000
# Useless anywhere: not a token, and shaped like none (real ones start `sk-ant-ort01-`).
STAND_IN_REFRESH = "inference-broker-stand-in-not-a-refresh-token"
# What a subscriber login carries; `user:inference` is what makes Claude Code use it for the API.
SCOPES = ("user:inference", "user:profile", "user:sessions:claude_code")


@dataclass(frozen=True)
class Plan:
    """The host login's plan, copied so the sandbox shows it (no secrets here)."""

    subscription_type: str | None = None  # "max", "pro", ...
    rate_limit_tier: str | None = None


def credentials_doc(key: str, plan: Plan) -> dict[str, Any]:
    """The stand-in login: the sandbox key where the OAuth access token would be."""
    oauth: dict[str, Any] = {
        "accessToken": key,
        "refreshToken": STAND_IN_REFRESH,
        "expiresAt": STAND_IN_EXPIRES_MS,
        "scopes": list(SCOPES),
    }
    if plan.subscription_type:
        oauth["subscriptionType"] = plan.subscription_type
    if plan.rate_limit_tier:
        oauth["rateLimitTier"] = plan.rate_limit_tier
    return {"claudeAiOauth": oauth}


def config_doc(existing: dict[str, Any] | None, trusted: Iterable[str] = ()) -> dict[str, Any]:
    """`.claude.json`: onboarding done, auto-updates off, `trusted` folders accepted, and
    Claude Code's own state kept.

    Rotating a key rewrites this file, so whatever Claude Code stored (projects, history
    settings, tips) survives; only the facts the broker owns are set.
    """
    doc = dict(existing or {})
    doc["hasCompletedOnboarding"] = True
    # A sandbox has no route to the update servers (its image is where updates belong); an
    # updater that tries anyway only fills the status line with "Auto-update failed".
    doc["autoUpdates"] = False
    projects = dict(doc.get("projects") or {}) if isinstance(doc.get("projects"), dict) else {}
    for folder in trusted:
        entry = dict(projects.get(folder) or {}) if isinstance(projects.get(folder), dict) else {}
        entry["hasTrustDialogAccepted"] = True
        projects[folder] = entry
    if projects:
        doc["projects"] = projects
    return doc


def stand_in_key(text: str) -> str | None:
    """The sandbox key in a stand-in login's text (`.credentials.json`), or None."""
    doc = parse_config(text)
    oauth = doc.get("claudeAiOauth") if doc else None
    key = oauth.get("accessToken") if isinstance(oauth, dict) else None
    return key if isinstance(key, str) and key else None


# Claude Code's own `.claude.json` is a few levels deep; a sandbox can write anything there.
MAX_DEPTH = 32


def stand_in_plan(text: str) -> Plan | None:
    """The plan a stand-in login (`.credentials.json`'s text) shows, or None when it is not one."""
    oauth = _stand_in(text)
    if oauth is None:
        return None
    sub, tier = oauth.get("subscriptionType"), oauth.get("rateLimitTier")
    return Plan(sub if isinstance(sub, str) else None, tier if isinstance(tier, str) else None)


def with_plan(text: str, plan: Plan) -> dict[str, Any] | None:
    """The stand-in login in `text` showing `plan`, its key and all else kept; None when `text`
    is no stand-in, `plan` is unknown, or it already shows that plan (nothing to write).

    A sandbox made before the host's `claude /login` got no plan ("Claude API"); the broker
    calls this when it adopts a login, so the sandbox follows without a new key."""
    if not plan.subscription_type or stand_in_plan(text) in (None, plan):
        return None
    doc = parse_config(text) or {}
    oauth = dict(doc["claudeAiOauth"])
    for field, value in (("subscriptionType", plan.subscription_type), ("rateLimitTier", plan.rate_limit_tier)):
        if value:
            oauth[field] = value
        else:
            oauth.pop(field, None)
    return {**doc, "claudeAiOauth": oauth}


def _stand_in(text: str) -> dict[str, Any] | None:
    doc = parse_config(text)
    oauth = doc.get("claudeAiOauth") if doc else None
    if not isinstance(oauth, dict) or oauth.get("refreshToken") != STAND_IN_REFRESH:
        return None
    return oauth if isinstance(oauth.get("accessToken"), str) and oauth["accessToken"] else None


def parse_config(text: str) -> dict[str, Any] | None:
    """An existing `.claude.json` (or stand-in login), or None when it is missing, not a JSON
    object, or nested deeper than `MAX_DEPTH` (the sandbox wrote it: a document the parser
    or the indented writer would recurse through must cost nothing but a fresh file)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and _depth_within(doc, MAX_DEPTH) else None


def _depth_within(doc: Any, limit: int) -> bool:
    """Whether `doc` nests at most `limit` containers deep (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def check_workdir(path: str) -> str:
    """A work folder to trust must be an absolute path inside the sandbox, without `..`."""
    if not path.startswith("/") or any(p in ("..", ".") for p in path.split("/")):
        raise BrokerError(f"--workdir must be an absolute path like /workspace (got {path!r})",
                          title="Sandbox config")
    return path.rstrip("/") or "/"
