"""The Keychain item Claude Code uses, and plain keyring secrets (setup-token, API key).

On macOS the item is read and written through `/usr/bin/security`, as Claude Code does:
a Security-framework read from Python would raise a prompt whose "Always Allow" Claude
Code's next rewrite resets. Secrets travel on stdin (`security -i`), never on argv, which
other users can read. Elsewhere the `keyring` library reaches Secret Service or the Windows
Credential Manager. No platform offers change events, so both are polled.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import subprocess
import sys
import threading
import unicodedata
from typing import Callable, Mapping

from broker.login.claude_locks import HostLocks, claude_config_dir
from broker.login.credentials import OAuthLogin
from broker.common.errors import SourceUnavailable
from broker.login.sources import ClaudeLoginSource, CredentialSource, Unwatch

log = logging.getLogger(__name__)

SECURITY = "/usr/bin/security"
CLAUDE_SERVICE = "Claude Code-credentials"


def claude_keychain_service(env: Mapping[str, str] = os.environ, base: str = CLAUDE_SERVICE) -> str:
    """Claude Code appends `-<8 hex of sha256(NFC(dir))>` when CLAUDE_CONFIG_DIR is set."""
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    if not config_dir:
        return base
    digest = hashlib.sha256(unicodedata.normalize("NFC", config_dir).encode("utf-8")).hexdigest()
    return f"{base}-{digest[:8]}"


def login_user(env: Mapping[str, str] = os.environ) -> str:
    return env.get("USER") or getpass.getuser()


class SecretStore:
    """get/set one secret string by (service, account), translating backend errors."""

    def __init__(self, service: str, account: str, platform: str = sys.platform, security: str = SECURITY) -> None:
        self.service, self.account, self.platform, self.security = service, account, platform, security

    def unavailable(self) -> str | None:
        if self.platform == "darwin":
            return None if os.path.exists(self.security) else f"{self.security} not found"
        try:
            import keyring
            from keyring.backends import fail

            backend = keyring.get_keyring()
        except Exception as exc:  # keyring raises several kinds at import on odd systems
            return f"keyring unusable: {exc}"
        if isinstance(backend, fail.Keyring):
            return "no system keyring (Secret Service / Credential Manager) is available"
        return None

    def get(self) -> str | None:
        if self.platform == "darwin":
            return self._security_get()
        keyring, errors = _keyring()
        try:
            return keyring.get_password(self.service, self.account)
        except errors.KeyringLocked:
            raise SourceUnavailable("the keyring is locked; unlock it and the broker will retry") from None
        except errors.NoKeyringError:
            raise SourceUnavailable("no system keyring is available") from None
        except errors.KeyringError as exc:
            raise SourceUnavailable(f"keyring error: {exc}") from None

    def set(self, value: str) -> None:
        if self.platform == "darwin":
            return self._security_set(value)
        keyring, errors = _keyring()
        try:
            keyring.set_password(self.service, self.account, value)
        except errors.KeyringError as exc:
            raise SourceUnavailable(f"cannot write to the keyring: {exc}") from None

    def delete(self) -> None:
        if self.platform == "darwin":
            self._security_run(f"delete-generic-password -a {_q(self.account)} -s {_q(self.service)}\n")
            return
        keyring, errors = _keyring()
        try:
            keyring.delete_password(self.service, self.account)
        except errors.PasswordDeleteError:
            pass

    # -- macOS: /usr/bin/security, secrets on stdin only
    def _security_get(self) -> str | None:
        proc = subprocess.run([self.security, "find-generic-password", "-a", self.account, "-s", self.service, "-w"],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode == 44:  # errSecItemNotFound
            return None
        if proc.returncode != 0:
            raise SourceUnavailable(f"security find-generic-password failed (exit {proc.returncode}); is the login keychain locked?")
        value = proc.stdout.rstrip("\n")
        return _maybe_hex(value)

    def _security_set(self, value: str) -> None:
        hexed = value.encode("utf-8").hex()
        self._security_run(f"add-generic-password -U -a {_q(self.account)} -s {_q(self.service)} -X {hexed}\n")

    def _security_run(self, command: str) -> None:
        proc = subprocess.run([self.security, "-i"], input=command, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SourceUnavailable(f"security -i failed (exit {proc.returncode})")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _maybe_hex(value: str) -> str:
    """`security -w` prints hex when the stored value has non-printable bytes."""
    if value and len(value) % 2 == 0 and all(c in "0123456789abcdef" for c in value):
        try:
            return bytes.fromhex(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return value
    return value


def _keyring():
    import keyring
    from keyring import errors

    return keyring, errors


class _Poller:
    """Calls `on_change` when `read()` returns something different; polls on a thread."""

    def __init__(self, read: Callable[[], object], on_change: Callable[[], None], interval: float) -> None:
        self.read, self.on_change, self.interval = read, on_change, interval
        self._stop = threading.Event()

    def start(self) -> Unwatch:
        threading.Thread(target=self._loop, name="keychain-poll", daemon=True).start()
        return self._stop.set

    def _loop(self) -> None:
        last = self._digest()
        while not self._stop.wait(self.interval):
            now = self._digest()
            if now != last:
                last = now
                self.on_change()

    def _digest(self) -> object:
        try:
            value = self.read()
        except Exception as exc:  # the manager reports errors when it loads
            return ("error", type(exc).__name__)
        return hashlib.sha256(str(value).encode()).hexdigest()


class _StoreSource(CredentialSource):
    """A source kept in a SecretStore: usable when the store is, watched by polling it."""

    def __init__(self, store: SecretStore, poll_seconds: float = 30.0) -> None:
        self.store, self.poll_seconds = store, poll_seconds

    def unavailable(self) -> str | None:
        return self.store.unavailable()

    def watch(self, on_change: Callable[[], None]) -> Unwatch:
        return _Poller(self.store.get, on_change, self.poll_seconds).start()


class KeychainSource(_StoreSource, ClaudeLoginSource):
    """Claude Code's own credentials item (the same JSON as the file)."""

    kind = "keychain"

    def __init__(self, store: SecretStore, poll_seconds: float = 30.0, locks: HostLocks | None = None) -> None:
        super().__init__(store, poll_seconds)
        self.locks = locks  # Claude Code's locks in its config dir (the Keychain has none of its own)

    @classmethod
    def for_claude_code(cls, env: Mapping[str, str] = os.environ, poll_seconds: float = 30.0,
                        platform: str = sys.platform, base_service: str = CLAUDE_SERVICE) -> "KeychainSource":
        store = SecretStore(claude_keychain_service(env, base_service), login_user(env), platform)
        return cls(store, poll_seconds, HostLocks(claude_config_dir(env)))

    @property
    def label(self) -> str:
        return f"keychain:{self.store.service}"

    def read_text(self) -> str | None:
        return self.store.get()

    def write_text(self, text: str) -> None:
        self.store.set(text.strip())


class KeyringSecretSource(_StoreSource):
    """A long-lived secret of the broker's own (a `claude setup-token` token or an API key).

    It is never refreshed, so it shares no refresh chain with the host's Claude Code.
    """

    kind = "setup-token"
    refreshable = False

    def __init__(self, store: SecretStore, poll_seconds: float = 30.0, kind: str = "setup-token") -> None:
        super().__init__(store, poll_seconds)
        self.kind = kind

    @property
    def label(self) -> str:
        return f"keyring:{self.store.service}/{self.store.account}"

    def load(self) -> OAuthLogin | None:
        value = (self.store.get() or "").strip()
        return OAuthLogin(access_token=value) if value else None

    def save(self, login: OAuthLogin) -> None:
        self.store.set(login.access_token)
