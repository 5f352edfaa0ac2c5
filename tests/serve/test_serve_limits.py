"""kerasguard serve under a model that burns CPU: deadlines, sandbox kills, restarts with backoff and the
concurrency and queue caps, against a real gateway with real sandboxed workers.

One gateway with a small policy serves ``alpha``'s ``burner`` (two wide convolutions: an 8x8 image takes
milliseconds, a 512x512 one far longer than the request deadline and the sandbox's CPU budget) and
``beta``'s ``digits``, the other tenant that must be served normally throughout.
"""

from __future__ import annotations

import contextlib
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


def access(gw: Gateway, reason: str, at_least: int = 0) -> list[dict[str, Any]]:
    """The access-log lines of ``reason``, waited for until there are ``at_least`` (the guard writes a
    request's line after its response has been sent)."""
    deadline = time.monotonic() + 10
    while len(lines := [line for line in gw.access_lines() if line.get("reason") == reason]) < at_least:
        assert time.monotonic() < deadline, (reason, lines)
        time.sleep(0.05)
    return lines


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
    crashes = metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="crash")
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
    assert metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="crash") == crashes + 1
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


@contextlib.contextmanager
def burning(gw: Gateway, world: World, key: str) -> Iterator[tuple[int, InFlight]]:
    """A request of ``key`` burning CPU in the burner's child (its pid and the request), from an idle
    worker that has just served; afterwards, pass or fail, the child is SIGKILLed, every request of
    the test answered and the worker serving again, so the next test starts from an idle worker too."""
    restarts = metric(gw, "kerasguard_serve_worker_restarts_total", model="burner")
    wait_served(gw, world, int(restarts))
    pid = worker_pid(gw, BURNER, after=int(restarts))
    slow = InFlight(gw, world.keys[key])
    try:
        wait_burning(pid, slow)
        yield pid, slow
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        slow.join(60)
        restarted(gw, world, restarts)


class Rejections:
    """Counts of one reject reason before a request, to check that it added exactly one."""

    def __init__(self, gw: Gateway, reason: str) -> None:
        self.gw, self.reason = gw, reason
        self.lines = len(access(gw, reason))
        self.count = metric(gw, "kerasguard_serve_rejects_total", reason=reason)

    def check(self, response: httpx.Response, status: int) -> None:
        assert response.status_code == status, response.text
        assert response.json()["reason"] == self.reason
        assert response.headers["retry-after"] == "1"
        assert_clean(response.text)
        lines = access(self.gw, self.reason, at_least=self.lines + 1)[self.lines :]
        assert [(line["status"], line["tenant"], line["model"]) for line in lines] == [
            (status, "alpha", "burner")
        ]
        assert metric(self.gw, "kerasguard_serve_rejects_total", reason=self.reason) == self.count + 1


def test_concurrency_cap_answers_429(gw: Gateway, world: World) -> None:
    """With one request of a key in flight, its next one gets 429 at once; another key of the same
    tenant is not capped by it (it waits in the queue instead)."""
    with burning(gw, world, "alpha") as (_, slow):
        rejections = Rejections(gw, "concurrency")
        rejections.check(burn(gw, world.keys["alpha"], 8), 429)
        other = InFlight(gw, world.keys["alpha2"], 8)
        queued_or_answered(gw, other)
        assert slow.result is None
    assert slow.response().status_code in (503, 504), slow.response().text
    assert other.response().status_code != 429, other.response().text


def queued_or_answered(gw: Gateway, request: InFlight) -> None:
    """The request reached the burner's queue (or was already answered, never with 429)."""
    until = time.monotonic() + DEADLINE_S
    while metric(gw, "kerasguard_serve_queue_depth", model="burner") < 1 and request.result is None:
        assert time.monotonic() < until
        time.sleep(0.02)
    assert request.result is None or request.result.status_code != 429, request.result.text


def test_full_queue_answers_503(gw: Gateway, world: World) -> None:
    """One request in the child, one in the queue (``queue_size = 1``): the next gets 503 queue_full at
    once; when the child dies, both waiting requests get 503 worker_crashed."""
    with burning(gw, world, "alpha") as (pid, slow):
        queued = InFlight(gw, world.keys["alpha2"], 8)  # the one place in the queue
        until = time.monotonic() + DEADLINE_S / 2
        while metric(gw, "kerasguard_serve_queue_depth", model="burner") < 1:
            assert queued.result is None and time.monotonic() < until, queued.result
            time.sleep(0.02)
        rejections = Rejections(gw, "queue_full")
        rejections.check(burn(gw, world.keys["alpha3"], 8), 503)
        os.kill(pid, signal.SIGKILL)
        for request in (slow, queued):
            answer = request.response()
            assert answer.status_code == 503 and answer.json()["reason"] == "worker_crashed", answer.text


def test_restart_backoff_doubles_up_to_its_cap(gw: Gateway, world: World) -> None:
    """Crash the worker three times in a row (no request served in between): the 503s during each
    backoff announce its delay, 1 s, 2 s, then 2 s (the cap, not 4 s)."""
    restarts = int(metric(gw, "kerasguard_serve_worker_restarts_total", model="burner"))
    crashes = metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="crash")
    wait_served(gw, world, restarts)  # a served request: the backoff starts again from its first step
    delays = []
    for n in range(3):
        os.kill(worker_pid(gw, BURNER, after=restarts + n), signal.SIGKILL)
        crashed = burn(gw, world.keys["alpha"], 8)
        assert crashed.status_code == 503 and crashed.json()["reason"] == "worker_crashed", crashed.text
        announced = []
        until = time.monotonic() + 0.6
        while time.monotonic() < until:
            r = burn(gw, world.keys["alpha"], 8)
            assert r.status_code == 503 and r.json()["reason"] == "worker_unavailable", r.text
            announced.append(int(r.headers["retry-after"]))
            time.sleep(0.05)
        delays.append(max(announced))
    assert delays == [BACKOFF_S, 2 * BACKOFF_S, BACKOFF_MAX_S]
    assert metric(gw, "kerasguard_serve_worker_restarts_total", model="burner", cause="crash") == crashes + 3
    wait_served(gw, world, restarts + 3)
