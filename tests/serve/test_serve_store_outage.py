"""A store outage, for real: the gateway's PostgreSQL store is reached through a TCP relay this test
closes (connections cut, port refused) and opens again.

While the store cannot be polled the gateway keeps serving what it last saw admitted; with
``[serve] stale_after_failed_polls = N`` it withdraws every version after N failed polls in a row
(404, ``store_stale`` in the log, not ready) and serves them again once the store answers.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from support.servehelp import SOURCE, STAGE, Gateway, World, auth, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.keras]

STALE_AFTER = 3


class Relay:
    """127.0.0.1:port -> PostgreSQL; ``close`` cuts every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # idle pooled connections must stay up
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept (close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    relay = Relay(("127.0.0.1", 5432))
    relay.open()
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture(scope="module")
def world(
    serve_models: dict[str, Path], pg_schema: str, relay: Relay, tmp_path_factory: pytest.TempPathFactory
) -> World:
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    folder = tmp_path_factory.mktemp("outage-world")
    key_file = folder / "master.key"
    master = write_key_file(key_file)
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/test?options=-csearch_path%3D{pg_schema}"
    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(folder / "store", master, db_url=db_url, policy=policy)
    world = World(folder / "store", key_file, admin, folder=folder)
    with store:
        publisher = store.create_token(admin, "publisher", "acme", "ci")
        info = store.push(
            publisher, serve_models["digits_a"], name="digits", version="1", source=f"{SOURCE}/d"
        )
        assert info.status == "admitted", info.reason
        store.promote(publisher, "digits", "1", STAGE)
        world.keys["acme"] = store.create_token(admin, "invoker", "acme", "client")
    return world


def predict(gw: Gateway, key: str) -> httpx.Response:
    body = {"instances": np.zeros((1, 64)).tolist()}
    return httpx.post(f"{gw.url}/v1/models/digits:predict", json=body, headers=auth(key), timeout=30)


def wait_for_log(gw: Gateway, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in gw.log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{gw.log_tail()}")


def test_outage_keeps_serving_then_withdraws_after_n_failed_polls(world: World, relay: Relay) -> None:
    serve = {
        "poll_seconds": 1.0,
        "namespaces": ["acme"],
        "max_batch": 4,
        "key_cache_seconds": 3600,  # the key stays checked: what is measured is the served versions
        "stale_after_failed_polls": STALE_AFTER,
    }
    gw = Gateway(world, write_policy(world.folder / "outage.toml", serve), world.folder / "outage.log")
    try:
        gw.wait_ready()
        key = world.keys["acme"]
        assert predict(gw, key).status_code == 200
        relay.close()  # the store is unreachable: connections cut, the port refuses
        wait_for_log(gw, "store poll failed (1 in a row)")
        # fewer failed polls than the switch: still serving what was admitted
        assert predict(gw, key).status_code == 200
        assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 503
        wait_for_log(gw, '{"event":"store_stale"')
        response = predict(gw, key)
        assert response.status_code == 404, response.text
        stale = [
            json.loads(line)
            for line in gw.log.read_text(errors="replace").splitlines()
            if line.startswith('{"event":"store_stale"')
        ]
        assert stale[0]["failed_polls"] == STALE_AFTER and stale[0]["withdrawn"] == 1
        relay.open()  # the store is back: the version is served again, without a restart
        gw.wait_ready(timeout=120)
        assert predict(gw, key).status_code == 200
    finally:
        if not relay.is_open:
            relay.open()
        gw.stop()
    assert gw.proc.returncode in (0, -signal.SIGINT), gw.log_tail()
