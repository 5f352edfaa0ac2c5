"""Two gateways on one store (docs/deployment.md, "Several gateways"): the store on the real PostgreSQL
server with shared blobs, initialised by node A; node B's folder holds a copy of ``store.toml`` alone, as
the Kubernetes manifest's init container seeds it. Both gateways serve what the store admitted, and what
is changed through either node (a revoked key, a deleted version) reaches both within the key cache and
poll intervals, while the other model is served throughout."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from kerasguard.policy import Policy, Store
from kerasguard.store import ModelStore
from kerasguard.store.keys import read_key_file, write_key_file
from support.servehelp import SOURCE, STAGE, Gateway, World, auth, start_gateway, stop_gateway

pytestmark = [pytest.mark.slow, pytest.mark.keras]

POLICY = Policy(store=Store(sources=(SOURCE,)))
SERVE = {
    "namespaces": ["acme"],
    "poll_seconds": 1.0,
    "key_cache_seconds": 1.0,
    "max_batch": 4,
    "console": False,
}


@pytest.fixture(scope="module")
def nodes(
    serve_models: dict[str, Path], pg_schema: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[World, World]:
    folder = tmp_path_factory.mktemp("nodes")
    key_file = folder / "master.key"
    master = write_key_file(key_file)
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{pg_schema}"
    store, admin = ModelStore.init(
        folder / "node-a", master, db_url=db_url, blob_url=f"file://{folder / 'bucket'}", policy=POLICY
    )
    first = World(folder / "node-a", key_file, admin, folder=folder)
    with store:
        publisher = store.create_token(admin, "publisher", "acme", "ci")
        for name in ("digits", "spare"):
            info = store.push(
                publisher, serve_models["digits_a"], name=name, version="1", source=f"{SOURCE}/{name}"
            )
            assert info.status == "admitted", info.reason
            store.promote(publisher, name, "1", STAGE)
        first.keys = {label: store.create_token(admin, "invoker", "acme", label) for label in ("app", "old")}
    seeded = folder / "node-b"
    seeded.mkdir(mode=0o700)
    shutil.copy(first.root / "store.toml", seeded / "store.toml")
    return first, World(seeded, key_file, admin, keys=first.keys, folder=folder)


@pytest.fixture(scope="module")
def gateways(nodes: tuple[World, World]) -> Iterator[tuple[Gateway, Gateway]]:
    first = start_gateway(nodes[0], "gateway-a", SERVE)
    try:
        second = start_gateway(nodes[1], "gateway-b", SERVE)
        try:
            yield first, second
        finally:
            stop_gateway(second)
    finally:
        stop_gateway(first)


def predict(gw: Gateway, key: str, model: str = "digits") -> httpx.Response:
    body = {"instances": np.linspace(0, 1, 128).reshape(2, 64).tolist()}
    return httpx.post(f"{gw.url}/v1/models/{model}:predict", json=body, headers=auth(key), timeout=30)


def until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def opened(world: World) -> ModelStore:
    return ModelStore.open(world.root, read_key_file(world.key_file), policy=POLICY)


def test_both_gateways_serve_the_store_and_see_changes_made_through_either_node(
    nodes: tuple[World, World], gateways: tuple[Gateway, Gateway]
) -> None:
    first, second = nodes
    app, old = first.keys["app"], first.keys["old"]
    answers = [predict(gw, app) for gw in gateways]
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert answers[0].json() == answers[1].json()  # the same model bytes, from the shared bucket
    assert all(predict(gw, old).status_code == 200 for gw in gateways)

    # a key revoked through node B: refused by both gateways once their key caches expire
    with opened(second) as store:
        token_id = next(t["id"] for t in store.list_tokens(second.admin, "acme") if t["label"] == "old")
        store.revoke_token(second.admin, token_id)
    for gw in gateways:
        until(f"{gw.url} still accepts the revoked key", lambda gw=gw: predict(gw, old).status_code == 401)

    # a version deleted through node A: withdrawn by both gateways at their next poll
    with opened(first) as store:
        store.delete(first.admin, "spare", "1", "superseded", namespace="acme")
    for gw in gateways:
        until(
            f"{gw.url} still serves the deleted version",
            lambda gw=gw: predict(gw, app, "spare").status_code == 404,
        )

    # the other model and key were served throughout
    assert [predict(gw, app).status_code for gw in gateways] == [200, 200]
