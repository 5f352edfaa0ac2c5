"""kerasguard serve end to end: a real gateway process, real sandboxed workers, real sockets.

One gateway serves two tenants: ``alpha`` (``digits`` and ``grower``, a model whose memory grows with
its input) and ``beta`` (its own ``digits``, with other weights). Every attack is sent over loopback.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import pickle
import signal
import socket
import statistics
import subprocess
import sys
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
    worker_pid,
    write_policy,
)

pytestmark = [pytest.mark.slow, pytest.mark.keras]

KEY_RATE = 40
SERVE = {
    "namespaces": ["alpha", "beta"],
    "poll_seconds": 1.0,
    "key_cache_seconds": 1.0,
    "request_timeout_s": 5.0,
    "max_body_bytes": 4 * 1024 * 1024,
    "max_instances": 64,
    "key_requests_per_second": KEY_RATE,
    "restart_backoff_s": 1.0,
    "ranges": {"digits/pixels": [0, 16]},
}


@pytest.fixture(scope="module")
def world(serve_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> World:
    plan = {"alpha": {"digits": "digits_a", "grower": "grower"}, "beta": {"digits": "digits_b"}}
    return make_world(tmp_path_factory.mktemp("serve-world"), serve_models, plan)


@pytest.fixture(scope="module")
def gw(world: World) -> Iterator[Gateway]:
    policy = write_policy(world.folder / "serve.toml", dict(SERVE))
    gateway = Gateway(world, policy, world.folder / "gateway.log")
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()
    # the gateway never died on its own and never answered 500
    assert gateway.proc.returncode in (0, -signal.SIGINT), gateway.log.read_text()[-2000:]
    assert all(line["status"] != 500 for line in gateway.access_lines())


def digits_input(n: int = 3) -> np.ndarray:
    return np.random.default_rng(n).uniform(0, 16, size=(n, 64)).astype("float32")


def post(gw: Gateway, key: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(gw.url + path, headers={**auth(key), **kwargs.pop("headers", {})}, timeout=30, **kwargs)


def reference(serve_models: dict[str, Path], which: str, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.saving.load_model(serve_models[which]).predict(x, verbose=0))


def test_predict_in_every_body_layout(gw: Gateway, world: World, serve_models: dict[str, Path]) -> None:
    x = digits_input()
    key = world.keys["alpha"]
    expected = reference(serve_models, "digits_a", x)
    rows = post(gw, key, "/v1/models/digits:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
    cols = post(gw, key, "/v1/models/digits/versions/1:predict", json={"inputs": {"pixels": x.tolist()}})
    np.testing.assert_allclose(cols.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
    raw = post(
        gw, key, "/v1/models/digits:predict", content=npy(x), headers={"content-type": "application/x-npy"}
    )
    np.testing.assert_allclose(raw.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
    buf = io.BytesIO()
    np.savez_compressed(buf, pixels=x)
    packed = post(
        gw,
        key,
        "/v1/models/digits:predict",
        content=buf.getvalue(),
        headers={"content-type": "application/x-npz"},
    )
    np.testing.assert_allclose(packed.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
    # beta's "digits" is another model in another process: same name, other weights
    other = post(gw, world.keys["beta"], "/v1/models/digits:predict", json={"instances": x.tolist()})
    np.testing.assert_allclose(other.json()["predictions"], reference(serve_models, "digits_b", x), rtol=1e-5)
    assert not np.allclose(other.json()["predictions"], expected)


async def _p50(client: httpx.AsyncClient, url: str, key: str, n: int) -> float:
    times = []
    body = {"instances": digits_input(1).tolist()}
    for _ in range(n):
        start = time.perf_counter()
        r = await client.post(url, json=body, headers=auth(key))
        assert r.status_code == 200, r.text
        times.append(time.perf_counter() - start)
        await asyncio.sleep(2 / KEY_RATE)  # a well-behaved tenant: half its rate limit
    return statistics.median(times)


FLOOD = """
import asyncio, collections, sys, time
from urllib.parse import urlsplit
url, key = sys.argv[1], sys.argv[2]
seconds, cap, rate = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
u = urlsplit(url)
body = b'{"instances": [[' + b",".join([b"1.0"] * 64) + b']]}'
request = (
    f"POST {u.path} HTTP/1.1\\r\\nHost: {u.netloc}\\r\\ncontent-type: application/json\\r\\n"
    f"authorization: Bearer {key}\\r\\ncontent-length: {len(body)}\\r\\n\\r\\n"
).encode() + body
async def loop(codes, stop, interval):
    # a cheap keep-alive client paced at `rate` requests/s: the flooder must not starve the 2-core test
    # machine itself, or the test would measure the client, not the gateway
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    next_t = time.monotonic()
    while time.monotonic() < stop and sum(codes.values()) < cap:
        writer.write(request)
        status = int((await reader.readline()).split()[1])
        length, retry = 0, False
        while (line := await reader.readline()) not in (b"\\r\\n", b""):
            low = line.lower()
            if low.startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            retry = retry or low.startswith(b"retry-after:")
        await reader.readexactly(length)
        codes[status] += 1
        if status == 429 and not retry:
            codes["no-retry-after"] += 1
        next_t += interval
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    writer.close()
async def main():
    codes = collections.Counter()
    stop = time.monotonic() + seconds
    await asyncio.gather(*(loop(codes, stop, 2 / rate) for _ in range(2)))
    print(dict(codes))
