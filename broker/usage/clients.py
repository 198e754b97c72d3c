"""Which client product sent a request, from its User-Agent, for the usage ledger.

Only the product and version are kept ("claude-cli/2.1.197"), never the rest of the string:
user agents can carry host names or paths that say more about a sandbox than the ledger needs.
"""

from __future__ import annotations

import functools
import re

_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]{0,40})(?:/([0-9][A-Za-z0-9._+-]{0,30}))?")
# The SDKs name themselves "Anthropic/Python 0.40.0", with the language after the slash.
_SDK = re.compile(r"Anthropic/(Python|JS|TypeScript|Go|Java|Ruby)\s+([0-9][A-Za-z0-9._+-]{0,30})", re.I)


@functools.lru_cache(maxsize=64)  # every request has one; a sandbox sends the same few
def client_product(user_agent: str | None) -> str:
    """"claude-cli/2.1.197", "anthropic-python/2.14.0", "curl/8.1.2", or "unknown"."""
    ua = (user_agent or "").strip()
    if not ua:
        return "unknown"
    sdk = _SDK.match(ua)
    if sdk:
        return f"anthropic-{sdk.group(1).lower()}/{sdk.group(2)}"
    m = _PRODUCT.match(ua)
    if not m:
        return "unknown"
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}/{version}" if version else name
