"""Helpers of the console tests: a store with a clean model, a quarantined one and a hostile one, and a
real ``kerasguard serve`` process with the console on."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.servehelp import SOURCE, Gateway, World, free_port, write_policy

NS = "acme"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
MARKUP = "[red]x[/red]"
ESC = "\x1b[31mESC\x1b[0m"
HOSTILE_MEMBER = f"assets/{IMG}{MARKUP}\x1b]0;pwned\x07.txt"


@dataclass
class Site:
    world: World
    gateway: Gateway
    url: str
    admin: str
    reader: str
    publisher: str
    invoker: str


def build_models(folder: Path) -> dict[str, Path]:
    """``digits``: a clean MLP. ``suspect``, ``review``: a Lambda layer (quarantined at push).
    ``hostile``: that with HTML, JavaScript, rich markup and terminal escapes in its layer names and in
    a member's file name."""
    import keras

    keras.utils.set_random_seed(0)
    out = {}
    clean = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2)])
    out["digits"] = folder / "digits.keras"
    clean.save(out["digits"])
    lam = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, name="dense_a"), keras.layers.Lambda(lambda x: x * 2)]
    )
    out["suspect"] = folder / "suspect.keras"
    lam.save(out["suspect"])
    out["review"] = folder / "review.keras"  # released by the browser test; ``suspect`` stays quarantined
    lam.save(out["review"])
    out["hostile"] = folder / "hostile.keras"
    with zipfile.ZipFile(out["suspect"]) as src, zipfile.ZipFile(out["hostile"], "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                text = text.replace('"dense_a"', json.dumps(SCRIPT))
                hostile = '"name": ' + json.dumps(IMG + MARKUP + ESC)
                text = re.sub(r'"name": "lambda[^"]*"', lambda _m: hostile, text)
                data = text.encode()
            dst.writestr(item, data)
        dst.writestr(HOSTILE_MEMBER, b"hello")
    return out


def make_site(folder: Path, models: dict[str, Path]) -> Site:
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    key_file = folder / "master.key"
    master = write_key_file(key_file)
    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(folder / "store", master, policy=policy)
    world = World(folder / "store", key_file, admin, folder=folder)
    with store:
        publisher = store.create_token(admin, "publisher", NS, "ci")
        reader = store.create_token(admin, "reader", NS, "auditor")
        invoker = store.create_token(admin, "invoker", NS, "client")
        for name, path in models.items():
            info = store.push(publisher, path, name=name, version="1", source=f"{SOURCE}/{name}")
            assert info.status == ("admitted" if name == "digits" else "quarantined"), (name, info.reason)
    # Nothing at the served stage: the gateway starts no sandboxed worker, the console has the store.
    policy_file = write_policy(folder / "kerasguard.toml", {"stage": "production", "console": True})
    gateway = Gateway(world, policy_file, folder / "gateway.log")
    gateway.wait_ready(60)
    return Site(world, gateway, gateway.url, admin, reader, publisher, invoker)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by a real uvicorn on a loopback port, in a thread of this process (so the test can
    reach objects the app shares, such as its metrics registry); yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def console_app(store: Any, policy: Any, metrics: Any = None) -> Any:
    """The console alone, mounted at ``/console`` as the gateway mounts it, on a store the test holds."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from kerasguard.console import create_console
    from kerasguard.serve.metrics import Metrics

    console = create_console(store, policy, metrics or Metrics())
    return Starlette(routes=[Mount("/console", console)])


def login(site: Site | str, token: str) -> httpx.Client:
    """An httpx client logged in to the console at ``site`` (a Site or a base URL); the cookie is Secure,
    so it is sent by hand over http."""
    base = site if isinstance(site, str) else site.url
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    page = client.get("/console/login")
    cookie = page.headers["set-cookie"].split(";")[0]
    csrf = csrf_of(page.text)
    answer = client.post("/console/login", data={"csrf": csrf, "token": token}, headers={"cookie": cookie})
    assert answer.status_code == 303, answer.text
    client.headers["cookie"] = answer.headers["set-cookie"].split(";")[0]
    client.cookies.clear()
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)
