"""The per-sandbox Claude Code config as data: a stand-in login that can never be refreshed,
onboarding done, the chosen work folder trusted, and Claude Code's own state kept on rewrite."""

from __future__ import annotations

import json

import pytest

from broker.sandboxes import claude_config as cc
from broker.common.errors import BrokerError

KEY = "sk-ib-" + "k" * 43


def test_stand_in_login_carries_the_key_and_plan_and_a_useless_refresh_token() -> None:
    doc = cc.credentials_doc(KEY, cc.Plan("max", "default_claude_max_20x"))
    oauth = doc["claudeAiOauth"]
    assert oauth["accessToken"] == KEY
    assert oauth["refreshToken"] == cc.STAND_IN_REFRESH  # "" would read as a dead login in 2.1.3xx
    assert not oauth["refreshToken"].startswith("sk-ant-") and KEY not in oauth["refreshToken"]
    assert oauth["expiresAt"] == cc.STAND_IN_EXPIRES_MS > 4_000_000_000_000
    assert "user:inference" in oauth["scopes"]
    assert (oauth["subscriptionType"], oauth["rateLimitTier"]) == ("max", "default_claude_max_20x")
    assert list(doc) == ["claudeAiOauth"]  # nothing else of the host's login


def test_unknown_plan_is_left_out() -> None:
    oauth = cc.credentials_doc(KEY, cc.Plan())["claudeAiOauth"]
    assert "subscriptionType" not in oauth and "rateLimitTier" not in oauth


def test_config_skips_onboarding_and_trusts_the_work_folder() -> None:
    doc = cc.config_doc(None, ["/workspace"])
    assert doc == {"hasCompletedOnboarding": True, "autoUpdates": False,
                   "projects": {"/workspace": {"hasTrustDialogAccepted": True}}}
    assert cc.config_doc(None) == {"hasCompletedOnboarding": True, "autoUpdates": False}


def test_rewrite_keeps_claude_codes_own_state() -> None:
    existing = {"numStartups": 3, "userID": "u", "projects": {"/w": {"allowedTools": ["Bash"], "lastCost": 1}},
                "hasCompletedOnboarding": False}
    doc = cc.config_doc(existing, ["/w", "/other"])
    assert doc["numStartups"] == 3 and doc["userID"] == "u" and doc["hasCompletedOnboarding"] is True
    assert doc["projects"]["/w"] == {"allowedTools": ["Bash"], "lastCost": 1, "hasTrustDialogAccepted": True}
    assert doc["projects"]["/other"] == {"hasTrustDialogAccepted": True}
    assert existing["hasCompletedOnboarding"] is False  # the input is not changed


@pytest.mark.parametrize("text, parsed", [('{"a": 1}', {"a": 1}), ("[1]", None), ("{", None)])
def test_parse_config(text: str, parsed: object) -> None:
    assert cc.parse_config(text) == parsed


def test_dumps_is_json() -> None:
    assert json.loads(cc.dumps({"a": 1})) == {"a": 1}


@pytest.mark.parametrize("path, ok", [("/workspace", "/workspace"), ("/w/", "/w"), ("/", "/")])
def test_workdir_accepted(path: str, ok: str) -> None:
    assert cc.check_workdir(path) == ok


@pytest.mark.parametrize("path", ["workspace", "/a/../b", "./x", ""])
def test_workdir_refused(path: str) -> None:
    with pytest.raises(BrokerError, match="absolute"):
        cc.check_workdir(path)


def test_a_stand_in_shows_its_plan_and_other_logins_show_none() -> None:
    text = cc.dumps(cc.credentials_doc(KEY, cc.Plan("pro", "tier"))).decode()
    assert cc.stand_in_plan(text) == cc.Plan("pro", "tier")
    assert cc.stand_in_plan(cc.dumps(cc.credentials_doc(KEY, cc.Plan())).decode()) == cc.Plan()
    real = {"claudeAiOauth": {"accessToken": "sk-ant-oat01-x", "refreshToken": "sk-ant-ort01-y"}}
    assert cc.stand_in_plan(json.dumps(real)) is None  # a real login is never a sandbox's to rewrite
    assert cc.stand_in_plan("{") is None and cc.stand_in_plan("[]") is None


def test_with_plan_keeps_the_key_and_all_else_and_writes_only_a_change() -> None:
    doc = cc.credentials_doc(KEY, cc.Plan())
    doc["claudeAiOauth"]["somethingClaudeCodeAdded"] = 1
    doc["other"] = True
    text = cc.dumps(doc).decode()
    new = cc.with_plan(text, cc.Plan("max", "default_claude_max_20x"))
    assert new is not None
    assert new["claudeAiOauth"] == {**doc["claudeAiOauth"], "subscriptionType": "max",
                                    "rateLimitTier": "default_claude_max_20x"}
    assert new["other"] is True and json.loads(text) == doc  # the input is not changed
    shown = cc.dumps(new).decode()
    assert cc.with_plan(shown, cc.Plan("max", "default_claude_max_20x")) is None  # already shows it
    assert cc.with_plan(shown, cc.Plan()) is None  # an unknown plan (signed out) never erases one
    pro = cc.with_plan(shown, cc.Plan("pro"))
    assert pro is not None and pro["claudeAiOauth"]["subscriptionType"] == "pro"
    assert "rateLimitTier" not in pro["claudeAiOauth"]  # the old tier is not the new plan's
    assert cc.with_plan(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-x"}}), cc.Plan("max")) is None
