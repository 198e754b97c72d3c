"""The refresh request the broker sends, as the fake token endpoint receives it.

Field by field it must be Claude Code's (tests/integration/test_host_claude_code.py compares
it with the real CLI's); here: the values come from the provider profile, the scope carries
the login's own scopes once, an `invalid_scope` answer is retried with those alone, and an
answer without a new refresh token keeps the old one.
"""

from __future__ import annotations

import json
import time

import pytest

from broker.login.file_store import FileSource
from broker.login.oauth import OAuthRefresher, scope_string
from broker.config.settings import RefreshSettings
from broker.config.files import builtin_profile_dir, find_profile
from broker.login.token_manager import TokenManager
from tests.fakes.login import write_login

pytestmark = pytest.mark.integration

PROFILE = find_profile("anthropic-oauth", [builtin_profile_dir()])


def test_scope_is_the_defaults_then_the_logins_own_each_once():
    assert scope_string(("a", "b"), ("b", "c", "a", "d")) == "a b c d"
    assert scope_string((), ()) == ""


async def manager(token_url: str, creds) -> TokenManager:
    """A manager holding the login in `creds`, with the refresher the service builds."""
    refresher = OAuthRefresher(token_url, PROFILE.client_id or "", 5.0, PROFILE.oauth_user_agent or "",
                               PROFILE.oauth_scopes)
    m = TokenManager([FileSource(creds)], refresher, RefreshSettings(request_timeout_seconds=5.0))
    await m.reload("test")
    return m


async def test_the_request_carries_the_profiles_values(token_url, token_endpoint, tmp_path):
    creds = tmp_path / "claude" / ".credentials.json"
    write_login(creds, *token_endpoint.issue(), time.time() + 3600)  # scopes: user:inference user:profile
    m = await manager(token_url, creds)
    await m.refresh("manual")
    (seen,) = token_endpoint.seen
    assert seen["body"] == {"grant_type": "refresh_token", "client_id": PROFILE.client_id,
                            "scope": " ".join(PROFILE.oauth_scopes)}  # the stored scopes are among them
    assert seen["user_agent"] == PROFILE.oauth_user_agent and seen["user_agent"].startswith("axios/")
    assert "user:inference" in PROFILE.oauth_scopes


async def test_invalid_scope_is_asked_again_with_the_logins_scopes(token_url, token_endpoint, tmp_path):
    creds = tmp_path / "claude" / ".credentials.json"
    write_login(creds, *token_endpoint.issue(), time.time() + 3600)
    token_endpoint.fail_next(400, {"error": "invalid_scope", "error_description": "scope not granted"})
    m = await manager(token_url, creds)
    await m.refresh("manual")
    assert [s["body"]["scope"] for s in token_endpoint.seen] == [" ".join(PROFILE.oauth_scopes),
                                                                 "user:inference user:profile"]
    assert json.loads(creds.read_text())["claudeAiOauth"]["accessToken"] in token_endpoint.valid_access
    assert m.status().state == "valid"


async def test_an_answer_without_a_refresh_token_keeps_the_old_one(token_url, token_endpoint, tmp_path):
    creds = tmp_path / "claude" / ".credentials.json"
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, time.time() + 3600)
    token_endpoint.keep_refresh_token = True
    m = await manager(token_url, creds)
    await m.refresh("manual")
    stored = json.loads(creds.read_text())["claudeAiOauth"]
    assert stored["refreshToken"] == refresh and stored["accessToken"] != access
    token_endpoint.keep_refresh_token = False
    await m.refresh("manual")  # the kept token still works
    assert json.loads(creds.read_text())["claudeAiOauth"]["refreshToken"] != refresh
    assert token_endpoint.reused == 0
