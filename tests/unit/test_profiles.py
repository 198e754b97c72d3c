import pytest

from broker.common.errors import ProfileError
from broker.config.files import builtin_profile_dir, find_profile
from broker.config.profiles import parse_profile


def test_builtin_profiles_load_and_alias_works():
    dirs = [builtin_profile_dir()]
    oauth = find_profile("claude-plan", dirs)
    assert oauth.name == "anthropic-oauth" and oauth.upstream == "https://api.anthropic.com"
    assert oauth.mandatory_headers == {"anthropic-beta": "oauth-2025-04-20"}
    assert oauth.auth_value("tok") == "Bearer tok" and oauth.auth_kind == "oauth"
    assert oauth.token_url == "https://platform.claude.com/v1/oauth/token"
    assert oauth.client_id == "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
    assert "/v1/messages" in oauth.paths and not any(p.startswith("/api/oauth") for p in oauth.paths)
    key = find_profile("anthropic", dirs)
    assert key.auth_header == "x-api-key" and key.auth_value("k") == "k" and key.auth_kind == "static"


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ProfileError, match="known: anthropic, anthropic-oauth"):
        find_profile("openai", [builtin_profile_dir()])


@pytest.mark.parametrize("text, message", [
    ("upstream: https://x\npaths: [/v1]", "p.yaml: name: is required"),
    ("name: x\nupstream: nope\npaths: [/v1]\nauth: {kind: static}", "p.yaml: upstream: must be an http"),
    ("name: x\nupstream: https://x\npaths: []\nauth: {kind: static}", "paths: must list"),
    ("name: x\nupstream: https://x\npaths: [v1]\nauth: {kind: static}", "must start with /"),
    ("name: x\nupstream: https://x\npaths: [/v1]\nauth: {kind: oauth}", "oauth.token_url: is required"),
    ("name: x\nupstream: https://x\npaths: [/v1]\nauth: {kind: magic}", "auth.kind: must be one of"),
    ("name: x\nupstream: https://x\npaths: [/v1]\nauth: {kind: static}\ncolour: red", "colour: unknown key"),
])
def test_bad_profiles_name_file_and_field(text, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(text, "p.yaml")
