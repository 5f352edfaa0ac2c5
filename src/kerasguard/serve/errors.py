"""Rejections: a status, a reason (the label in logs and metrics) and a message safe to show a client.

Messages never carry paths, digests, stack traces or library text: they are written here or by the
validators from the request's own field names and the model's public signature.
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A request refused with ``status``; ``reason`` is a fixed label (rejects by reason)."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.counted = False  # a predict refused after its shared rate-limit count (app.Gateway.predict)

    def headers(self) -> dict[str, str]:
        out = {}
        if self.retry_after is not None:
            out["retry-after"] = str(max(1, int(self.retry_after + 0.999)))
        if self.status == 401:
            out["www-authenticate"] = "Bearer"
        if self.status in (400, 408, 413):  # the rest of the body is not worth reading: drop the connection
            out["connection"] = "close"
        return out

    def body(self) -> bytes:
        return error_body(self.message, self.reason)


def error_body(message: str, reason: str) -> bytes:
    return json.dumps({"error": message, "reason": reason}).encode()


NOT_FOUND_MESSAGE = "model not found"


def not_found() -> ApiError:
    """The one answer for an unknown model and another tenant's model (the bodies are identical)."""
    return ApiError(404, "not_found", NOT_FOUND_MESSAGE)


def unavailable(reason: str, message: str, retry_after: float = 1.0) -> ApiError:
    return ApiError(503, reason, message, retry_after=retry_after)


def describe(value: Any, limit: int = 64) -> str:
    """A client-supplied name made safe to echo: printable ASCII, bounded."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(value))
    return text[:limit] + ("..." if len(text) > limit else "")
