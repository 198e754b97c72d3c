"""Sandbox keys: random bearer secrets the broker issues, stores only as hashes, and checks.

A sandbox presents its key where an SDK puts an API key (`x-api-key` or
`Authorization: Bearer`), so any Anthropic client works unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping

KEY_PREFIX = "sk-ib-"
_KEY_RE = re.compile(r"sk-ib-[A-Za-z0-9_-]{32,128}")


def generate_key() -> str:
    """A new key: the prefix makes a leaked key recognisable (and greppable) as ours."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Hex SHA-256 of the key.

    No salt or slow KDF: keys carry 256 random bits, so a stolen hash cannot be brute-forced,
    and a fast hash keeps per-request checks cheap. A presented key that is not UTF-8 (read
    with surrogate escapes, as aiohttp reads header bytes) hashes too, and matches nothing:
    it is a wrong key, not an error.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def match_key(presented: str, hashes: Mapping[str, str]) -> str | None:
    """The name whose stored hash matches `presented`, or None.

    Compares against every entry in constant time, without stopping at a match, so timing
    reveals neither which entry matched nor how much of a hash did.
    """
    digest = hash_key(presented)
    found: str | None = None
    for name, stored in hashes.items():
        # compare_digest takes ASCII text as it is (a damaged non-ASCII entry matches nothing)
        if stored.isascii() and hmac.compare_digest(digest, stored) and found is None:
            found = name
    return found


def extract_key(headers: Iterable[tuple[str, str]]) -> str | None:
    """The sandbox key from `x-api-key` or `Authorization: Bearer`, or None.

    Clients may send the same key both ways (Claude Code's apiKeyHelper does); different
    values are ambiguous and refused rather than guessed.
    """
    found: set[str] = set()
    for name, value in headers:
        lname = name.lower()
        if lname == "x-api-key":
            if value.strip():
                found.add(value.strip())
        elif lname == "authorization":
            scheme, _, credential = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                found.add(credential.strip())
    return found.pop() if len(found) == 1 else None


def looks_like_key(s: str) -> bool:
    """True for a string shaped like a key this broker issues (used to spot leaks)."""
    return _KEY_RE.fullmatch(s) is not None
