"""Claude Code's login file, written as Claude Code writes it, for the broker to find.

`~/.claude/.credentials.json` (or `$CLAUDE_CONFIG_DIR/.credentials.json`): JSON with the OAuth
pair under `claudeAiOauth` and other top-level keys the broker must keep; mode 0600 in a
0700 directory; replaced by rename, so a reader never sees half a file (`atomic=False`
writes in place, for tests of a reader that does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Keys Claude Code (or a later version of it) keeps beside the login: a rewrite must keep them.
UNKNOWN_FIELDS = {
    "organizationUuid": "org-uuid-1",
    "mcpOAuth": {"server": {"accessToken": "mcp-token", "expiresAt": 1}},
    "futureField": [1, 2, 3],
}


def claude_login_doc(access: str, refresh: str | None, expires_at_ms: int, **extra: Any) -> dict[str, Any]:
    oauth: dict[str, Any] = {
        "accessToken": access,
        "expiresAt": expires_at_ms,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
        "rateLimitTier": "default_claude_max_20x",
        "somethingNew": True,
    }
    if refresh is not None:
        oauth["refreshToken"] = refresh
    return {"claudeAiOauth": oauth, **UNKNOWN_FIELDS, **extra}


def write_login(path: Path, access: str, refresh: str | None, expires_at: float, *, atomic: bool = True) -> None:
    """Write a login that expires at `expires_at` (epoch seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps(claude_login_doc(access, refresh, int(expires_at * 1000)), indent=2).encode()
    target = path.with_name(path.name + ".tmp-host") if atomic else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(target, 0o600)  # O_CREAT's mode does not apply to a file that was already there
    if atomic:
        os.replace(target, path)
