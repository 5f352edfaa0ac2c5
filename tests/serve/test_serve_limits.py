"""kerasguard serve under a model that burns CPU: deadlines, sandbox kills, restarts with backoff and the
concurrency and queue caps, against a real gateway with real sandboxed workers.

One gateway with a small policy serves ``alpha``'s ``burner`` (two wide convolutions: an 8x8 image takes
milliseconds, a 512x512 one far longer than the request deadline and the sandbox's CPU budget) and
``beta``'s ``digits``, the other tenant that must be served normally throughout.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from support.servehelp import (
    Gateway,
    World,
    assert_clean,
    auth,
    make_world,
    metric,
    npy,
    start_gateway,
    stop_gateway,
    worker_pid,
)

pytestmark = [pytest.mark.slow, pytest.mark.keras]

DEADLINE_S = 2.0
CPU_SECONDS = 10
BACKOFF_S, BACKOFF_MAX_S = 1.0, 2.0
SERVE = {
    "namespaces": ["alpha", "beta"],
    "poll_seconds": 1.0,
    "key_cache_seconds": 1.0,
    "request_timeout_s": DEADLINE_S,
    "max_concurrent_per_key": 1,
    "queue_size": 1,
    "max_batch": 4,
    "restart_backoff_s": BACKOFF_S,
    "restart_backoff_max_s": BACKOFF_MAX_S,
    "console": False,
}
# the CPU budget per request is hit well after the deadline (the child computes on every core), the
# wall clock later still
SANDBOX = {"memory_mb": 1024, "cpu_seconds": CPU_SECONDS, "wall_seconds": 4 * CPU_SECONDS}
BURNER = "alpha/burner:1"
NPY = {"content-type": "application/x-npy"}


@pytest.fixture(scope="module")
def world(serve_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> World:
    plan = {"alpha": {"burner": "burner"}, "beta": {"digits": "digits_b"}}
    world = make_world(tmp_path_factory.mktemp("serve-limits"), serve_models, plan)
    with world.store() as store:  # more alpha keys: the concurrency cap is per key
        for n in (2, 3):
            world.keys[f"alpha{n}"] = store.create_token(world.admin, "invoker", "alpha", f"client{n}")
    return world


@pytest.fixture(scope="module")
def gw(world: World) -> Iterator[Gateway]:
    gateway = start_gateway(world, "limits", dict(SERVE), SANDBOX)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def burn(gw: Gateway, key: str, side: int = 512) -> httpx.Response:
    """A predict on the burner: an 8x8 image is cheap, a 512x512 one burns CPU past every limit."""
    body = npy(np.ones((1, side, side, 1), "float32"))
    return httpx.post(
        gw.url + "/v1/models/burner:predict", content=body, headers={**auth(key), **NPY}, timeout=60
    )


class InFlight(threading.Thread):
    """``burn`` in a thread; ``result`` holds the response and ``seconds`` its latency."""

    def __init__(self, gw: Gateway, key: str, side: int = 512) -> None:
        super().__init__(daemon=True)
        self.args_ = (gw, key, side)
        self.result: httpx.Response | None = None
        self.seconds = 0.0
        self.start()

    def run(self) -> None:
        start = time.monotonic()
        self.result = burn(*self.args_)
        self.seconds = time.monotonic() - start

    def response(self) -> httpx.Response:
        self.join(60)
        assert self.result is not None
        return self.result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_burning(pid: int, slow: InFlight) -> None:
    """The slow request is in the child: its CPU time grows (not a guess at how long the way there takes)."""
    start, until = cpu_seconds(pid), time.monotonic() + DEADLINE_S
    while cpu_seconds(pid) < start + 0.3:
        assert slow.result is None and time.monotonic() < until, slow.result
        time.sleep(0.02)


def digits(gw: Gateway, world: World) -> tuple[int, float]:
    start = time.monotonic()
    r = httpx.post(
        gw.url + "/v1/models/digits:predict",
        json={"instances": [[1.0] * 64]},
        headers=auth(world.keys["beta"]),
        timeout=30,
    )
    return r.status_code, time.monotonic() - start


def wait_served(gw: Gateway, world: World, restarts: int) -> None:
    """The burner's worker has been ready ``restarts + 1`` times and answers a cheap request (a new
    child compiles for the input's shape on its first call, which can outlast the deadline)."""
    worker_pid(gw, BURNER, after=restarts)
    deadline = time.monotonic() + 60
    while (r := burn(gw, world.keys["alpha"], 8)).status_code != 200:
        assert r.status_code in (503, 504) and time.monotonic() < deadline, r.text
        time.sleep(0.3)


