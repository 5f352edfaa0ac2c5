"""Gateway benchmark: kerasguard serve (keys, validation, Redis limits, sandbox, batching) against a
minimal FastAPI endpoint that calls ``model.predict`` in process with no checks.

Usage:
    PYTHONPATH=src KERAS_BACKEND=jax .venv/bin/python bench/bench_serve.py \
        [--seconds 8] [--rounds 4] [--limits redis|memory] [--profile mlp|cnn] [--detectors]

Two models (a digits-sized MLP, a mid-size CNN on 32x32x3), concurrency 1 and 32, one load-generator
process (asyncio streams: a minimal keep-alive HTTP/1.1 client, far cheaper than httpx, which limited
both servers at concurrency 32; one request = one instance, JSON ``{"instances": [...]}``) against both
servers in the same run, in alternating rounds so that both see the same machine load. Reports
requests/s, p50/p99 latency and the peak RSS of each sandboxed tenant worker (VmHWM). Needs Redis on
127.0.0.1:6379. Raw results: bench/out/serve-<limits>.json. ``--profile MODEL`` instead runs the gateway
under cProfile for one load on that model (``--profile-concurrency``, default 1) and prints where its
event loop spends time (the child's predict runs in a worker thread and shows up as waiting).
``--detectors`` instead measures what attached input detectors cost the gateway: each model is served
three times by one gateway, without a detector, with one of the feature kinds (mahalanobis, max-softmax,
energy) and with those plus feature squeezing, all loaded in alternating rounds at concurrency 1 and 32
(raw results: bench/out/serve-detectors.json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SOURCE = "https://models.example.test/bench"

MINIMAL = """
import sys, numpy as np, keras
from fastapi import FastAPI, Request
from fastapi.responses import Response
import json
model = keras.saving.load_model(sys.argv[1])
app = FastAPI()
@app.post("/predict")
async def predict(body: dict) -> Response:  # on the event loop: Keras predict is not thread-safe
    y = model.predict(np.asarray(body["instances"], dtype="float32"), verbose=0)
    return Response(json.dumps({"predictions": y.tolist()}), media_type="application/json")
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

