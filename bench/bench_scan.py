"""Scan benchmark: kerasguard against modelscan and ModelAudit on the same generated corpus, one run.

Usage (after `make setup` and `make bench-peers`):
    .venv/bin/python bench/bench_scan.py [--reps 3] [--big-gib 2]

Builds benign models (tests/support/kmodels.py) and attacks (tests/support/attacks.py) with real Keras, runs
each tool once per repetition over the same folder (whole CLI invocations, startup included), and reports
files/second and per-file detections. "Detected" means: kerasguard a finding at or above high (its default
gate); modelscan any issue; ModelAudit an issue of severity warning or critical. Also times kerasguard.scan
on a 2 MiB and a 2 GiB .keras (stored members) to show that scan cost follows metadata, not weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("KERAS_BACKEND", "jax")

OUT = ROOT / "bench" / "out"
PEERS = ROOT / ".venv-peers" / "bin"
KG = ROOT / ".venv" / "bin" / "kerasguard"
# Every tool runs from compiled bytecode, as an installed package does (the peers' site-packages hold .pyc
# files; a shell with PYTHONDONTWRITEBYTECODE=1 would make kerasguard recompile itself on every run).
QUIET_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "NO_COLOR": "1",
}


def build_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; returns file name -> 'benign' or the attack name."""
    from support import attacks, kmodels

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    labels: dict[str, str] = {}
    for name, builder in kmodels.BENIGN.items():
        model = builder()
        model.save(folder / f"benign_{name}.keras")
        labels[f"benign_{name}.keras"] = "benign"
        model.save(folder / f"benign_{name}.h5")
        labels[f"benign_{name}.h5"] = "benign"
    base = folder / "benign_mlp.keras"
    for name, (build, _rules) in attacks.KERAS_ATTACKS.items():
        build(base, folder / f"attack_{name}.keras")
        labels[f"attack_{name}.keras"] = name
    attacks.legacy_h5_lambda(folder / "benign_mlp.h5", folder / "attack_legacy_h5_lambda.h5")
    labels["attack_legacy_h5_lambda.h5"] = "legacy_h5_lambda"
    return labels


def existing_labels(folder: Path) -> dict[str, str]:
    """Labels of a corpus written by an earlier run (file names carry them)."""
    return {
        p.name: "benign" if p.name.startswith("benign_") else p.stem.removeprefix("attack_")
        for p in sorted(folder.iterdir())
    }


def load_report(report: Path) -> dict[str, Any]:
    """A tool's JSON report; an empty folder may leave none."""
    try:
        doc: dict[str, Any] = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    return doc


