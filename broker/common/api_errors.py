"""A refusal in Anthropic's error shape: what the proxy, a budget or a paused broker answers a
sandbox with, so its SDK shows a readable message."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "api_error",
}


@dataclass(frozen=True)
class Refusal:
    status: int
    error_type: str
    message: str

    def body(self) -> dict:
        """Anthropic's error shape, which every SDK already knows how to show."""
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


def refusal(status: int, message: str) -> Refusal:
    """A Refusal whose error type matches what the real API uses for `status`."""
    default = "invalid_request_error" if status < 500 else "api_error"
    return Refusal(status, ERROR_TYPES.get(status, default), message)