LOADGEN = """
import asyncio, json, sys, time
from urllib.parse import urlsplit
url, key, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
conc, seconds = int(sys.argv[4]), float(sys.argv[5])
u = urlsplit(url)
head = f"POST {u.path} HTTP/1.1\\r\\nHost: {u.netloc}\\r\\ncontent-type: application/json\\r\\n"
if key:
    head += f"authorization: Bearer {key}\\r\\n"
request = (head + f"content-length: {len(body)}\\r\\n\\r\\n").encode() + body

async def one(reader, writer):
    # a minimal HTTP/1.1 keep-alive client: the load generator must cost less than the servers
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\\r\\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status

async def worker(lat, codes, stop):
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    while time.monotonic() < stop:
        t = time.perf_counter()
        try:
            code = await one(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            code = type(exc).__name__
            writer.close()
            reader, writer = await asyncio.open_connection(u.hostname, u.port)
        lat.append(time.perf_counter() - t)
        codes[code] = codes.get(code, 0) + 1
    writer.close()

async def main():
    warm = time.monotonic() + 0.3
    await asyncio.gather(*(worker([], {}, warm) for _ in range(conc)))
    lat, codes = [], {}
    start = time.monotonic()
    await asyncio.gather(*(worker(lat, codes, start + seconds) for _ in range(conc)))
    elapsed = time.monotonic() - start
    print(json.dumps({"lat": lat, "elapsed": elapsed, "codes": codes}))

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(folder: Path) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    mlp = keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="mlp",
    )
    cnn = keras.Sequential(
        [
            keras.Input((32, 32, 3), name="image"),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(128, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="cnn",
    )
    out = {}
    for model in (mlp, cnn):
        out[model.name] = folder / f"{model.name}.keras"
        model.save(out[model.name])
        print(f"{model.name}: {model.count_params()} parameters", flush=True)
    return out


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not ready: {url}")


def gateway(
    folder: Path,
    models: dict[str, Path],
    storage: str,
    profile: Path | None = None,
    detectors: dict[str, Path] | None = None,
) -> tuple[subprocess.Popen[bytes], int, str]:
    """A gateway serving ``models`` (tenant ``bench``); a name in ``detectors`` is pushed with that
    detector folder attached."""
    from kerasguard.attach import detector as attach_detector
    from kerasguard.policy import Policy, Store
    from kerasguard.store import ModelStore
    from kerasguard.store.keys import write_key_file

    master = write_key_file(folder / "master.key")
    store, admin = ModelStore.init(folder / "store", master, policy=Policy(store=Store(sources=(SOURCE,))))
    with store:
        pub = store.create_token(admin, "publisher", "bench", "ci")
        for name, path in models.items():
            attached = None
            if detectors and name in detectors:
                attached = [attach_detector(detectors[name], model_sha256=None, max_bytes=32 << 20)]
            info = store.push(
                pub, path, name=name, version="1", source=f"{SOURCE}/{name}", attachments=attached
            )
            assert info.status == "admitted", info.reason
            store.promote(pub, name, "1", "production")
        key = store.create_token(admin, "invoker", "bench", "loadgen")
    policy = folder / "serve.toml"
    policy.write_text(
        f'[store]\nsources = ["{SOURCE}"]\n[serve]\nnamespaces = ["bench"]\n'
        f'rate_limit_storage = "{storage}"\n'
        "key_requests_per_second = 100000\ntenant_requests_per_second = 100000\n"
        "max_batch = 64\nbatch_wait_ms = 2.0\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "KERAS_BACKEND": "jax",
        "KERASGUARD_STORE_TOKEN": admin,
        "KERASGUARD_MASTER_KEY_FILE": str(folder / "master.key"),
    }
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    proc = subprocess.Popen(
        [
            sys.executable,
            *profiler,
            "-m",
            "kerasguard",
            "serve",
            "--store",
            str(folder / "store"),
            "--port",
            str(port),
            "--policy",
            str(policy),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "gateway.log").open("wb"),
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, port, key


def children_peak_rss(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            continue
    return out


def load(url: str, key: str, body: str, concurrency: int, seconds: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", LOADGEN, url, key, body, str(concurrency), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(x for p in parts for x in p["lat"])
    codes: dict[str, int] = {}
    for p in parts:
        for code, n in p["codes"].items():
            codes[code] = codes.get(code, 0) + n
    return {
        "rps": len(lat) / sum(p["elapsed"] for p in parts),
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "n": len(lat),
        "codes": codes,
    }


def figures(row: dict[str, Any]) -> str:
    """One run's figures as the benchmark prints them."""
    latency = f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms"
    return f"{row['rps']:8.1f} req/s  {latency}  codes {row['codes']}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="per model, concurrency and target")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds the seconds are split into")
    parser.add_argument("--limits", choices=["redis", "memory"], default="redis", help="rate-limit storage")
    parser.add_argument("--profile", choices=["mlp", "cnn"], help="cProfile the gateway on this model")
    parser.add_argument("--profile-concurrency", type=int, default=1, help="concurrency of --profile")
    parser.add_argument("--detectors", action="store_true", help="measure what attached detectors cost")
    args = parser.parse_args()
    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="kg-bench-serve-"))
    models = build(folder)
    bodies = {
        "mlp": json.dumps({"instances": np.random.default_rng(0).uniform(0, 1, (1, 64)).tolist()}),
        "cnn": json.dumps({"instances": np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).tolist()}),
    }
    storage = "redis://127.0.0.1:6379/0" if args.limits == "redis" else "memory://"
    if args.detectors:
        detector_cost(folder, models, storage, bodies, args.seconds, args.rounds)
        return
    if args.profile:
        profile(
            folder,
            models,
            storage,
            args.profile,
            bodies[args.profile],
            args.seconds,
            args.profile_concurrency,
        )
        return
    gw, gw_port, key = gateway(folder, models, storage)
    results: list[dict[str, Any]] = []
    try:
        for name, path in models.items():
            port = free_port()
            minimal = subprocess.Popen(
                [sys.executable, "-c", MINIMAL, str(path), str(port)],
                env={**os.environ, "KERAS_BACKEND": "jax"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/docs", minimal)
                for concurrency in (1, 32):
                    targets = {
                        "minimal": (f"http://127.0.0.1:{port}/predict", ""),
                        "kerasguard": (f"http://127.0.0.1:{gw_port}/v1/models/{name}:predict", key),
                    }
                    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                    for _ in range(args.rounds):  # alternate, so both see the same machine load
                        for target, (url, k) in targets.items():
                            runs[target].append(
                                load(url, k, bodies[name], concurrency, args.seconds / args.rounds)
                            )
                    for target, parts in runs.items():
                        row = {
                            "model": name,
                            "concurrency": concurrency,
                            "target": target,
                            **summarize(parts),
                        }
                        results.append(row)
                        print(f"{name:4} c={concurrency:<3} {target:10} {figures(row)}", flush=True)
            finally:
                minimal.send_signal(signal.SIGINT)
                minimal.wait(20)
        peaks = children_peak_rss(gw.pid)
        print("peak RSS per tenant worker (MiB):", [round(p / 2**20) for p in peaks])
    finally:
        gw.send_signal(signal.SIGINT)
        gw.wait(30)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / f"serve-{args.limits}.json").write_text(
        json.dumps({"runs": results, "worker_peak_rss": peaks}, indent=1)
    )


# the detector kinds of each served copy of a model ("" = no detector attached)
DETECTOR_KINDS = {
    "": (),
    "features": ("mahalanobis", "max-softmax", "energy"),
    "squeeze": ("mahalanobis", "max-softmax", "energy", "squeeze"),
}


def fitted(folder: Path, path: Path, kinds: tuple[str, ...]) -> Path:
    """A detector of ``kinds`` fitted on the model at ``path`` (random reference data: only its cost is
    measured here), saved as a folder."""
    import hashlib

    import keras
    import numpy as np

    from kerasguard.robustness.data import Dataset
    from kerasguard.robustness.detector_files import save_detectors
    from kerasguard.robustness.detectors import fit_detectors

    model = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (600, *model.inputs[0].shape[1:])).astype("float32")
    y = np.arange(600) % 10
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    detectors = fit_detectors(model, Dataset(x, y, 0.0, 1.0), kinds=kinds, model_sha256=sha)
    return save_detectors(detectors, folder / f"{path.stem}-{'+'.join(kinds)}")


