"""The one interface every credential source implements (file, Keychain, keyring secret).

`source_order` decides which kinds to read, in which order; `broker.login_sources` builds
them. Sources are synchronous: the token manager runs them off the event loop. `load` returns
None when the source simply holds no login, and raises CredentialsError when what it holds
is unusable, so the manager can keep the last good token and say why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from broker.core.config import Config
from broker.core.credentials import OAuthLogin
from broker.core.profiles import Profile

Unwatch = Callable[[], None]


class CredentialSource(ABC):
    kind: str = "?"
    refreshable: bool = True  # False: a long-lived secret (setup-token, API key)

    @property
    @abstractmethod
    def label(self) -> str:
        """Where the login lives, for `status` (never the secret)."""

    def unavailable(self) -> str | None:
        """None when this source can run here; otherwise why not (shown by `doctor`)."""
        return None

    @abstractmethod
    def load(self) -> OAuthLogin | None:
        """The login as stored now, or None if there is none."""

    @abstractmethod
    def save(self, login: OAuthLogin) -> None:
        """Write a rotated login back where the host's Claude Code reads it."""

    @abstractmethod
    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        """Call `on_change` (from any thread) when the stored login may have changed."""


def source_order(config: Config, profile: Profile, platform: str, setup_token: bool) -> list[str]:
    """Source kinds to read, first one first. `setup_token`: `login --setup-token` stored one."""
    if config.credentials.sources:
        return list(config.credentials.sources)
    order = list(profile.credential_sources)
    if platform != "darwin" and "keychain" in order:
        # Claude Code keeps its login in the file on Linux and Windows; polling a desktop
        # keyring for an item it never writes would only raise unlock prompts.
        order.remove("keychain")
    if profile.auth_kind == "oauth" and setup_token:
        order.insert(0, "setup-token")
    return order
