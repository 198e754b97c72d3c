"""Wiring: the credential sources a broker reads its login from, built from config and profile.

The interface and the choice of order are core (`login.sources`); this module checks what is
on disk (the setup-token marker) and builds the adapters. The CLI (`doctor`, `status` with no
broker running) and the service build the same list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from broker.login.file_store import FileSource, default_credentials_path
from broker.config.settings import Config
from broker.config.profiles import Profile
from broker.login.sources import CredentialSource, source_order

if TYPE_CHECKING:
    from broker.login.keychain_store import SecretStore

SETUP_TOKEN_SERVICE = "inference-broker"
SETUP_TOKEN_ACCOUNT = "setup-token"


def setup_token_marker(config: Config) -> Path:
    """Present when `login --setup-token` stored a token: it then comes first."""
    return config.state_dir / "setup-token.enabled"


def setup_token_store(platform: str = sys.platform) -> SecretStore:
    from broker.login.keychain_store import SecretStore  # noqa: PLC0415 - see build_sources

    return SecretStore(SETUP_TOKEN_SERVICE, SETUP_TOKEN_ACCOUNT, platform)


def build_sources(config: Config, profile: Profile, env: Mapping[str, str] = os.environ,
                  platform: str = sys.platform) -> list[CredentialSource]:
    """The sources in the order they are tried. The keychain adapter is imported only when a
    keychain or keyring source is used: a login read from a file does not keep it in memory."""
    poll = config.refresh.keychain_poll_seconds
    out: list[CredentialSource] = []
    setup_token = profile.auth_kind == "oauth" and setup_token_marker(config).exists()
    for kind in source_order(config, profile, platform, setup_token):
        if kind == "file":
            out.append(FileSource(config.credentials.file or default_credentials_path(env)))
            continue
        from broker.login.keychain_store import CLAUDE_SERVICE, KeychainSource, KeyringSecretSource, SecretStore

        if kind == "keychain":
            out.append(KeychainSource.for_claude_code(env, poll, platform, profile.keychain_service or CLAUDE_SERVICE))
        elif kind == "setup-token":
            out.append(KeyringSecretSource(setup_token_store(platform), poll))
        elif kind == "keyring":
            store = SecretStore(profile.keyring_service or SETUP_TOKEN_SERVICE,
                                profile.keyring_username or "api-key", platform)
            out.append(KeyringSecretSource(store, poll, kind="api-key"))
    return out