def detector_cost(
    folder: Path, models: dict[str, Path], storage: str, bodies: dict[str, str], seconds: float, rounds: int
) -> None:
    served: dict[str, Path] = {}
    detectors: dict[str, Path] = {}
    for base, path in models.items():
        for label, kinds in DETECTOR_KINDS.items():
            name = f"{base}-{label}" if label else base
            served[name] = path
            if kinds:
                detectors[name] = fitted(folder, path, kinds)
    gw, port, key = gateway(folder, served, storage, detectors=detectors)
    results: list[dict[str, Any]] = []
    try:
        for base in models:
            for concurrency in (1, 32):
                names = [f"{base}-{label}" if label else base for label in DETECTOR_KINDS]
                runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
                for _ in range(rounds):  # alternate, so every copy sees the same machine load
                    for name in names:
                        url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
                        runs[name].append(load(url, key, bodies[base], concurrency, seconds / rounds))
                plain = summarize(runs[base])["rps"]
                for name, parts in runs.items():
                    row = {"model": name, "concurrency": concurrency, **summarize(parts)}
                    row["vs_plain"] = row["rps"] / plain
                    results.append(row)
                    print(
                        f"{name:14} c={concurrency:<3} {figures(row)} ({row['vs_plain']:.2f}x plain)",
                        flush=True,
                    )
    finally:
        gw.send_signal(signal.SIGINT)
        gw.wait(30)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "serve-detectors.json").write_text(json.dumps({"runs": results}, indent=1))


def profile(
    folder: Path,
    models: dict[str, Path],
    storage: str,
    name: str,
    body: str,
    seconds: float,
    concurrency: int,
) -> None:
    import pstats

    out = folder / "gateway.prof"
    gw, port, key = gateway(folder, models, storage, profile=out)
    try:
        url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
        load(url, key, body, concurrency, 2.0)  # warm
        row = summarize([load(url, key, body, concurrency, seconds)])
        print(f"{name} c={concurrency} under cProfile: {row['rps']:.1f} req/s, p50 {row['p50_ms']:.2f} ms")
    finally:
        gw.send_signal(signal.SIGINT)
        gw.wait(60)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
