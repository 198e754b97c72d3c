"""Fixtures every layer shares: Claude login files, the fake token endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.token_endpoint import FakeTokenEndpoint

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
    """Write a login the way Claude Code does: JSON, 0600, replaced by rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(claude_login_doc(access, refresh, int(expires_at * 1000)), indent=2)
    if atomic:
        tmp = path.with_name(path.name + ".tmp-host")
        tmp.write_text(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    else:
        path.write_text(data)
        os.chmod(path, 0o600)


# A test's layer is its directory: `-m "not integration"` must leave out every file there.
MARKER_BY_DIRECTORY = {"integration": "integration", "e2e": "e2e"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(TESTS).parts[0]
        except ValueError:  # collected from outside tests/
            continue
        marker = MARKER_BY_DIRECTORY.get(top)
        if marker:
            item.add_marker(marker)


@pytest.fixture
def token_endpoint() -> FakeTokenEndpoint:
    return FakeTokenEndpoint()


@pytest.fixture
async def token_url(token_endpoint: FakeTokenEndpoint, aiohttp_server) -> str:
    server = await aiohttp_server(token_endpoint.make_app())
    yield str(server.make_url("/v1/oauth/token"))
    assert token_endpoint.problems == [], token_endpoint.problems
