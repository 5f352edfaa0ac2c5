"""Sandbox start-up and per-predict overhead of two kerasguard source trees, measured side by side.

Usage:
    git archive main src | tar -x -C /tmp/kg-before
    .venv/bin/python bench/bench_sandbox_layers.py --before /tmp/kg-before/src [--reps 5] [--calls 300]

Each rep starts one fresh process per tree (interleaved, so machine load hits both alike) that spawns
a sandboxed child for a small MLP with every layer the machine offers, loads it, and times
``predict`` on one row and the bare IPC round trip (``ping``); the same process also times
``predict`` of the same model loaded in process, the baseline for the per-call overhead.
Prints a Markdown table; raw results go to ``bench/out/sandbox_layers.json``.
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
    parser.add_argument("--before", type=Path, required=True, help="src/ of the tree to compare against")
    parser.add_argument("--after", type=Path, default=ROOT / "src")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import kmodels

    OUT.mkdir(parents=True, exist_ok=True)
    model = OUT / "layers-mlp.keras"
    if not model.exists():
        kmodels.mlp().save(model)
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
