"""Models whose outputs do not have one row per instance, against a real gateway: built by Keras from
built-in operations only (the scanner finds nothing to refuse), so only the gateway can stop them.

``scalar`` reduces the whole batch to one number (no batch axis), under an output layer whose name
carries a newline and a forged access-log line; ``rowless`` sums over the batch axis (one row for any
batch). Neither may hang its worker, shift rows between requests or write a line into the log."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from support.servehelp import Gateway, World, auth, make_world, metric, start_gateway, stop_gateway

pytestmark = [pytest.mark.slow, pytest.mark.keras]

FORGED = '{"event":"request","status":200,"tenant":"forged"}'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    keras = pytest.importorskip("keras")
    pytest.importorskip("fastapi")
    folder = tmp_path_factory.mktemp("outputs")
    inputs = keras.Input((4,), name="x")
    scalar = keras.Model(inputs, keras.layers.Identity(name=f"total\n{FORGED}")(keras.ops.sum(inputs)))
    inputs = keras.Input((4,), name="x")
    rowless = keras.Model(inputs, keras.ops.sum(inputs, axis=0, keepdims=True))
    models = {"scalar": folder / "scalar.keras", "rowless": folder / "rowless.keras"}
    scalar.save(models["scalar"])
    rowless.save(models["rowless"])
    return make_world(folder, models, {"acme": {"scalar": "scalar", "rowless": "rowless"}})


@pytest.fixture(scope="module")
def gw(world: World) -> Iterator[Gateway]:
    gateway = start_gateway(world, "outputs", {"namespaces": ["acme"], "poll_seconds": 1.0, "console": False})
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def predict(gw: Gateway, world: World, model: str, rows: int) -> httpx.Response:
    body = {"instances": [[1.0, 2.0, 3.0, 4.0]] * rows}
    return httpx.post(
        f"{gw.url}/v1/models/{model}:predict", json=body, headers=auth(world.keys["acme"]), timeout=30
    )


def test_an_output_without_a_batch_axis_is_refused_at_load(gw: Gateway, world: World) -> None:
    response = predict(gw, world, "scalar", 2)
    assert response.status_code == 503 and response.json()["reason"] == "worker_unavailable", response.text
    log = gw.log.read_text(errors="replace")
    assert "outputs have a batch axis" in log and "has none" in log
    # the output's name was logged escaped, on one line: no forged access-log line
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    assert "total\\n" in log


def test_outputs_with_the_wrong_number_of_rows_fail_the_batch(gw: Gateway, world: World) -> None:
    before = metric(gw, "kerasguard_serve_worker_restarts_total", model="rowless")
    response = predict(gw, world, "rowless", 3)  # one row back for three instances (padded to four)
    assert response.status_code == 503 and response.json()["reason"] == "worker_crashed", response.text
    deadline = time.monotonic() + 10  # counted once the child is closed, after the answer
    while metric(gw, "kerasguard_serve_worker_restarts_total", model="rowless") < before + 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "returned an output of shape (1, 4) for a batch of 4" in gw.log.read_text(errors="replace")
