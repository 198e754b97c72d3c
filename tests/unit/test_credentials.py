import json

import pytest

from broker.login.credentials import parse_login, serialize_login
from broker.common.errors import CredentialsError
from tests.fakes.login import UNKNOWN_FIELDS, claude_login_doc

ACCESS, REFRESH = "sk-ant-oat01-" + "a" * 40, "sk-ant-ort01-" + "b" * 40


def doc(**oauth_overrides):
    d = claude_login_doc(ACCESS, REFRESH, 1_900_000_000_000)
    d["claudeAiOauth"].update(oauth_overrides)
    return json.dumps(d)


@pytest.mark.parametrize("raw, seconds", [
    (1_900_000_000_000, 1_900_000_000.0),  # Claude Code writes epoch milliseconds
    (1_900_000_000, 1_900_000_000.0),  # hand-made files sometimes use seconds
    (1_900_000_000_500, 1_900_000_000.5),
])
def test_expiry_is_normalised_to_seconds(raw, seconds):
    assert parse_login(doc(expiresAt=raw)).expires_at == seconds


def test_fields_are_read():
    login = parse_login(doc(refreshTokenExpiresAt=1_950_000_000_000))
    assert (login.access_token, login.refresh_token) == (ACCESS, REFRESH)
    assert login.refresh_token_expires_at == 1_950_000_000.0
    assert login.scopes == ("user:inference", "user:profile")
    assert (login.subscription_type, login.rate_limit_tier) == ("max", "default_claude_max_20x")


def test_repr_never_shows_a_token():
    assert ACCESS not in repr(parse_login(doc())) and REFRESH not in repr(parse_login(doc()))


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   \n", "empty"),
    ('{"claudeAiOauth": {"accessTo', "not valid JSON"),
    ("[1, 2]", "top level must be a JSON object"),
    ('{"mcpOAuth": {}}', "no `claudeAiOauth` entry"),
    ('{"claudeAiOauth": "x"}', "must be an object"),
    ('{"claudeAiOauth": {"refreshToken": "r"}}', "accessToken` is missing"),
    ('{"claudeAiOauth": {"accessToken": ""}}', "accessToken` is missing"),
    ('{"claudeAiOauth": {"accessToken": "a", "expiresAt": "soon"}}', "expiresAt must be a number"),
    ('{"claudeAiOauth": {"accessToken": "a", "expiresAt": 3008e509}}', "expiresAt is not a usable time"),
    ('{"claudeAiOauth": {"accessToken": "a", "expiresAt": 1e300}}', "expiresAt is not a usable time"),
    ('{"claudeAiOauth": {"accessToken": "a", "scopes": "all"}}', "scopes` must be a list"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bad_documents_say_what_is_wrong(text, message):
    with pytest.raises(CredentialsError, match=message):
        parse_login(text)


def test_serialize_replaces_tokens_and_keeps_everything_else():
    login = parse_login(doc(expiresAt=1_900_000_000))  # read in seconds
    out = json.loads(serialize_login(login.rotated("sk-ant-oat01-new", "sk-ant-ort01-new", 1_950_000_000.25)))
    oauth = out["claudeAiOauth"]
    assert oauth["accessToken"] == "sk-ant-oat01-new" and oauth["refreshToken"] == "sk-ant-ort01-new"
    assert oauth["expiresAt"] == 1_950_000_000_250  # written back in milliseconds
    assert oauth["somethingNew"] is True and oauth["subscriptionType"] == "max"
    for key, value in UNKNOWN_FIELDS.items():
        assert out[key] == value


def test_rotation_without_a_new_refresh_token_keeps_the_old_one():
    login = parse_login(doc()).rotated("sk-ant-oat01-new", None, 1.0)
    assert login.refresh_token == REFRESH
