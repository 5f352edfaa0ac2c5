"""Helpers of the gateway tests: a real store with real Keras models, and real gateway processes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "https://models.example.test/acme"
STAGE = "production"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_models(folder: Path) -> dict[str, Path]:
    """A digits-sized MLP (two weight sets) and a fully convolutional model whose memory grows with
    the input: 16x upsampling then 64 filters, so one 256x256 input needs ~4 GiB."""
    import keras

    keras.utils.set_random_seed(0)
    out = {}
    for tag in ("a", "b"):
        inputs = keras.Input((64,), name="pixels")
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        outputs = keras.layers.Dense(10, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs, name=f"digits_{tag}")
        out[f"digits_{tag}"] = folder / f"digits_{tag}.keras"
        model.save(out[f"digits_{tag}"])
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.UpSampling2D(16)(x)
    x = keras.layers.Conv2D(64, 3, padding="same")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs, name="grower")
    out["grower"] = folder / "grower.keras"
    model.save(out["grower"])
    # CPU time grows with the input, memory barely: 9x9 convolutions of 128 filters, ~8 MFLOP per input
    # pixel (an 8x8 image takes milliseconds, a 512x512 one ~20 s of CPU) in ~130 MiB per activation
    x = inputs = keras.Input((None, None, 1), name="image")
    for _ in range(4):
        x = keras.layers.Conv2D(128, 9, padding="same")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs, name="burner")
    out["burner"] = folder / "burner.keras"
    model.save(out["burner"])
    return out


@dataclass
class World:
    """A store on disk with its master key file, an admin token and invoker keys per tenant."""

    root: Path
    key_file: Path
    admin: str
    keys: dict[str, str] = field(default_factory=dict)  # tenant -> invoker key
    folder: Path = Path()

    def store(self) -> Any:
        from kerasguard.policy import Policy, Store
        from kerasguard.store import ModelStore
        from kerasguard.store.keys import read_key_file

        policy = Policy(store=Store(sources=(SOURCE,)))
        return ModelStore.open(self.root, read_key_file(self.key_file), policy=policy)


def make_world(folder: Path, models: dict[str, Path], plan: dict[str, dict[str, str]]) -> World:
    """``plan``: tenant -> {served model name: model file key}; every model is pushed and promoted."""
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    key_file = folder / "master.key"
    master = write_key_file(key_file)
    policy = Policy(store=Store(sources=(SOURCE,)))
    store, admin = ModelStore.init(folder / "store", master, policy=policy)
    world = World(folder / "store", key_file, admin, folder=folder)
    with store:
        for tenant, entries in plan.items():
            publisher = store.create_token(admin, "publisher", tenant, "ci")
            for name, model_key in entries.items():
                info = store.push(
                    publisher, models[model_key], name=name, version="1", source=f"{SOURCE}/{name}"
                )
                assert info.status == "admitted", info.reason
                store.promote(publisher, name, "1", STAGE)
            world.keys[tenant] = store.create_token(admin, "invoker", tenant, "client")
    return world


def write_policy(path: Path, serve: dict[str, Any], sandbox: dict[str, Any] | None = None) -> Path:
    def value(v: Any) -> str:
        return json.dumps(v)  # TOML accepts JSON strings, numbers, booleans and flat arrays

    lines = ["[store]", f"sources = [{value(SOURCE)}]", "[sandbox]"]
    for k, v in (sandbox or {"memory_mb": 1024, "cpu_seconds": 20, "wall_seconds": 30}).items():
        lines.append(f"{k} = {value(v)}")
    lines.append("[serve]")
    ranges = serve.pop("ranges", {})
    for k, v in serve.items():
        lines.append(f"{k} = {value(v)}")
    if ranges:
        lines.append("[serve.ranges]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in ranges.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class Gateway:
    """A real ``kerasguard serve`` process on a random loopback port."""

    def __init__(
        self, world: World, policy: Path, log: Path, extra: tuple[str, ...] = (), scheme: str = "http"
    ) -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.verify: Any = True
        self.log = log
        # The gateway is measured as users run it: not under the coverage tracer that `make test` starts in
        # subprocesses (it made the latency comparisons of the flood test depend on tracing overhead).
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")},
            "PYTHONPATH": str(ROOT / "src"),
            "KERAS_BACKEND": "jax",
            "KERASGUARD_STORE_TOKEN": world.admin,
            "KERASGUARD_MASTER_KEY_FILE": str(world.key_file),
        }
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kerasguard",
                "serve",
                "--store",
                str(world.root),
                "--port",
                str(self.port),
                "--policy",
                str(policy),
                *extra,
            ],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=world.folder,
        )

    def wait_ready(self, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=2, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("gateway not ready:\n" + self.log.read_text()[-3000:])

    def rss(self) -> int:
        return proc_rss(self.proc.pid)

    def children(self) -> list[int]:
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.append(int(entry.name))
        return out

    def access_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith('{"event":"request"'):
                out.append(json.loads(line))
        return out

    def log_tail(self, n: int = 40) -> str:
        lines = [line[:400] for line in self.log.read_text(errors="replace").splitlines()]
        return "\n".join(line for line in lines if not line.startswith('{"event":"request"'))[-n * 400 :]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


def start_gateway(
    world: World, name: str, serve: dict[str, Any], sandbox: dict[str, Any] | None = None
) -> Gateway:
    """A gateway on ``world`` with these ``[serve]`` (and ``[sandbox]``) settings, ready (stopped again
    if it never is)."""
    policy = write_policy(world.folder / f"{name}.toml", dict(serve), sandbox)
    gateway = Gateway(world, policy, world.folder / f"{name}.log")
    try:
        gateway.wait_ready()
    except BaseException:
        gateway.stop()
        raise
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    """Stop it, and check it exited cleanly and never answered 500."""
    gateway.stop()
    assert gateway.proc.returncode in (0, -signal.SIGINT), gateway.log.read_text()[-2000:]
    assert all(line["status"] != 500 for line in gateway.access_lines())


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def worker_pid(gw: Gateway, label: str, after: int = 0) -> int:
    """The pid of worker ``label`` (``tenant/model:version``) once it has been ready ``after + 1`` times."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [
            int(line.rsplit("pid ", 1)[1].rstrip(")"))
            for line in gw.log.read_text().splitlines()
            if line.startswith(f"worker {label} ready (pid ")
        ]
        if len(pids) > after:
            return pids[-1]
        time.sleep(0.2)
    raise AssertionError(f"no worker {label} ready")


def assert_clean(text: str) -> None:
    """No paths, digests, stack traces or library messages in an error body."""
    for marker in ("sha256:", "Traceback", "/tmp", "/work", 'File "', "numpy", "keras", "pydantic", "Errno"):
        assert marker not in text, text


def metric(gw: Gateway, name: str, **labels: str) -> float:
    """The value of one sample of the gateway's /metrics (0 when absent); labels must all match."""
    total = 0.0
    for line in httpx.get(gw.url + "/metrics", timeout=10).text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(part.split("=", 1) for part in head[len(name) :].strip("{}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total
