"""Per-file scan cost, with the HDF5 metadata read separated, and whole CLI runs with --jobs.

Usage (after `make setup`; the corpus comes from bench/bench_scan.py, in bench/out/corpus_keras):
    .venv/bin/python bench/bench_perfile.py [--corpus DIR] [--reps 7] [--cli]

In-process: scans every file with `kerasguard.scan` (one call per file, as a library user would), after a
warm-up pass, and times the HDF5 reader apart (wrapping `formats.hdf5.read_hdf5` in this script only), so
"rest" is what the scanner costs per file beyond the HDF5 read. Median of --reps passes.
With --cli: whole `python -m kerasguard scan DIR` runs (startup included) with --jobs 1 and the default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "bench" / "out" / "corpus_keras"


def in_process(files: list[Path], reps: int) -> tuple[float, float]:
    """Median (total ms per file, HDF5 ms per file) over reps passes."""
    from kerasguard import scan
    from kerasguard.formats import dispatch
    from kerasguard.formats.hdf5 import reader as hdf5

    spent = [0.0]
    real = hdf5.read_hdf5

    def timed(*args: Any, **kwargs: Any) -> None:
        t = time.perf_counter()
        try:
            real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    dispatch.hdf5.read_hdf5 = timed  # type: ignore[assignment]
    for f in files:
        scan(f)
    totals, h5s = [], []
    for _ in range(reps):
        spent[0] = 0.0
        t = time.perf_counter()
        for f in files:
            scan(f)
        totals.append((time.perf_counter() - t) / len(files) * 1000)
        h5s.append(spent[0] / len(files) * 1000)
    return statistics.median(totals), statistics.median(h5s)


def cli(folder: Path, reps: int, jobs: str | None) -> float:
    """Median wall seconds of whole CLI runs."""
    cmd = [sys.executable, "-m", "kerasguard", "scan", str(folder), "--format", "json", "-o", os.devnull]
    if jobs is not None:
        cmd += ["--jobs", jobs]
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--cli", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.iterdir() if p.is_file())
    total, h5 = in_process(files, args.reps)
    print(f"{len(files)} files: {total:.2f} ms/file in-process, HDF5 read {h5:.2f}, rest {total - h5:.2f}")
    if args.cli:
        for jobs in ("1", None):
            wall = cli(args.corpus, args.reps, jobs)
            print(f"CLI --jobs {jobs or 'default (auto)'}: {wall:.3f} s (median of {args.reps})")


if __name__ == "__main__":
    main()
