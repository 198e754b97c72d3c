"""Request guards: decide, before any key check or forwarding, whether to serve at all.

Each guard returns None (pass) or a `Refusal` the handler turns into Anthropic's error
shape, so a sandbox's SDK shows a readable message. Modelled on aws-vault's
`withSecurityChecks` (Host must match, added after a DNS-rebinding report).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence

from broker.common.api_errors import Refusal, refusal

ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD"})
# Claude Code's reachability checks of ANTHROPIC_BASE_URL, sent without a key: answered by the
# proxy itself, never forwarded (`HEAD /` since 2.1.x, also `HEAD /api/hello` in 2.1.3xx).
LOCAL_PROBES = frozenset({"/", "/api/hello"})
MAX_PATH = 2048
_MIB = 1024 * 1024


def shown(text: str, limit: int = 80) -> str:
    """Client-controlled text made safe to echo in a message: printable and short."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


@functools.lru_cache(maxsize=64)  # read for every request; the same few values
def host_name(host_header: str) -> str | None:
    """The name part of a Host value, lower-case without a trailing dot; None if malformed."""
    host = host_header.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    elif host.count(":") == 1:
        name, port = host.split(":")
        if not port.isdigit():
            return None
    else:
        name = host  # bare name, or an unbracketed IPv6 literal
    name = name.lower().rstrip(".")
    return name or None


def check_host(host_header: str | None, allowed: Collection[str]) -> Refusal | None:
    """DNS-rebinding guard: serve only the names sandboxes are told to use."""
    if not host_header or not host_header.strip():
        return refusal(400, "missing Host header")
    name = host_name(host_header)
    if name is None:
        return refusal(400, f"malformed Host header {shown(host_header)!r}")
    if name in allowed:  # the usual case, without normalizing every allowed entry
        return None
    permitted = {host_name(a) or a.lower() for a in allowed}
    if name in permitted:
        return None
    return refusal(
        403,
        f"host {shown(name)!r} is not served by inference-broker; if a sandbox really uses "
        "this name, add it to proxy.allowed_hosts in the config",
    )


def check_origin(origin: str | None, allowed_origins: Collection[str]) -> Refusal | None:
    """Refuse browsers: an Origin header means a web page is trying to use the proxy."""
    if origin is None:
        return None
    want = origin.strip().lower().rstrip("/")
    if want and want in {a.strip().lower().rstrip("/") for a in allowed_origins}:
        return None
    return refusal(
        403,
        f"requests from web pages (Origin {shown(origin)!r}) are refused by inference-broker; "
        "add the origin to proxy.allowed_origins if this is intended",
    )


def check_body_size(content_length: str | None, limit: int) -> Refusal | None:
    """Refuse a declared body over `limit`; chunked bodies must be capped while reading."""
    if content_length is None:
        return None
    value = content_length.strip()
    if not value.isascii() or not value.isdigit():
        return refusal(400, f"malformed Content-Length {shown(content_length)!r}")
    if int(value) > limit:
        return refusal(413, f"request body is larger than the {limit / _MIB:g} MiB limit")
    return None


_BAD_ENCODINGS = ("%2f", "%2e", "%5c", "%00", "%25")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def path_problem(raw_path: str) -> str | None:
    """Why a raw path is unsafe to forward (traversal and encoding tricks), or None."""
    if not raw_path.startswith("/"):
        return "path must start with /"
    if len(raw_path) > MAX_PATH:
        return "path is too long"
    if _CONTROL.search(raw_path):
        return "path contains control characters or spaces"
    if "\\" in raw_path:
        return "path contains a backslash"
    if "//" in raw_path:
        return "path contains an empty segment (//)"
    lowered = raw_path.lower()
    for enc in _BAD_ENCODINGS:
        if enc in lowered:
            return f"path contains the percent-encoding {enc.upper()}"
    if any(seg in (".", "..") for seg in raw_path.split("/")):
        return "path contains a dot segment"
    return None


def path_allowed(raw_path: str, allowlist: Sequence[str]) -> bool:
    """Exact entries match themselves; `/prefix/*` matches anything strictly below `/prefix/`."""
    for entry in allowlist:
        if entry.endswith("/*"):
            prefix = entry[:-1]
            if raw_path.startswith(prefix) and len(raw_path) > len(prefix):
                return True
        elif raw_path == entry:
            return True
    return False


def check_path(method: str, raw_path: str, allowlist: Sequence[str]) -> Refusal | None:
    """Forward only the API endpoints a sandbox needs (never OAuth or account endpoints)."""
    return _check_path(method, raw_path, tuple(allowlist))


@functools.lru_cache(maxsize=256)  # sandboxes call the same few paths over and over
def _check_path(method: str, raw_path: str, allowlist: tuple[str, ...]) -> Refusal | None:
    if method.upper() not in ALLOWED_METHODS:
        return refusal(405, f"method {shown(method)} is not forwarded by inference-broker")
    problem = path_problem(raw_path)
    if problem:
        return refusal(400, f"{problem}: {shown(raw_path)}")
    if not path_allowed(raw_path, allowlist):
        return refusal(403, f"path {shown(raw_path)} is not forwarded by inference-broker")
    return None
