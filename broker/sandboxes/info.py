"""One sandbox as every face lists it: its name, when it was made and used, what it spent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.common.clock import iso


@dataclass(frozen=True)
class SandboxInfo:
    name: str
    created: float
    last_used: float | None = None
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    budget: str | None = None  # "2M/5h"
    budget_used: int | None = None  # tokens counted against it now (known to a running broker)

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "budget_used": self.budget_used,
            "name": self.name,
            "created": iso(self.created),
            "last_used": iso(self.last_used),
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }
