"""Keeping secrets out of everything a person or a log can see.

`fingerprint` is the only form of a token the broker ever shows. `RedactingFilter` is the
second line of defence: code never logs a secret on purpose, and this filter scrubs anything
that looks like one (or was registered as one) in case a library or a mistake does.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading

# Claude OAuth tokens (sk-ant-oat01-..., sk-ant-ort01-...), API keys (sk-ant-api03-...),
# and our own sandbox keys (sk-ib-...).
_SECRET_RE = re.compile(r"sk-(?:ant-[a-z]+\d*|ib)-[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"
# A token cut short (a reason truncated to 200 characters) still starts with this many of
# its characters; from there to the end of the token-like run is redacted too.
_PREFIX = 12
_RUN_RE = re.compile(r"[A-Za-z0-9_\-.~+/=]*")


def fingerprint(secret: str | None) -> str | None:
    """A short, irreversible label for a secret (last 8 hex digits of its SHA-256)."""
    if not secret:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()[-8:]


class SecretRegistry:
    """The exact secrets currently held, so the filter can scrub ones no pattern knows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if s and len(s) >= 8}

    def snapshot(self) -> frozenset[str]:
        """The secrets held now: the same frozenset until one is added (the body scrubber and
        the audit's bounded fields key their caches on it)."""
        return self._secrets

    def scrub(self, text: str) -> str:
        """The one scrub for every text a person or a log sees (reasons, events, log lines)."""
        text = _SECRET_RE.sub(REDACTED, text)
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
            start = text.find(s[:_PREFIX])
            while start >= 0:  # a truncated or mangled copy of a known secret
                end = _RUN_RE.match(text, start).end()  # type: ignore[union-attr]
                text = text[:start] + REDACTED + text[end:]
                start = text.find(s[:_PREFIX], start + len(REDACTED))
        return text


REGISTRY = SecretRegistry()


def scrub(text: str) -> str:
    """Scrub `text` against the patterns and every secret the broker holds."""
    return REGISTRY.scrub(text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets replaced by `[redacted]`."""

    def __init__(self, registry: SecretRegistry = REGISTRY) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            return True
        clean = self.registry.scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.registry.scrub(record.exc_text)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True
