"""The ASGI layer around the app: body cap and body deadline, the access log, the last-resort handler.

- A body larger than ``max_body_bytes`` is refused with 413 before it is read: at once when
  ``Content-Length`` announces it, else as soon as the streamed bytes pass the cap (the app reads the
  body through this guard, so at most the cap is ever buffered).
- A body that does not arrive within ``body_timeout_s`` (slow-loris) is refused with 408.
- Every HTTP request, allowed or denied, gets one JSON access-log line (tenant, key id, model, version,
  digest, status, latency, reject reason) and rejects are counted by reason.
- Nothing escapes as a 500 or a traceback: an error the app did not turn into a response becomes 503
  ``unavailable`` with a fixed message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kerasguard.serve.errors import ApiError
from kerasguard.serve.metrics import Metrics

access_log = logging.getLogger("kerasguard.serve.access")
log = logging.getLogger("kerasguard.serve")

LOG_FIELDS = ("tenant", "key_id", "model", "version", "digest", "instances", "strip_flagged")


class Guard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        outcome: dict[str, Any] = {"status": None, "started": False}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"], outcome["started"] = message["status"], True
            await send(message)

        try:
            announced = _content_length(scope)
            if announced is not None and announced > self.max_body:
                raise ApiError(413, "body_too_large", f"the body is larger than {self.max_body} bytes")
            await self.app(scope, self._guarded(receive, start), send_logged)
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else ApiError(503, "unavailable", "the request failed")
            if not isinstance(exc, ApiError):
                log.error("unhandled %s on %s", type(exc).__name__, scope.get("path", "")[:200])
            state.setdefault("reason", error.reason)
            if not outcome["started"]:
                await send_error(send_logged, error)
        finally:
            self._log(scope, state, outcome["status"], time.perf_counter() - start)

    def _guarded(self, receive: Receive, start: float) -> Receive:
        received = 0
        done = False

        async def guarded() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            remaining = start + self.body_timeout - time.perf_counter()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                raise ApiError(408, "body_timeout", "the request body did not arrive in time") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise ApiError(413, "body_too_large", f"the body is larger than {self.max_body} bytes")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return guarded

    def _log(self, scope: Scope, state: dict[str, Any], status: int | None, seconds: float) -> None:
        reason = state.get("reason")
        if reason is not None and (status or 0) >= 400:
            self.metrics.rejects.labels(reason).inc()
        line: dict[str, Any] = {
            "event": "request",
            "ts": round(time.time(), 3),
            "method": scope.get("method"),
            "path": str(scope.get("path", ""))[:300],
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "reason": reason if (status or 0) >= 400 else None,
        }
        for field in LOG_FIELDS:
            if field in state:
                line[field] = state[field]
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps(line, separators=(",", ":")))


async def send_error(send: Send, error: ApiError) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise ApiError(400, "malformed", "invalid Content-Length") from None
    return None