def kerasguard_command(src: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The installed CLI, or ``python -m kerasguard`` from a source tree (``--compare-src``, a worktree)."""
    if src is None and KG.exists():
        return [str(KG)], QUIET_ENV
    return [sys.executable, "-m", "kerasguard"], {**QUIET_ENV, "PYTHONPATH": str(src or ROOT / "src")}


def run_kerasguard(folder: Path, report: Path, *extra: str, src: Path | None = None) -> dict[str, bool]:
    """Default options: ``--jobs auto`` (one worker per CPU from 8 files on)."""
    command, env = kerasguard_command(src)
    subprocess.run([*command, "scan", str(folder), "--format", "json", "-o", str(report), *extra], env=env)
    doc = load_report(report)
    high = {"high", "critical"}
    files = doc.get("files", [])
    return {Path(f["path"]).name: any(x["severity"] in high for x in f["findings"]) for f in files}


def run_modelscan(folder: Path, report: Path) -> dict[str, bool]:
    subprocess.run(
        [str(PEERS / "modelscan"), "-p", str(folder), "-r", "json", "-o", str(report)],
        env=QUIET_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    doc = load_report(report)
    hits: dict[str, bool] = {}
    for issue in doc.get("issues", []):
        hits[issue["source"].split(":")[0]] = True
    return hits


def run_modelaudit(folder: Path, report: Path) -> dict[str, bool]:
    subprocess.run(
        [str(PEERS / "modelaudit"), "scan", str(folder), "--format", "json", "--no-cache", "-o", str(report)],
        env=QUIET_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    doc = load_report(report)
    hits: dict[str, bool] = {}
    for issue in doc.get("issues", []):
        if issue.get("severity") in ("critical", "warning", "error"):
            where = Path(str(issue.get("location", "")).split(":")[0]).name
            hits[where] = True
    return hits


def run_kerasguard_one_process(folder: Path, report: Path) -> dict[str, bool]:
    return run_kerasguard(folder, report, "--jobs", "1")


TOOLS = {
    "kerasguard": run_kerasguard,
    "kerasguard --jobs 1": run_kerasguard_one_process,
    "modelscan": run_modelscan,
    "modelaudit": run_modelaudit,
}


def time_tool(name: str, folder: Path, reps: int) -> tuple[float, dict[str, bool]]:
    runner = TOOLS[name]
    times = []
    hits: dict[str, bool] = {}
    for i in range(reps):
        started = time.perf_counter()
        hits = runner(folder, OUT / f"{name.replace(' ', '')}-{i}.json")
        times.append(time.perf_counter() - started)
    return statistics.median(times), hits


def compare(folder: Path, empty: Path, reps: int) -> list[str]:
    """``--compare-src``: the two trees alternate in every round, so load changes hit both alike."""
    names = ["kerasguard before --jobs 1", "kerasguard after --jobs 1"]
    times: dict[str, dict[str, list[float]]] = {n: {"empty": [], "keras": []} for n in names}
    for i in range(reps):
        for name in names if i % 2 == 0 else reversed(names):
            for which, target in (("empty", empty), ("keras", folder)):
                started = time.perf_counter()
                TOOLS[name](target, OUT / "compare.json")
                times[name][which].append(time.perf_counter() - started)
    n = sum(1 for _ in folder.iterdir())
    out = ["| tree | startup s | whole run s | files/s after startup |", "|---|---|---|---|"]
    for name in names:
        start, whole = statistics.median(times[name]["empty"]), statistics.median(times[name]["keras"])
        out.append(f"| {name} | {start:.2f} | {whole:.2f} | {n / max(whole - start, 1e-3):.1f} |")
    return out


def sweep(corpus: Path, labels: dict[str, str], copies: list[int], reps: int) -> list[str]:
    """files/s of kerasguard and modelscan at several sizes of the .keras set, runs interleaved.

    At each size every tool runs once per round, rounds repeated ``reps`` times (median), so a change
    of machine load hits all tools alike. One file is the pre-commit case; larger sets show each tool's
    cost per file once its start-up is paid (the slope between the two largest sizes).
    """
    tools = ["kerasguard", "kerasguard --jobs 1"] + (["modelscan"] if (PEERS / "modelscan").exists() else [])
    keras_names = sorted(n for n in labels if n.endswith(".keras"))
    sizes: list[tuple[str, Path, int]] = []
    single = OUT / "sweep_single"
    shutil.rmtree(single, ignore_errors=True)
    single.mkdir()
    shutil.copyfile(corpus / "benign_cnn.keras", single / "benign_cnn.keras")
    sizes.append(("1 file (benign_cnn)", single, 1))
    for n in copies:
        folder = OUT / f"sweep_{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(n):
            for name in keras_names:
                os.link(corpus / name, folder / f"{i:03d}_{name}")
        count = n * len(keras_names)
        sizes.append((f"{count} files ({n} x {len(keras_names)})", folder, count))
    seconds: dict[tuple[str, str], float] = {}
    for label, folder, _count in sizes:
        samples: dict[str, list[float]] = {t: [] for t in tools}
        for _ in range(reps):
            for tool in tools:
                started = time.perf_counter()
                TOOLS[tool](folder, OUT / "sweep-report.json")
                samples[tool].append(time.perf_counter() - started)
        for tool in tools:
            seconds[(label, tool)] = statistics.median(samples[tool])
    head = "| .keras set | " + " | ".join(f"{t} s (files/s)" for t in tools)
    lines = [head + " | kerasguard / modelscan |" if "modelscan" in tools else head + " |"]
    lines.append("|---" * (len(tools) + 1 + ("modelscan" in tools)) + "|")
    for label, _folder, count in sizes:
        cells = [f"{seconds[(label, t)]:.2f} ({count / seconds[(label, t)]:.0f})" for t in tools]
        if "modelscan" in tools:
            cells.append(f"{seconds[(label, 'modelscan')] / seconds[(label, 'kerasguard')]:.1f}x")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(sizes) >= 3:
        (la, _fa, ca), (lb, _fb, cb) = sizes[-2], sizes[-1]
        slopes = [f"{t} {(seconds[(lb, t)] - seconds[(la, t)]) / (cb - ca) * 1000:.2f}" for t in tools]
        lines += ["", f"ms per extra file ({ca} -> {cb} files): " + ", ".join(slopes)]
    return lines


def big_vs_small(gib: float) -> tuple[float, float]:
    """Median in-process kerasguard.scan time of a ~2 MiB and a ~`gib` GiB .keras (real Keras saves)."""
    import keras

    from kerasguard import scan

    def make(path: Path, units: int, inputs: int) -> None:
        if not path.exists():
            keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(units)]).save(path)

    small, big = OUT / "small.keras", OUT / "big.keras"
    make(small, 512, 1024)  # 2 MiB kernel
    side = int((gib * 2**30 / 4) ** 0.5)
    make(big, side, side)
    results = []
    for path in (small, big):
        scan(path)  # warm the HDF5 worker and the page cache
        samples = []
        for _ in range(7):
            t0 = time.perf_counter()
            report = scan(path)
            samples.append(time.perf_counter() - t0)
        assert report.complete, report.to_dict()
        results.append(statistics.median(samples))
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-gib", type=float, default=2.0)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--reuse-corpus", action="store_true", help="keep bench/out/corpus")
    parser.add_argument("--copies", type=int, default=10, help="copies of each .keras file for throughput")
    parser.add_argument(
        "--sweep",
        type=lambda v: [int(x) for x in v.split(",")],
        default=None,
        metavar="N,N,...",
        help="also time kerasguard and modelscan on 1 file and on N copies of the .keras set (e.g. 1,5,50)",
    )
    parser.add_argument(
        "--compare-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time the source tree DIR (e.g. the base commit's src/) beside this one, --jobs 1",
    )
    args = parser.parse_args()
    if args.compare_src is not None:
        before = args.compare_src.resolve()
        TOOLS["kerasguard before --jobs 1"] = lambda f, r: run_kerasguard(f, r, "--jobs", "1", src=before)
        TOOLS["kerasguard after --jobs 1"] = lambda f, r: run_kerasguard(
            f, r, "--jobs", "1", src=ROOT / "src"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    for tree in [ROOT / "src"] + ([args.compare_src] if args.compare_src else []):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True, env=QUIET_ENV)
    corpus = OUT / "corpus"
    labels = existing_labels(corpus) if args.reuse_corpus and corpus.is_dir() else build_corpus(corpus)
    keras_only = OUT / "corpus_keras"
    shutil.rmtree(keras_only, ignore_errors=True)
    keras_only.mkdir()
    for name in labels:
        if name.endswith(".keras"):
            for i in range(args.copies):
                shutil.copyfile(corpus / name, keras_only / f"{i:03d}_{name}")
    n_keras = sum(1 for n in labels if n.endswith(".keras")) * args.copies
    available = [t for t in TOOLS if t.startswith("kerasguard") or (PEERS / t).exists()]
    lines = [
        f"corpus: {len(labels)} files; throughput set: {n_keras} .keras files ({args.copies} copies each); "
        f"reps={args.reps}; median wall-clock of whole CLI runs (startup included)",
        "",
    ]
    lines += [
        "| tool | startup s | .keras files/s | .keras files/s after startup | all files/s "
        "| attacks detected | benign flagged |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    empty = OUT / "empty"
    empty.mkdir(exist_ok=True)
    detections: dict[str, dict[str, bool]] = {}
    for tool in available:
        t_empty, _ = time_tool(tool, empty, args.reps)
        t_keras, _ = time_tool(tool, keras_only, args.reps)
        t_all, hits = time_tool(tool, corpus, args.reps)
        detections[tool] = hits
        attacks_total = sum(1 for v in labels.values() if v != "benign")
        caught = sum(1 for n, v in labels.items() if v != "benign" and hits.get(n))
        fp = sum(1 for n, v in labels.items() if v == "benign" and hits.get(n))
        benign_total = len(labels) - attacks_total
        lines.append(
            f"| {tool} | {t_empty:.2f} | {n_keras / t_keras:.1f} "
            f"| {n_keras / max(t_keras - t_empty, 1e-3):.1f} "
            f"| {len(labels) / t_all:.1f} | {caught}/{attacks_total} "
            f"| {fp}/{benign_total} |"
        )
    lines += ["", "| file | " + " | ".join(available) + " |", "|---|" + "---|" * len(available)]
    for name in sorted(labels):
        row = ["yes" if detections[t].get(name) else "-" for t in available]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    missed = [
        n
        for n, v in labels.items()
        if v != "benign"
        and not detections["kerasguard"].get(n)
        and any(detections[t].get(n) for t in available)
    ]
    lines += ["", f"attacks a peer detects that kerasguard misses: {missed or 'none'}"]
    if args.compare_src is not None:
        lines += ["", "Before/after, interleaved rounds, .keras set (--jobs 1, startup included):", ""]
        lines += compare(keras_only, empty, args.reps)
    if args.sweep:
        lines += ["", "Corpus-size sweep (median of --reps interleaved rounds, startup included):", ""]
        lines += sweep(corpus, labels, args.sweep, args.reps)
    if not args.skip_big:
        small_t, big_t = big_vs_small(args.big_gib)
        lines += [
            "",
            f"kerasguard.scan in-process, median of 7: 2 MiB .keras {small_t * 1000:.1f} ms, "
            f"{args.big_gib:g} GiB .keras {big_t * 1000:.1f} ms, ratio {big_t / small_t:.2f}x",
        ]
    text = "\n".join(lines)
    (OUT / "scan.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
