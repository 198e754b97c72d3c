"""A small error tree whose messages the tray and CLI can show as they are.

Platform and library errors are translated into these at the adapter boundary, so the
faces never need to know about ctypes, D-Bus or HTTP client exceptions.
"""

from __future__ import annotations

from broker.common.redact import scrub


class BrokerError(Exception):
    """Base: `title` is a short headline, `message` says what happened and what to do."""

    title = "inference-broker error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        # Reasons are made here (an endpoint's error description, a file's complaint) and
        # shown in `status --json`, the tray and notifications: scrub them once, at the source.
        message = scrub(message)
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class ConfigError(BrokerError):
    title = "Configuration error"


class ProfileError(BrokerError):
    title = "Provider profile error"


class CredentialsError(BrokerError):
    """The login exists but cannot be used as it is (corrupt, half-written, missing fields)."""

    title = "Unreadable Claude login"


class SourceUnavailable(BrokerError):
    """A credential source cannot run here (no keyring backend, not macOS, no file)."""

    title = "Credential source unavailable"


class NotLoggedIn(BrokerError):
    title = "Signed out"


class RefreshError(BrokerError):
    """The token endpoint refused or failed. `kind` drives the retry policy."""

    title = "Token refresh failed"

    INVALID_GRANT = "invalid_grant"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    REJECTED = "rejected"

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)  # scrubbed by BrokerError
        self.kind = kind
        self.retry_after = retry_after


class BrokerNotRunning(BrokerError):
    title = "Broker not running"
