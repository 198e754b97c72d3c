"""Which credential sources a broker reads, in which order: a pure choice, no sources built."""

from __future__ import annotations

from broker.config.files import builtin_profile_dir, find_profile
from broker.config.settings import Config, CredentialSettings
from broker.login.sources import source_order

OAUTH = find_profile("anthropic-oauth", [builtin_profile_dir()])
KEY = find_profile("anthropic", [builtin_profile_dir()])


def test_the_keychain_is_read_on_macos_only():
    assert "keychain" in source_order(Config(), OAUTH, "darwin", False)
    assert "keychain" not in source_order(Config(), OAUTH, "linux", False)
    assert "file" in source_order(Config(), OAUTH, "linux", False)


def test_a_stored_setup_token_comes_first_for_oauth_profiles_only():
    assert source_order(Config(), OAUTH, "linux", True)[0] == "setup-token"
    assert "setup-token" not in source_order(Config(), KEY, "linux", True)


def test_the_config_list_wins():
    config = Config(credentials=CredentialSettings(sources=("keychain", "file")))
    assert source_order(config, OAUTH, "linux", True) == ["keychain", "file"]