asyncio.run(main())
"""


def test_flooding_tenant_is_limited_other_tenant_keeps_its_latency(gw: Gateway, world: World) -> None:
    """A second process floods with alpha's key at 10x its limit (bounded: 4 s, 1500 requests) while beta
    measures its latency."""
    url = gw.url + "/v1/models/digits:predict"

    async def measure() -> tuple[float, float, str]:
        async with httpx.AsyncClient(timeout=30) as calm:
            await _p50(calm, url, world.keys["beta"], 5)  # warm the connection
            unloaded = await _p50(calm, url, world.keys["beta"], 30)
            flood = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                FLOOD,
                url,
                world.keys["alpha"],
                "4",
                "1500",
                str(10 * KEY_RATE),
                stdout=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(0.5)
            loaded = await _p50(calm, url, world.keys["beta"], 30)
            out, _ = await flood.communicate()
            return unloaded, loaded, out.decode()

    unloaded, loaded, out = asyncio.run(measure())
    time.sleep(1.2)  # let alpha's one-second window run out before the next tests use its key
    codes = ast.literal_eval(out.strip())  # the dict the flood process printed
    assert codes.get(429, 0) > codes.get(200, 0) > 0, codes
    assert set(codes) <= {200, 429}, codes
    assert loaded <= 2 * unloaded, f"p50 {loaded * 1000:.1f} ms under flood vs {unloaded * 1000:.1f} ms"


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


BAD_BODIES = [
    # (name, body kwargs, status, reason, words the message must contain)
    (
        "malformed json",
        {"content": b'{"instances": [1, 2', "headers": {"content-type": "application/json"}},
        400,
        "malformed",
        ["JSON"],
    ),
    (
        "deep nesting",
        {
            "content": b'{"instances": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
            "headers": {"content-type": "application/json"},
        },
        400,
        "malformed",
        ["JSON"],
    ),
    (
        "text body",
        {"content": b"1,2,3", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
        ["content type"],
    ),
    ("no content type", {"content": b"{}"}, 415, "unsupported_media_type", ["content type"]),
    (
        "pickled npy",
        {"content": _object_npy(), "headers": {"content-type": "application/x-npy"}},
        422,
        "invalid_input",
        ["pixels", "rule: dtype"],
    ),
    (
        "raw pickle",
        {"content": pickle.dumps({"x": 1}), "headers": {"content-type": "application/x-npy"}},
        400,
        "malformed",
        ["pixels", ".npy"],
    ),
    (
        "short npy",
        {"content": npy(np.zeros((2, 64), "float32"))[:-8], "headers": {"content-type": "application/x-npy"}},
        400,
        "malformed",
        ["size"],
    ),
    (
        "nan",
        {
            "content": b'{"instances": [[NaN' + b", 1" * 63 + b"]]}",
            "headers": {"content-type": "application/json"},
        },
        422,
        "invalid_input",
        ["pixels", "rule: finite"],
    ),
    (
        "inf via float overflow",
        {
            "content": b'{"instances": [[' + b",".join([b"1e999"] * 64) + b"]]}",
            "headers": {"content-type": "application/json"},
        },
        422,
        "invalid_input",
        ["rule: finite"],
    ),
    ("wrong rank", {"json": {"instances": [[[1.0] * 64]]}}, 422, "invalid_input", ["pixels", "rule: rank"]),
    (
        "wrong shape",
        {"json": {"instances": [[1.0] * 63]}},
        422,
        "invalid_input",
        ["pixels", "rule: shape", "64"],
    ),
    ("ragged", {"json": {"instances": [[1.0] * 64, [1.0] * 3]}}, 422, "invalid_input", ["rule: shape"]),
    ("strings", {"json": {"instances": [["a"] * 64]}}, 422, "invalid_input", ["pixels"]),
    ("unknown input", {"json": {"inputs": {"evil": [[1.0] * 64]}}}, 422, "invalid_input", ["rule: inputs"]),
    (
        "batch over cap",
        {"json": {"instances": [[1.0] * 64] * 65}},
        422,
        "batch_too_large",
        ["65", "max_instances"],
    ),
    ("out of range", {"json": {"instances": [[17.0] * 64]}}, 422, "invalid_input", ["pixels", "rule: range"]),
    ("both layouts", {"json": {"instances": [[1.0] * 64], "inputs": [[1.0] * 64]}}, 400, "malformed", []),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "reason", "words"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_precise_errors(
    gw: Gateway, world: World, name: str, kwargs: dict[str, Any], status: int, reason: str, words: list[str]
) -> None:
    time.sleep(1.0 / KEY_RATE)
    response = post(gw, world.keys["alpha"], "/v1/models/digits:predict", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    for word in words:
        assert word in body["error"]
    assert_clean(response.text)


def test_auth(gw: Gateway, world: World) -> None:
    x = {"instances": digits_input(1).tolist()}
    none = httpx.post(gw.url + "/v1/models/digits:predict", json=x)
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert (
        post(gw, "kgs_0123456789abcdef_" + "A" * 43, "/v1/models/digits:predict", json=x).status_code == 401
    )
    # store tokens of other roles are not API keys, even the admin of every namespace
    assert post(gw, world.admin, "/v1/models/digits:predict", json=x).status_code == 401
    assert httpx.get(gw.url + "/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401
    with world.store() as store:
        key = store.create_token(world.admin, "invoker", "beta", "short-lived")
        assert post(gw, key, "/v1/models/digits:predict", json=x).status_code == 200
        store.revoke_token(world.admin, key.split("_")[1])
    deadline = time.monotonic() + 10
    while post(gw, key, "/v1/models/digits:predict", json=x).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.3)
    assert post(gw, key, "/v1/models/digits:predict", json=x).json()["reason"] == "unauthenticated"


def test_cross_tenant_access_is_always_404(gw: Gateway, world: World) -> None:
    beta = world.keys["beta"]
    x = {"instances": [[[[0.0]] * 4] * 4]}
    answers = [
        post(gw, beta, "/v1/models/grower:predict", json=x),  # alpha's model
        post(gw, beta, "/v1/models/grower/versions/1:predict", json=x),
        post(gw, beta, "/v1/models/nothing:predict", json=x),  # no such model anywhere
        post(gw, beta, "/v1/models/digits/versions/7:predict", json=x),
        httpx.get(gw.url + "/v1/models/grower", headers=auth(beta)),
        httpx.get(gw.url + "/v1/models/nothing", headers=auth(beta)),
    ]
    assert {r.status_code for r in answers} == {404}
    assert len({r.content for r in answers}) == 1  # one body: nothing tells them apart
    listed = httpx.get(gw.url + "/v1/models", headers=auth(beta)).json()
    assert [m["name"] for m in listed["models"]] == ["digits"]


def test_body_cap_refuses_a_gibibyte_without_reading_it(gw: Gateway, world: World) -> None:
    before = gw.rss()
    head = (
        "POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {world.keys['alpha']}\r\n"
    )
    # announced: refused before a byte of the body is read
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall((head + f"Content-Length: {1 << 30}\r\n\r\n").encode() + b"[" * 4096)
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    # streamed without a length: refused once the cap is passed; the client is cut off
    sent = 0
    chunk = b"100000\r\n" + b"1" * 0x100000 + b"\r\n"
    reply = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        deadline = time.monotonic() + 30
        try:
            while sent < (1 << 30) and time.monotonic() < deadline:
                s.sendall(chunk)
                sent += 0x100000
        except OSError:
            pass
        with contextlib.suppress(OSError):
            reply = s.recv(4096)
    assert sent < 256 << 20, f"the gateway kept reading: {sent} bytes"
    assert reply.startswith(b"HTTP/1.1 413") or reply == b""
    assert gw.rss() - before < 50 << 20
    lines = [line for line in gw.access_lines() if line.get("reason") == "body_too_large"]
    assert len(lines) >= 2


def test_slow_loris_body_is_cut_at_the_deadline(gw: Gateway, world: World) -> None:
    head = (
        "POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {world.keys['alpha']}\r\nContent-Length: 100000\r\n\r\n"
    )
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        s.sendall(head.encode() + b'{"instances": [')
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - start < SERVE["request_timeout_s"] + 3
    assert gw.proc.poll() is None


def test_worker_killed_mid_request_recovers(gw: Gateway, world: World) -> None:
    key = world.keys["alpha"]
    x = {"instances": digits_input(2).tolist()}
    pid = worker_pid(gw, "alpha/digits:1")
    os.kill(pid, signal.SIGKILL)
    failed = post(gw, key, "/v1/models/digits:predict", json=x)
    assert failed.status_code == 503 and "retry-after" in failed.headers
    assert failed.json()["reason"] in ("worker_crashed", "worker_unavailable")
    assert_clean(failed.text)
    new_pid = worker_pid(gw, "alpha/digits:1", after=1)
    assert new_pid != pid
    deadline = time.monotonic() + 60
    while (r := post(gw, key, "/v1/models/digits:predict", json=x)).status_code != 200:
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.5)
    metrics = httpx.get(gw.url + "/metrics").text
    assert (
        'kerasguard_serve_worker_restarts_total{cause="crash",model="digits",tenant="alpha",version="1"}'
        in metrics
    )


def test_model_that_grows_without_bound_is_killed_others_unaffected(gw: Gateway, world: World) -> None:
    alpha, beta = world.keys["alpha"], world.keys["beta"]
    # ~0.8 GiB of activations after the upsampling: under the address-space backstop (where XLA's
    # allocation would fail cleanly), over the 1 GiB memory cgroup with the child's own ~0.5 GiB
    huge = npy(np.ones((1, 112, 112, 1), "float32"))
    ok = post(
        gw,
        alpha,
        "/v1/models/grower:predict",
        content=npy(np.ones((1, 8, 8, 1), "float32")),
        headers={"content-type": "application/x-npy"},
    )
    assert ok.status_code == 200, ok.text
    killed = post(
        gw, alpha, "/v1/models/grower:predict", content=huge, headers={"content-type": "application/x-npy"}
    )
    assert killed.status_code in (503, 504), killed.text
    assert_clean(killed.text)
    after = post(
        gw,
        alpha,
        "/v1/models/grower:predict",
        content=npy(np.ones((1, 8, 8, 1), "float32")),
        headers={"content-type": "application/x-npy"},
    )
    assert after.status_code == 503 and "retry-after" in after.headers
    other = post(gw, beta, "/v1/models/digits:predict", json={"instances": digits_input(2).tolist()})
    assert other.status_code == 200
    deadline = time.monotonic() + 30
    while "kerasguard_serve_sandbox_kills_total{limit=" not in (text := httpx.get(gw.url + "/metrics").text):
        assert time.monotonic() < deadline, gw.log_tail()
        time.sleep(0.5)
    assert 'kerasguard_serve_worker_restarts_total{cause="memory",model="grower"' in text


def test_model_info_is_the_keras_signature(gw: Gateway, world: World, serve_models: dict[str, Path]) -> None:
    import keras

    for name, which in (("digits", "digits_a"), ("grower", "grower")):
        shown = httpx.get(gw.url + f"/v1/models/{name}", headers=auth(world.keys["alpha"]))
        assert shown.status_code == 200, shown.text
        (v1,) = [v for v in shown.json()["versions"] if v["version"] == "1"]
        model = keras.saving.load_model(serve_models[which])
        assert v1["inputs"] == [
            {"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in model.inputs
        ]
        assert v1["outputs"] == [
            {"name": n, "shape": list(t.shape), "dtype": t.dtype}
            for n, t in zip(model.output_names, model.outputs, strict=True)
        ]


def test_concurrent_requests_are_batched_each_gets_its_own_rows(
    gw: Gateway, world: World, serve_models: dict[str, Path]
) -> None:
    """16 concurrent requests with distinct inputs (1 to 3 rows) to beta's digits: every answer is the
    model's own prediction for that request's rows, and some predict call carried several requests."""
    url = gw.url + "/v1/models/digits:predict"
    labels = {"tenant": "beta", "model": "digits", "version": "1"}
    inputs = [
        np.random.default_rng(100 + i).uniform(0, 16, (1 + i % 3, 64)).astype("float32") for i in range(16)
    ]
    expected = [reference(serve_models, "digits_b", x) for x in inputs]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers=auth(world.keys["beta"])) as client:
            await client.get(gw.url + "/healthz")
            return await asyncio.gather(*(client.post(url, json={"instances": x.tolist()}) for x in inputs))

    for _ in range(5):  # a batch needs requests that queue while the worker is busy: rarely not the case
        calls = metric(gw, "kerasguard_serve_batch_size_count", **labels)
        singles = metric(gw, "kerasguard_serve_batch_size_bucket", **labels, le="1.0")
        for response, want in zip(asyncio.run(burst()), expected, strict=True):
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["predictions"], want, rtol=1e-5, atol=1e-6)
        calls = metric(gw, "kerasguard_serve_batch_size_count", **labels) - calls
        singles = metric(gw, "kerasguard_serve_batch_size_bucket", **labels, le="1.0") - singles
        assert 0 < calls <= 16
        if calls - singles > 0:
            break
        time.sleep(1.0)  # the key's one-second rate window
    else:
        raise AssertionError("no predict call carried more than one instance")
    time.sleep(1.0)


def test_promotion_and_quarantine_without_restart(
    gw: Gateway, world: World, serve_models: dict[str, Path]
) -> None:
    key = world.keys["alpha"]
    with world.store() as store:
        pub = store.create_token(world.admin, "publisher", "alpha", "ci2")
        store.push(
            pub,
            serve_models["digits_b"],
            name="digits",
            version="2",
            source="https://models.example.test/acme/d",
        )
        store.promote(pub, "digits", "2", "production")
        deadline = time.monotonic() + 15
        while True:
            shown = httpx.get(gw.url + "/v1/models/digits", headers=auth(key)).json()
            if shown["default_version"] == "2":
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        assert {v["version"] for v in shown["versions"]} == {"1", "2"}
        store.quarantine(world.admin, "digits", "2", "suspicious drift", namespace="alpha")
        deadline = time.monotonic() + 15
        while (
            r := post(gw, key, "/v1/models/digits/versions/2:predict", json={"instances": [[0.0] * 64]})
        ).status_code != 404:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.3)
    assert httpx.get(gw.url + "/v1/models/digits", headers=auth(key)).json()["default_version"] == "1"
    assert post(gw, key, "/v1/models/digits:predict", json={"instances": [[0.0] * 64]}).status_code == 200


def test_openapi_has_no_management_surface_and_schemathesis_finds_nothing(gw: Gateway, world: World) -> None:
    spec = httpx.get(gw.url + "/openapi.json").json()
    assert set(spec["paths"]) == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}:predict",
        "/v1/models/{name}/versions/{version}:predict",
    }
    st = Path(sys.executable).with_name("schemathesis")
    config = gw.log.parent / "schemathesis.toml"
    # a served model's name and version in the paths, so generated bodies reach validation and the worker
    config.write_text('[parameters]\n"path.name" = "digits"\n"path.version" = "1"\n')
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    result = subprocess.run(
        [
            str(st),
            "--config-file",
            str(config),
            "run",
            gw.url + "/openapi.json",
            "--checks",
            checks,
            "--max-examples",
            "25",
            "--rate-limit",
            f"{KEY_RATE - 5}/s",
            "--header",
            f"Authorization: Bearer {world.keys['alpha']}",
            "--request-timeout",
            "20",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=gw.log.parent,  # its example cache (.schemathesis/) stays out of the checkout
    )
    (gw.log.parent / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_access_log_and_metrics_record_every_reject(gw: Gateway) -> None:
    lines = gw.access_lines()
    reasons = {line["reason"] for line in lines if line["reason"]}
    assert {
        "unauthenticated",
        "not_found",
        "invalid_input",
        "malformed",
        "body_too_large",
        "body_timeout",
    } <= reasons
    served = [line for line in lines if line["status"] == 200 and line.get("model") == "digits"]
    assert served and all(line["digest"].startswith("sha256:") and line["tenant"] for line in served)
    assert all(isinstance(line["latency_ms"], float) for line in lines)
    metrics = httpx.get(gw.url + "/metrics").text
    for reason in ("unauthenticated", "not_found", "invalid_input", "body_too_large"):
        assert f'kerasguard_serve_rejects_total{{reason="{reason}"}}' in metrics
    assert "kerasguard_serve_request_seconds_bucket" in metrics
    assert "kerasguard_serve_batch_size_bucket" in metrics
    assert json.loads(httpx.get(gw.url + "/healthz").text) == {"status": "ok"}
