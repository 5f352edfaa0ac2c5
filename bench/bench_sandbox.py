"""Sandbox cost: time to first prediction and per-call overhead, against in-process Keras.

Usage:
    .venv/bin/python bench/bench_sandbox.py [--reps 3] [--calls 300] [--big-units 2896]

Builds a small MLP (tests/support/kmodels.py) and a ~100 MB dense model with real Keras, then measures, with
runs of the two modes interleaved so machine load hits them alike:

* cold time to first prediction: a fresh interpreter runs either ``keras.saving.load_model`` +
  ``predict`` or ``kerasguard.load_model`` (private copy + SHA-256 digest check + sandboxed child) +
  ``predict``; timed from interpreter start to the first result;
* warm time to first prediction: the same from a process that already imported keras / kerasguard;
* per-call overhead once loaded: median ``predict`` latency on a one-row input, in process and through
  the sandbox, plus the bare IPC round trip (``ping``).

The static scan is switched off for the sandboxed runs (``allow_unsafe_skip_scan``) so that the numbers
isolate the sandbox; the scan's own cost is timed separately (see bench_scan.py). Raw results:
``bench/out/sandbox.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

OUT = ROOT / "bench" / "out"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}

IN_PROCESS = """
import time, sys
t0 = time.perf_counter()
import numpy as np, keras
m = keras.saving.load_model(sys.argv[1])
y = m.predict(np.ones((1,) + tuple(m.inputs[0].shape[1:]), "float32"), verbose=0)
print(time.perf_counter() - t0)
"""

SANDBOXED = """
import time, sys
t0 = time.perf_counter()
import numpy as np, kerasguard
from kerasguard.policy import policy_from_mapping
policy = policy_from_mapping({"trust": {"allow_unsafe_skip_scan": True}}, source="bench")
with kerasguard.load_model(sys.argv[1], policy=policy, digest=sys.argv[2]) as m:
    y = m.predict(np.ones((1,) + tuple(d or 1 for d in m.input_spec[0].shape[1:]), "float32"))
    print(time.perf_counter() - t0, m.event["peak_rss_bytes"])
"""


def build(folder: Path, big_units: int) -> dict[str, Path]:
    from support import kmodels

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"mlp": folder / "mlp.keras", "dense-100MB": folder / "big.keras"}
    if not paths["mlp"].exists():
        kmodels.mlp().save(paths["mlp"])
    if not paths["dense-100MB"].exists():
        kmodels.big_dense(units=big_units, layers=3).save(paths["dense-100MB"])
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cold(paths: dict[str, Path], reps: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for name, path in paths.items():
        runs: dict[str, list[float]] = {"in_process": [], "sandbox": [], "child_peak_rss_mb": []}
        digest = sha256(path)
        for _ in range(reps):
            cmd = [sys.executable, "-c", IN_PROCESS, str(path)]
            done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True)
            runs["in_process"].append(float(done.stdout.split()[-1]))
            done = subprocess.run(
                [sys.executable, "-c", SANDBOXED, str(path), digest],
                env=ENV,
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed, peak = done.stdout.split()[-2:]
            runs["sandbox"].append(float(elapsed))
            runs["child_peak_rss_mb"].append(int(peak) / 2**20)
        out[name] = runs
    return out


def warm(paths: dict[str, Path], reps: int, calls: int) -> dict[str, dict[str, Any]]:
    import keras
    import numpy as np

    import kerasguard
    from kerasguard.policy import policy_from_mapping

    policy = policy_from_mapping({"trust": {"allow_unsafe_skip_scan": True}}, source="bench")
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        digest = sha256(path)
        first: dict[str, list[float]] = {"in_process": [], "sandbox": []}
        for _ in range(reps):
            t0 = time.perf_counter()
            model = keras.saving.load_model(path)
            x = np.ones((1, *model.inputs[0].shape[1:]), "float32")
            model.predict(x, verbose=0)
            first["in_process"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with kerasguard.load_model(path, policy=policy, digest=digest) as sandboxed:
                sandboxed.predict(x)
                first["sandbox"].append(time.perf_counter() - t0)
        with kerasguard.load_model(path, policy=policy, digest=digest) as sandboxed:
            per_call = {"in_process": [], "sandbox": [], "ipc_ping": []}
            for _ in range(10):  # warm both paths (tracing, caches)
                model.predict(x, verbose=0)
                sandboxed.predict(x)
            for _ in range(calls):  # interleaved
                t0 = time.perf_counter()
                model.predict(x, verbose=0)
                t1 = time.perf_counter()
                sandboxed.predict(x)
                t2 = time.perf_counter()
                sandboxed.ping()
                t3 = time.perf_counter()
                per_call["in_process"].append(t1 - t0)
                per_call["sandbox"].append(t2 - t1)
                per_call["ipc_ping"].append(t3 - t2)
        out[name] = {"first_prediction": first, "per_call": per_call, "size_bytes": path.stat().st_size}
    return out


def med(values: list[float]) -> float:
    return statistics.median(values)


def report(cold_runs: dict[str, Any], warm_runs: dict[str, Any]) -> str:
    lines = [
        "| model | file | cold: in-process | cold: sandbox | warm: in-process | warm: sandbox "
        "| child peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in cold_runs:
        c, w = cold_runs[name], warm_runs[name]
        first = w["first_prediction"]
        cells = [
            name,
            f"{w['size_bytes'] / 1e6:.2f} MB",
            f"{med(c['in_process']):.2f} s",
            f"{med(c['sandbox']):.2f} s",
            f"{med(first['in_process']):.2f} s",
            f"{med(first['sandbox']):.2f} s",
            f"{med(c['child_peak_rss_mb']):.0f} MiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | predict in process (median) | predict in sandbox (median) | added per call | IPC ping |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in warm_runs:
        p = warm_runs[name]["per_call"]
        added = med(p["sandbox"]) - med(p["in_process"])
        lines.append(
            f"| {name} | {med(p['in_process']) * 1e3:.2f} ms | {med(p['sandbox']) * 1e3:.2f} ms "
            f"| {added * 1e3:+.2f} ms | {med(p['ipc_ping']) * 1e3:.3f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--big-units", type=int, default=2896, help="3 x units^2 float32 weights (~100 MB)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    paths = build(OUT / "sandbox-models", args.big_units)
    load = os.getloadavg()[0]
    cold_runs = cold(paths, args.reps)
    warm_runs = warm(paths, args.reps, args.calls)
    doc = {"load_average": load, "reps": args.reps, "calls": args.calls, "cold": cold_runs, "warm": warm_runs}
    (OUT / "sandbox.json").write_text(json.dumps(doc, indent=1))
    print(f"load average at start: {load:.1f}")
    print(report(cold_runs, warm_runs))


if __name__ == "__main__":
    main()
