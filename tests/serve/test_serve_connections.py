"""Connection-level attacks on a real gateway: slow request heads (slow-loris) and piles of idle connections.

The gateway runs with a short header deadline (``header_timeout_s``) and a small connection cap
(``max_connections``) so that each attack is seen to end within seconds, over real loopback sockets.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.servehelp import Gateway, World, make_world, start_gateway, stop_gateway

pytestmark = [pytest.mark.slow, pytest.mark.keras]

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
SERVE = {
    "namespaces": ["alpha"],
    "poll_seconds": 1.0,
    "header_timeout_s": HEADER_TIMEOUT,
    "max_connections": MAX_CONNECTIONS,
}


@pytest.fixture(scope="module")
def gw(serve_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    world: World = make_world(
        tmp_path_factory.mktemp("conn-world"), serve_models, {"alpha": {"digits": "digits_a"}}
    )
    gateway = start_gateway(world, "conn", SERVE)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection; a 408 sent before the close counts."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        data = s.recv(4096)
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def read_response(s: socket.socket) -> bytes:
    """One whole response with a Content-Length (head and body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_slow_loris_headers_are_cut_at_the_header_deadline(gw: Gateway) -> None:
    # a request line and headers that never end: one byte per 0.2 s, well past the deadline
    trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
    served: list[int] = []

    def normal_client() -> None:
        time.sleep(0.3)
        served.append(httpx.get(gw.url + "/healthz", timeout=5).status_code)

    helper = threading.Thread(target=normal_client)
    start = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        helper.start()
        for byte in trickle:
            if closed_by_server(s):
                closed_after = time.monotonic() - start
                break
            try:
                s.sendall(bytes([byte]))
            except OSError:  # reset by the server
                closed_after = time.monotonic() - start
                break
            if time.monotonic() - start > HEADER_TIMEOUT + 8:
                break
            time.sleep(0.2)
    helper.join(10)
    assert closed_after is not None, "the server kept a connection trickling its headers open"
    assert HEADER_TIMEOUT - 0.1 <= closed_after < HEADER_TIMEOUT + 1.5, closed_after
    assert served == [200]  # a normal client was served meanwhile
    assert gw.proc.poll() is None


def test_keep_alive_connection_gets_a_fresh_header_deadline(gw: Gateway) -> None:
    # the deadline restarts when a response has been sent: a second request head trickled after it is cut
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # then nothing more
        s.settimeout(HEADER_TIMEOUT + 5)
        try:
            reply = s.recv(4096)
        except OSError:
            reply = b""
        elapsed = time.monotonic() - start
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert elapsed < HEADER_TIMEOUT + 1.5, elapsed


def test_unread_body_of_an_answered_request_cannot_be_trickled_forever(gw: Gateway) -> None:
    # a 401 is sent before the body is read; the rest of the body, trickled, counts against the deadline
    head = (
        b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(head + b"{")
        assert read_response(s).startswith(b"HTTP/1.1 401")
        start = time.monotonic()
        closed_after = None
        while time.monotonic() - start < HEADER_TIMEOUT + 6:
            if closed_by_server(s):
                closed_after = time.monotonic() - start
                break
            try:
                s.sendall(b" ")
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.2)
    assert closed_after is not None and closed_after < HEADER_TIMEOUT + 1.5, closed_after


def test_idle_connections_beyond_the_cap_get_503_and_the_gateway_recovers(gw: Gateway) -> None:
    idle = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        # the cap's connections are all held open: a request on one more connection gets 503, then a close
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = extra.recv(4096)
            assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 503
        assert gw.proc.poll() is None
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
    assert gw.proc.poll() is None


def test_idle_connections_are_dropped_at_the_header_deadline(gw: Gateway) -> None:
    # idle connections that never send a byte cannot hold the cap: the header deadline closes them
    idle = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(HEADER_TIMEOUT + 1.0)
        for s in idle:
            s.settimeout(2)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
        assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()
    assert gw.proc.poll() is None
