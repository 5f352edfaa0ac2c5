"""Real architectures: per-file scan time of ten keras.applications models against h5py's own walk.

Usage:
    KERAS_BACKEND=jax python bench/bench_applications.py [--reps 5] [--rounds 3] [--before-src DIR]

Builds MobileNetV2, NASNetMobile, ResNet50, EfficientNetB0, DenseNet121, InceptionV3, Xception, VGG16,
ConvNeXtTiny and MobileNetV3Small with ``weights=None`` and saves them as ``.keras`` into a cache folder
(``bench/out/applications``, never committed). In the same run, interleaved by rounds, it times in fresh
processes: ``kerasguard.scan`` in-process on each file (this tree's ``src``, and ``--before-src`` if given,
e.g. the base commit exported with ``git archive``), and h5py's own metadata walk of the same weights file
(``File.visititems`` reading each object's kind, shape, dtype and attribute names), the floor the issue set:
the goal is a scan at most 0.5x that walk. Each timing is taken as wall-clock time and as the process's
CPU time (``time.process_time``): on a shared, loaded machine the CPU times are the steadier comparison.
It also checks that the scanner's whole-model parameter count (``formats/keras_graph.py``, KG505) equals
``model.count_params()``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "out" / "applications"
ARCHITECTURES = (
    "MobileNetV2",
    "NASNetMobile",
    "ResNet50",
    "EfficientNetB0",
    "DenseNet121",
    "InceptionV3",
    "Xception",
    "VGG16",
    "ConvNeXtTiny",
    "MobileNetV3Small",
)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"KERAS_BACKEND": "jax"}

SCAN_TIMER = """
import json, statistics, sys, time
from kerasguard.scanning.engine import scan
reps, files = int(sys.argv[1]), sys.argv[2:]
out = {}
for f in files:
    report = scan(f)  # warm: imports, advisory database, allowlist
    assert report.files[0].complete, report.files[0]
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time(); scan(f)
        times.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
    out[f] = [statistics.median(times), [x.rule_id for x in report.findings], statistics.median(cpu)]
print(json.dumps(out))
"""

H5PY_TIMER = """
import json, statistics, sys, time
import h5py
reps, files = int(sys.argv[1]), sys.argv[2:]
def walk(path):
    seen = []
    def visit(name, obj):
        seen.append((name, type(obj).__name__, getattr(obj, "shape", None), str(getattr(obj, "dtype", "")),
                     list(obj.attrs.keys())))
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return len(seen)
out = {}
for f in files:
    walk(f)
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time(); n = walk(f)
        times.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
    out[f] = [statistics.median(times), n, statistics.median(cpu)]
print(json.dumps(out))
"""


def build(cache: Path) -> dict[str, dict[str, object]]:
    """Save each architecture once; return its facts (parameters, groups, config size)."""
    cache.mkdir(parents=True, exist_ok=True)
    facts_file = cache / "facts.json"
    facts: dict[str, dict[str, object]] = json.loads(facts_file.read_text()) if facts_file.exists() else {}
    missing = [a for a in ARCHITECTURES if a not in facts or not (cache / f"{a}.keras").exists()]
    if missing:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        for arch in missing:
            model = getattr(keras.applications, arch)(weights=None)
            path = cache / f"{arch}.keras"
            model.save(path)
            facts[arch] = {"params": int(model.count_params())}
            keras.backend.clear_session()
    for arch in ARCHITECTURES:
        path = cache / f"{arch}.keras"
        weights = cache / f"{arch}.weights.h5"
        with zipfile.ZipFile(path) as zf:
            if not weights.exists():
                weights.write_bytes(zf.read("model.weights.h5"))
            config = zf.read("config.json")
        facts[arch]["config_kb"] = round(len(config) / 1024)
        facts[arch]["file_mb"] = round(path.stat().st_size / 2**20, 1)
    facts_file.write_text(json.dumps(facts, indent=1))
    return facts


def timed(code: str, files: list[str], reps: int, src: Path | None) -> dict[str, list[object]]:
    env = dict(ENV)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run(
        [sys.executable, "-c", code, str(reps), *files], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5, help="timings per file per round (median)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median of rounds)")
    parser.add_argument("--before-src", type=Path, default=None, help="a src/ tree to time beside this one")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from kerasguard.formats.keras_graph import estimate

    facts = build(args.cache)
    keras_files = [str(args.cache / f"{a}.keras") for a in ARCHITECTURES]
    weight_files = [str(args.cache / f"{a}.weights.h5") for a in ARCHITECTURES]
    tools: dict[str, tuple[str, list[str], Path | None]] = {"h5py walk": (H5PY_TIMER, weight_files, None)}
    if args.before_src is not None:
        tools["before"] = (SCAN_TIMER, keras_files, args.before_src.resolve())
    tools["after"] = (SCAN_TIMER, keras_files, ROOT / "src")
    rounds: dict[str, list[dict[str, list[object]]]] = {name: [] for name in tools}
    for _ in range(args.rounds):
        for name, (code, files, src) in tools.items():
            rounds[name].append(timed(code, files, args.reps, src))

    def ms(name: str, index: int, field: int = 0) -> float:
        files = tools[name][1]
        return 1000 * statistics.median(float(r[files[index]][field]) for r in rounds[name])  # type: ignore[arg-type]

    head = "| architecture | file MB | config KB | HDF5 objects | params (Keras = KG505) | h5py walk ms |"
    head += " before ms |" if args.before_src else ""
    head += " after ms | after / h5py | h5py walk CPU ms |"
    head += " before CPU ms |" if args.before_src else ""
    head += " after CPU ms | after / h5py, CPU | findings |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, arch in enumerate(ARCHITECTURES):
        config = json.loads(zipfile.ZipFile(keras_files[i]).read("config.json"))
        found = estimate(config)
        counted = found.elements if found else None
        params = facts[arch]["params"]
        objects = rounds["h5py walk"][0][weight_files[i]][1]
        walk = ms("h5py walk", i)
        after = ms("after", i)
        findings = rounds["after"][0][keras_files[i]][1]
        row = (
            f"| {arch} | {facts[arch]['file_mb']} | {facts[arch]['config_kb']} | {objects} "
            f"| {params:,} {'=' if counted == params else '!= ' + str(counted)} | {walk:.1f} |"
        )
        if args.before_src:
            row += f" {ms('before', i):.1f} |"
        row += f" {after:.1f} | {after / walk:.2f}x |"
        walk_cpu, after_cpu = ms("h5py walk", i, 2), ms("after", i, 2)
        row += f" {walk_cpu:.1f} |" + (f" {ms('before', i, 2):.1f} |" if args.before_src else "")
        row += f" {after_cpu:.1f} | {after_cpu / walk_cpu:.2f}x | {', '.join(findings) or 'clean'} |"  # type: ignore[arg-type]
        lines.append(row)
    text = "\n".join(lines)
    print(text)
    (args.cache / "results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
