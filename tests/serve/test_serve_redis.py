"""Rate limits through Redis: shared by two gateway processes, and Redis going down mid-run.

The shared-limit test uses the machine's Redis (127.0.0.1:6379). The outage test never touches it: it
starts a private ``redis-server`` on another loopback port and kills that one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.servehelp import Gateway, World, auth, free_port, make_world, write_policy

pytestmark = pytest.mark.slow

RATE = 20


def redis_up(port: int) -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    pytest.importorskip("fastapi")
    # a tenant with an invoker key and no models: the limits apply to every authenticated route
    return make_world(tmp_path_factory.mktemp("serve-redis"), {}, {"delta": {}})


def start(world: World, name: str, **serve: object) -> Gateway:
    policy = write_policy(world.folder / f"{name}.toml", {"namespaces": ["delta"], **serve})
    gateway = Gateway(world, policy, world.folder / f"{name}.log")
    gateway.wait_ready(60)
    return gateway


def launch_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private, non-persistent redis-server on a loopback port (never the machine's)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_up(port):
        assert time.monotonic() < deadline, "private redis-server did not start"
        time.sleep(0.1)
    return proc


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    procs = [launch_redis(port, tmp_path)]
    yield port, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_two_gateways_share_one_tenant_limit_through_redis(world: World) -> None:
    if not redis_up(6379):
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings = {"rate_limit_storage": "redis://127.0.0.1:6379/0", "key_requests_per_second": RATE}
    first, second = start(world, "gw-a", **settings), start(world, "gw-b", **settings)
    try:
        key = world.keys["delta"]
        with httpx.Client(timeout=10) as client:
            for gw in (first, second):  # authenticate once on each (the key cache), outside the window
                client.get(gw.url + "/healthz")
            time.sleep(1.1)
            statuses: dict[str, list[int]] = {first.url: [], second.url: []}
            start_t = time.monotonic()
            for i in range(30):
                gw = first if i % 2 == 0 else second
                statuses[gw.url].append(client.get(gw.url + "/v1/models", headers=auth(key)).status_code)
            elapsed = time.monotonic() - start_t
        assert elapsed < 1.0, "too slow to stay in one window; the count below would not be meaningful"
        every = statuses[first.url] + statuses[second.url]
        assert every.count(200) == RATE, statuses  # one budget for both processes, not one each
        assert every.count(429) == 30 - RATE
        assert 200 in statuses[first.url] and 200 in statuses[second.url]
    finally:
        first.stop()
        second.stop()


def test_redis_down_fails_closed_and_recovers(
    world: World, private_redis: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, procs = private_redis
    storage = f"redis://127.0.0.1:{port}/0"
    closed = start(world, "gw-closed", rate_limit_storage=storage)
    opened = start(world, "gw-open", rate_limit_storage=storage, on_storage_error="allow")
    key = world.keys["delta"]
    try:
        for gw in (closed, opened):
            assert httpx.get(gw.url + "/v1/models", headers=auth(key)).status_code == 200
        procs[0].kill()
        procs[0].wait(10)
        refused = httpx.get(closed.url + "/v1/models", headers=auth(key), timeout=10)
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "limiter_unavailable" and "retry-after" in refused.headers
        assert "redis" not in refused.text.lower()  # no library message
        assert httpx.get(opened.url + "/v1/models", headers=auth(key), timeout=10).status_code == 200
        assert httpx.get(closed.url + "/healthz").status_code == 200
        # not ready while it refuses everything (a load balancer sends the traffic elsewhere); the
        # gateway that serves without limits stays ready
        not_ready = httpx.get(closed.url + "/readyz", timeout=10)
        assert not_ready.status_code == 503 and not_ready.json() == {"status": "limiter_unavailable"}
        assert httpx.get(opened.url + "/readyz", timeout=10).status_code == 200
        for _ in range(3):
            httpx.get(closed.url + "/v1/models", headers=auth(key), timeout=10)
        # Redis back: the same gateway process limits again, without a restart
        procs.append(launch_redis(port, world.folder))
        deadline = time.monotonic() + 10
        while httpx.get(closed.url + "/v1/models", headers=auth(key)).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        lines = [line for line in closed.access_lines() if line.get("reason") == "limiter_unavailable"]
        assert lines and lines[0]["status"] == 503 and lines[0]["tenant"] == "delta"
        assert httpx.get(closed.url + "/readyz", timeout=10).status_code == 200
        # the outage and the recovery are logged once each, not once per refused request
        log = closed.log.read_text(errors="replace")
        assert log.count("rate-limit storage unreachable: refusing requests") == 1, log[-2000:]
        assert log.count("rate-limit storage answers again") == 1
        assert closed.proc.poll() is None and opened.proc.poll() is None
    finally:
        closed.stop()
        opened.stop()


def test_serve_refuses_to_start_without_a_usable_store_token(world: World) -> None:
    import os
    import sys

    from support.servehelp import ROOT

    with world.store() as store:
        reader = store.create_token(world.admin, "reader", "delta", "gateway")
    base = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERASGUARD_MASTER_KEY_FILE": str(world.key_file)}
    command = [sys.executable, "-m", "kerasguard", "serve", "--store", str(world.root), "--port", "1"]
    for token, words in (("", "needs a store token"), (reader, "cannot list the tenants")):
        env = {**base, "KERASGUARD_STORE_TOKEN": token}
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, cwd=world.folder
        )
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr


def test_workers_option_runs_several_processes_sharing_redis_limits(world: World) -> None:
    if not redis_up(6379):
        pytest.skip("no Redis on 127.0.0.1:6379")
    policy = write_policy(
        world.folder / "gw-multi.toml",
        {
            "namespaces": ["delta"],
            "rate_limit_storage": "redis://127.0.0.1:6379/0",
            "key_requests_per_second": 5,
        },
    )
    gw = Gateway(world, policy, world.folder / "gw-multi.log", ("--workers", "2"))
    try:
        gw.wait_ready(90)
        deadline = time.monotonic() + 30
        while len(gw.children()) < 2:  # uvicorn's supervisor and its two gateway processes
            assert time.monotonic() < deadline, gw.log_tail()
            time.sleep(0.2)
        key = world.keys["delta"]
        for _ in range(4):  # new connections: the kernel hands them to either process
            httpx.get(gw.url + "/healthz", timeout=10)

        # A fresh connection per request spreads them over both processes; one budget must hold for both
        # (two budgets would let up to 10 through). The 12 requests go out at once: a burst that takes a
        # second or more on a loaded machine spans two windows and proves nothing, so it is sent again.
        def one(_: int) -> int:
            return httpx.get(gw.url + "/v1/models", headers=auth(key), timeout=10).status_code

        bursts = []
        for _ in range(5):
            time.sleep(1.1)
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=12) as pool:
                codes = list(pool.map(one, range(12)))
            bursts.append((round(time.monotonic() - started, 2), codes))
            if bursts[-1][0] < 0.9:
                break
        elapsed, codes = bursts[-1]
        assert elapsed < 0.9, bursts
        assert codes.count(200) <= 5 + 1 and 429 in codes, bursts  # (a window edge may add one)
    finally:
        gw.stop()
