"""The gateway's HTTP/1.1 protocol: uvicorn's h11 protocol with a deadline on the request head.

Why: uvicorn bounds the body of a request only through the app (the guard's ``request_timeout_s``) and
an idle keep-alive connection only until it sends a byte (any data cancels its keep-alive timer). Nothing
bounds the time a client takes to send a request line and headers, so a client trickling header bytes
(slow-loris) holds a connection, and the memory and file descriptor behind it, for as long as it likes;
enough of them exhaust the process. Here the whole request head must arrive within ``header_timeout_s``
of the connection being made, or of the previous response finishing on a keep-alive connection.
Past it the connection is closed: after a ``408`` if part of a head was received, silently if nothing
was (a client may be about to reuse an idle pooled connection and must not read a stray 408 as its
answer).

The h11 implementation is pinned (never httptools, which ``http="auto"`` prefers when installed), so the
hooks below are the ones that run: the timer is armed whenever h11 waits for a new request
(``their_state is IDLE``) and cancelled as soon as it has parsed one.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadlineProtocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose request head is not complete within a deadline."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sync_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._sync_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _sync_head_timer(self) -> None:
        """Armed while h11 waits for a request head, cancelled once it has one (or the connection closes).

        Waiting includes the rest of a body the app answered without reading (a 401 before the body):
        uvicorn discards it before the next head, and a client trickling it must not escape the deadline.
        """
        conn = self.conn
        answered = conn.our_state is h11.DONE and conn.their_state is h11.SEND_BODY
        waiting = (conn.their_state is h11.IDLE or answered) and not self.transport.is_closing()
        if waiting and self.head_timer is None:
            self.head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)
        elif not waiting:
            self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if self.conn.their_state is h11.IDLE and partial:  # never a second answer to an answered request
            self.transport.write(TIMEOUT_RESPONSE)
        self._unset_keepalive_if_required()
        self.transport.close()


def protocol(header_timeout_s: float) -> Any:
    """The ``http=`` argument of ``uvicorn.run``: picklable, so ``--workers N`` processes get it too."""
    return functools.partial(HeaderDeadlineProtocol, header_timeout_s=header_timeout_s)