def access(gw: Gateway, reason: str) -> list[dict[str, Any]]:
    return [line for line in gw.access_lines() if line.get("reason") == reason]


def test_cpu_burner_gets_the_deadline_is_killed_and_restarted_other_tenant_served(
    gw: Gateway, world: World
) -> None:
    wait_served(gw, world, 0)
    pid = worker_pid(gw, BURNER)
    before = [digits(gw, world)[1] for _ in range(5)]
    deadlines = len(access(gw, "deadline"))
    slow = InFlight(gw, world.keys["alpha"])
    other: list[tuple[int, float]] = []
    deadline = time.monotonic() + 90
    while metric(gw, "kerasguard_serve_sandbox_kills_total", limit="cpu") < 1:
        assert time.monotonic() < deadline, gw.log_tail()
        other.append(digits(gw, world))
        time.sleep(0.2)
    answer = slow.response()
    assert answer.status_code == 504, answer.text
    assert answer.json() == {
        "error": "the model did not answer within the request deadline",
        "reason": "deadline",
    }
    assert slow.seconds < DEADLINE_S + 1.5  # the deadline, not the CPU budget, bounds the request
    assert_clean(answer.text)
    assert metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="cpu") == 1
    lines = access(gw, "deadline")[deadlines:]
    assert [(line["status"], line["tenant"], line["model"]) for line in lines] == [(504, "alpha", "burner")]
    assert worker_pid(gw, BURNER, after=1) != pid  # restarted: a new child
    wait_served(gw, world, 1)
    # beta was served throughout, its latency bounded while alpha's child burnt the CPU
    assert other and {status for status, _ in other} == {200}, other
    assert max(s for _, s in other) < 2.0, other
    assert statistics.median(s for _, s in other) < max(0.25, 5 * statistics.median(before)), other
    assert "worker alpha/burner:1 failed at predict (cpu)" in gw.log.read_text()


def test_worker_sigkilled_mid_request_answers_503_and_restarts(gw: Gateway, world: World) -> None:
    restarts = metric(gw, "kerasguard_serve_worker_restarts_total", model="burner")
    wait_served(gw, world, int(restarts))
    pid = worker_pid(gw, BURNER, after=int(restarts))
    slow = InFlight(gw, world.keys["alpha"])
    wait_burning(pid, slow)  # in the child, burning, before the deadline
    os.kill(pid, signal.SIGKILL)
    answer = slow.response()
    assert answer.status_code == 503, answer.text
    assert answer.json()["reason"] == "worker_crashed"
    assert answer.headers["retry-after"] == "1"
    assert slow.seconds < DEADLINE_S  # answered when the child died, not at the deadline
    assert_clean(answer.text)
    assert metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="crash") == 1
    wait_served(gw, world, int(restarts) + 1)
    assert worker_pid(gw, BURNER, after=int(restarts) + 1) != pid
    assert "worker alpha/burner:1 failed at predict (crash)" in gw.log.read_text()
    assert all(r.status_code == 200 for r in (burn(gw, world.keys["alpha"], 8) for _ in range(3)))


def restarted(gw: Gateway, world: World, restarts: float) -> None:
    """Wait for the burner's worker to fail once more than ``restarts``, then to serve again."""
    deadline = time.monotonic() + 60
    while metric(gw, "kerasguard_serve_worker_restarts_total", model="burner") <= restarts:
        assert time.monotonic() < deadline, gw.log_tail()
        time.sleep(0.2)
    wait_served(gw, world, int(restarts) + 1)


def assert_rejected(gw: Gateway, response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    assert response.headers["retry-after"] == "1"
    assert_clean(response.text)
    lines = access(gw, reason)
    assert [(line["status"], line["tenant"], line["model"]) for line in lines] == [
        (status, "alpha", "burner")
    ]
    assert metric(gw, "kerasguard_serve_rejects_total", reason=reason) == 1
