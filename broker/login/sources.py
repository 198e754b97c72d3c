"""The one interface every credential source implements (file, Keychain, keyring secret).

`source_order` decides which kinds to read, in which order; `broker.login.source_setup` builds
them. Sources are synchronous: the token manager runs them off the event loop. `load` returns
None when the source simply holds no login, and raises CredentialsError when what it holds
is unusable, so the manager can keep the last good token and say why.

A source the host's Claude Code also uses shares its locks: `refresh_lock` is held around a
whole refresh, `write_lock` around the read-compare-write of `write_back`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Callable, ContextManager, Protocol

from broker.common import fault_points
from broker.config.settings import Config
from broker.login.credentials import OAuthLogin, parse_login, serialize_login
from broker.common.errors import CredentialsError
from broker.config.profiles import Profile
from broker.login.pending import Pending
from broker.login.writeback import Stored, WriteBack, decide, stored

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
        """Write a login where the host's Claude Code reads it (unconditionally)."""

    @abstractmethod
    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        """Call `on_change` (from any thread) when the stored login may have changed."""

    # -- sharing the store with the host's Claude Code
    def refresh_lock(self, **kw: Any) -> ContextManager[None]:
        """Held around a refresh, so the host waits and adopts instead of refreshing too."""
        return contextlib.nullcontext()

    def write_lock(self, **kw: Any) -> ContextManager[None]:
        return contextlib.nullcontext()

    def read_text(self) -> str | bytes | None:
        """The stored document as is (None: nothing stored), for the compare-and-swap."""
        raise NotImplementedError(f"{type(self).__name__} cannot write back a rotated login")

    def write_text(self, text: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot write back a rotated login")

    def write_back(self, base: OAuthLogin | Pending, new: OAuthLogin, **lock_kw: Any) -> WriteBack:
        """Write `new` (refreshed from `base`) unless the store moved on meanwhile."""
        with self.write_lock(**lock_kw):
            now: Stored = stored(self.read_text())
            fault_points.reached(fault_points.STORE_READ)
            decision = decide(now, base, new)
            if decision.document is not None:
                self.write_text(decision.document)
            fault_points.reached(fault_points.STORE_WRITTEN)
        return decision


class HostLockSet(Protocol):
    """Claude Code's locks around one store (broker/login/claude_locks.HostLocks)."""

    def refreshing(self, **kw: Any) -> ContextManager[None]: ...

    def writing(self, **kw: Any) -> ContextManager[None]: ...


class ClaudeLoginSource(CredentialSource):
    """A store of Claude Code's login JSON that the host's Claude Code reads and writes too
    (the file, the Keychain item): parsed the same way, written back under its locks."""

    locks: HostLockSet | None = None

    @property
    def where(self) -> str:
        """How errors name the store."""
        return self.label

    def load(self) -> OAuthLogin | None:
        text = self.read_text()
        if text is None:
            return None
        try:
            return parse_login(text)
        except CredentialsError as exc:
            raise CredentialsError(f"{self.where}: {exc.message}") from None

    def save(self, login: OAuthLogin) -> None:
        self.write_text(serialize_login(login))

    def refresh_lock(self, **kw: Any) -> ContextManager[None]:
        return self.locks.refreshing(**kw) if self.locks is not None else super().refresh_lock()

    def write_lock(self, **kw: Any) -> ContextManager[None]:
        return self.locks.writing(**kw) if self.locks is not None else super().write_lock()


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
