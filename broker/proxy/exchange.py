"""What one proxied request did: the record the proxy fills in as it goes, and the audit line
and the usage ledger are made from. Slotted: one lives as long as its request (a stream can
last minutes), hundreds at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.usage.reply_usage import Usage


@dataclass(slots=True)
class Exchange:
    """What one proxied request did, for the audit trail and the sandbox's usage."""

    sandbox: str
    method: str
    path: str
    model: str | None = None
    status: int | None = None
    outcome: str | None = None
    retried_after_401: bool = False
    usage: Usage | None = None
    latency_ms: float | None = None
    secrets_scrubbed: int = 0  # secrets an upstream echoed into the body, masked on the way out
    client: str = "unknown"  # the client product, from the user agent

    def record(self, now: float) -> dict[str, Any]:
        """The audit line: names, model, status, token counts, latency; never a secret."""
        out: dict[str, Any] = {"sandbox": self.sandbox, "method": self.method, "path": self.path}
        for name in ("model", "status", "outcome", "latency_ms", "client"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.retried_after_401:
            out["retried_after_401"] = True
        if self.secrets_scrubbed:
            out["secrets_scrubbed"] = self.secrets_scrubbed
        u = self.usage
        if u is not None:
            out["model"] = u.model or self.model
            out.update(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                       cache_read_input_tokens=u.cache_read_input_tokens,
                       cache_creation_input_tokens=u.cache_creation_input_tokens)
        out["time"] = round(now, 3)
        return out
