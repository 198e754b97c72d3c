"""Header policy for the proxy: what a sandbox's request may carry upstream, and back.

Pure functions over raw `(name, value)` lists so that repeats and name case survive until
policy decides, and so the rules are tested without sockets (mitmproxy's upstream_auth is
the model). The aiohttp handler only applies the result.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

# RFC 9110 section 7.6.1 plus the de-facto `proxy-connection` and `keep-alive`.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Credentials a sandbox presents; they are the sandbox key, never to be forwarded.
_CLIENT_CREDENTIALS = frozenset({"authorization", "x-api-key"})

# Dropped from requests besides hop-by-hop and credentials: the upstream client sets its own
# Host; cookies and forwarding headers would leak the sandbox's context; the sandbox's
# `Expect: 100-continue` was already answered by the proxy's server. Everything else goes
# upstream as the client sent it, in its order and case: Accept-Encoding too (the upstream
# client decodes gzip, deflate, br and zstd replies) and Content-Encoding (the body goes as
# it came). Content-Length stays in its place, set to the length of the body sent.
_REQUEST_DROP = frozenset({"host", "cookie", "forwarded", "expect"})

# Dropped from responses: the proxy re-streams a decoded body, and credential-bearing
# headers never travel back to a sandbox. `www-authenticate` is a challenge, not a secret.
_RESPONSE_DROP = frozenset(
    {"content-length", "content-encoding", "set-cookie", "set-cookie2", "authorization", "x-api-key"}
)


def split_list(value: str) -> list[str]:
    """Items of one comma-separated header value, trimmed, empties dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def merge_list_header(values: Iterable[str], mandatory: Sequence[str]) -> str:
    """Join list-valued headers into one value that surely holds every `mandatory` flag.

    Gateways must forward the client's flags (e.g. `anthropic-beta`) and only add theirs,
    so client order is kept and a mandatory flag the client already sent stays in place.
    """
    seen: dict[str, None] = {}
    for value in values:
        for item in split_list(value):
            seen.setdefault(item, None)
    for flag in mandatory:
        for item in split_list(flag):
            seen.setdefault(item, None)
    return ",".join(seen)


def connection_named(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Lower-case names listed in `Connection` values: hop-by-hop by the sender's say-so."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(item.lower() for item in split_list(value))
    return frozenset(named)


_ALWAYS_DROPPED = HOP_BY_HOP | _CLIENT_CREDENTIALS | _REQUEST_DROP
_RESPONSE_DROPPED = HOP_BY_HOP | _RESPONSE_DROP


def rewrite_request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    auth_header: str,
    auth_value: str,
    mandatory: Mapping[str, str],
    secrets: Sequence[str] = (),
    body_length: int | None = None,
) -> list[tuple[str, str]]:
    """The header list to send upstream for a sandbox's request.

    Strips the sandbox's credentials and everything hop-by-hop, injects the broker's own
    credential, and emits exactly one header per `mandatory` name with the client's flags
    merged in (at the client's position, or at the end when the client sent none). A header
    that carries one of `secrets` (the sandbox's key pasted where it does not belong) is
    dropped whole, as in responses. The client's first Content-Length keeps its place with
    `body_length` as its value (dropped when that is None). One pass over the headers, each
    name lower-cased once: this runs for every request.
    """
    needles = [s for s in secrets if s]
    items = [(name.lower(), name, value) for name, value in headers]
    dropped = _ALWAYS_DROPPED | {auth_header.lower()}
    if "connection" in [lname for lname, _, _ in items]:
        dropped |= connection_named((lname, value) for lname, _, value in items)
    wanted = {name.lower(): (name, value) for name, value in mandatory.items()}
    client_values: dict[str, list[str]] = {}
    at: dict[str, int] = {}  # where the client first sent each mandatory header
    out: list[tuple[str, str]] = []
    length_sent = body_length is None
    for lname, name, value in items:
        if lname in dropped or lname.startswith("x-forwarded-"):
            continue
        if lname == "content-length":
            if not length_sent:
                length_sent = True
                out.append((name, str(body_length)))
            continue
        if needles and _holds(name, value, needles):
            continue
        if lname in wanted:
            if lname not in at:
                at[lname] = len(out)
                out.append(wanted[lname])  # replaced below by the merged value
            client_values.setdefault(lname, []).append(value)
            continue
        out.append((name, value))
    for lname, (out_name, flags) in wanted.items():
        merged = merge_list_header(client_values.get(lname, ()), [flags])
        if lname in at:
            out[at[lname]] = (out_name, merged)
        else:
            out.append((out_name, merged))
    out.append((auth_header, auth_value))
    return out


def rewrite_response_headers(
    headers: Iterable[tuple[str, str]], secrets: Collection[str]
) -> list[tuple[str, str]]:
    """The upstream response's headers as a sandbox may see them.

    Any header echoing a secret in its name or value (every secret the broker holds: tokens
    current and earlier, the refresh token, the sandbox's key) is dropped whole: a partial
    redaction could still leak a prefix, and no legitimate header needs one. (This runs for every
    reply: the secrets are looked for in all headers at once, and header by header only
    when one is there.)
    """
    items = headers if isinstance(headers, list) else list(headers)
    dropped = _RESPONSE_DROPPED
    if any(name.lower() == "connection" for name, _ in items):
        dropped = dropped | connection_named(items)
    out = [(name, value) for name, value in items if name.lower() not in dropped and _sendable(name, value)]
    needles = [s for s in secrets if s]
    if needles:
        blob = "\n".join([f"{name}\n{value}" for name, value in out])
        if any(s in blob for s in needles):
            kept = []
            for name, value in out:
                if _holds(name, value, needles):
                    logger.warning("dropped upstream response header %r: it carried a secret", name.lower())
                else:
                    kept.append((name, value))
            out = kept
    return out


def _sendable(name: str, value: str) -> bool:
    """False for a header that is not valid UTF-8 as received (read with surrogate escapes):
    it could not be written out again, and no API header needs such bytes."""
    if value.isascii() and name.isascii():
        return True
    try:
        value.encode("utf-8")
        name.encode("utf-8")
    except UnicodeEncodeError:
        logger.warning("dropped upstream response header %r: not valid UTF-8", name.encode("utf-8", "replace"))
        return False
    return True


def _holds(name: str, value: str, needles: Sequence[str]) -> bool:
    for s in needles:  # a loop, not any(...): this runs for every header of every message
        if s in value or s in name:
            return True
    return False


