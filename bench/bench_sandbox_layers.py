"""Sandbox start-up and per-predict overhead of two kerasguard source trees, measured side by side.

Usage:
    git archive main src | tar -x -C /tmp/kg-before
    .venv/bin/python bench/bench_sandbox_layers.py --before /tmp/kg-before/src [--reps 5] [--calls 300]

Each rep starts one fresh process per tree (interleaved, so machine load hits both alike) that spawns
a sandboxed child for a small MLP with every layer the machine offers, loads it, and times
``predict`` on one row and the bare IPC round trip (``ping``); the same process also times
``predict`` of the same model loaded in process, the baseline for the per-call overhead.
Prints a Markdown table; raw results go to ``bench/out/sandbox_layers.json``.

``--ab`` instead loads the model into three children of this tree at once (every layer; without the
mount namespace; without seccomp) and times ``predict`` on them in interleaved rounds, which isolates
what each layer costs per call from the load of a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

RUN = """
import json, statistics, sys, time
import numpy as np
from kerasguard.policy import Sandbox
from kerasguard.sandbox.config import ChildLimits
from kerasguard.sandbox.launcher import spawn
from kerasguard.sandbox.model import SandboxedModel

path, calls = sys.argv[1], int(sys.argv[2])
x = np.ones((1, 8), "float32")
t0 = time.perf_counter()
child = spawn(path, ChildLimits.from_policy(Sandbox(memory_mb=2048)))
t1 = time.perf_counter()
reply, _ = child.request("load")
t2 = time.perf_counter()
model = SandboxedModel(child, reply)
for _ in range(20):
    model.predict(x)
predict, ping = [], []
for _ in range(calls):
    a = time.perf_counter(); model.predict(x); predict.append(time.perf_counter() - a)
    a = time.perf_counter(); model.ping(); ping.append(time.perf_counter() - a)
layers = sorted(child.stats.layers)
model.close()
import keras
local = keras.saving.load_model(path)
for _ in range(20):
    local.predict(x, verbose=0)
inproc = []
for _ in range(calls):
    a = time.perf_counter(); local.predict(x, verbose=0); inproc.append(time.perf_counter() - a)
med = statistics.median
print(json.dumps({"start_s": t1 - t0, "load_s": t2 - t1, "predict_s": med(predict), "ping_s": med(ping),
                  "in_process_s": med(inproc), "layers": layers}))
"""


AB = """
import statistics, sys, time
import numpy as np
from kerasguard.policy import Sandbox
from kerasguard.sandbox.config import ChildLimits, Layers
from kerasguard.sandbox.launcher import spawn
from kerasguard.sandbox.model import SandboxedModel

path, calls, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
variants = {"every layer": Layers(), "without mount-namespace": Layers(mount_namespace=False),
            "without seccomp": Layers(seccomp=False)}
x = np.ones((1, 8), "float32")
models = {}
for name, layers in variants.items():
    child = spawn(path, ChildLimits.from_policy(Sandbox(memory_mb=2048)), layers=layers)
    reply, _ = child.request("load")
    models[name] = SandboxedModel(child, reply)
    for _ in range(30):
        models[name].predict(x)
medians = {name: [] for name in variants}
for _ in range(rounds):
    for name, model in models.items():
        times = []
        for _ in range(calls):
            a = time.perf_counter(); model.predict(x); times.append(time.perf_counter() - a)
        medians[name].append(statistics.median(times))
for name, values in medians.items():
    print(f"| {name} | {statistics.median(values) * 1e3:.3f} ms | "
          + " ".join(f"{v * 1e3:.2f}" for v in values) + " |")
for model in models.values():
    model.close()
"""


def run(src: Path, model: Path, calls: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(model), str(calls)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="src/ of the tree to compare against")
    parser.add_argument("--after", type=Path, default=ROOT / "src")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--ab", action="store_true", help="per-layer cost within this tree (see above)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from support import kmodels

    OUT.mkdir(parents=True, exist_ok=True)
    model = OUT / "layers-mlp.keras"
    if not model.exists():
        kmodels.mlp().save(model)
    if args.ab:
        env = {**os.environ, "PYTHONPATH": str(args.after), "KERAS_BACKEND": "jax"}
        print("| child | predict (1 row), median of rounds | per round (ms) |")
        print("|---|---|---|")
        sys.stdout.flush()
        argv = [sys.executable, "-c", AB, str(model), str(args.calls // 2), str(args.reps * 2)]
        subprocess.run(argv, env=env, check=True)
        return 0
    if args.before is None:
        parser.error("--before is required unless --ab")
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for rep in range(args.reps):
        for name in ("before", "after"):
            results[name].append(run(getattr(args, name), model, args.calls))
            print(f"rep {rep + 1}/{args.reps} {name}: {results[name][-1]}", file=sys.stderr)
    (OUT / "sandbox_layers.json").write_text(json.dumps(results, indent=1))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(
        "| tree | layers | start (spawn to ready) | load | predict (1 row) | in process | added/call | ping |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("before", "after"):
        added = med(name, "predict_s") - med(name, "in_process_s")
        print(
            f"| {name} | {len(results[name][0]['layers'])}: {', '.join(results[name][0]['layers'])} "
            f"| {med(name, 'start_s'):.2f} s | {med(name, 'load_s'):.2f} s "
            f"| {med(name, 'predict_s') * 1e3:.3f} ms | {med(name, 'in_process_s') * 1e3:.3f} ms "
            f"| {added * 1e3:.3f} ms | {med(name, 'ping_s') * 1e6:.0f} µs |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
