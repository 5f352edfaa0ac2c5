"""Cost of the child's seccomp filter per system call, for two kerasguard source trees side by side.

Usage:
    git archive main src | tar -x -C /tmp/kg-before
    .venv/bin/python bench/bench_seccomp_filter.py --before /tmp/kg-before/src [--rounds 3]

Each measurement is a fresh process that installs the filter of one tree (or none) and times
200,000 ``write(2)`` calls to /dev/null (best of 5 passes); rounds interleave the variants.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUN = """
import os, sys, time
if sys.argv[1] == "filter":
    from kerasguard.sandbox import seccomp
    seccomp.install()
fd = os.open("/dev/null", os.O_WRONLY)
best = 1e9
for _ in range(5):
    t = time.perf_counter()
    for _ in range(200_000):
        os.write(fd, b"x")
    best = min(best, (time.perf_counter() - t) / 200_000)
print(best)
"""


def once(src: Path, mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RUN, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    return float(done.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT / "src")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"no filter": [], "before": [], "after": []}
    for _ in range(args.rounds):
        runs["no filter"].append(once(args.after, "none"))
        runs["before"].append(once(args.before, "filter"))
        runs["after"].append(once(args.after, "filter"))
    print("| filter | write(2) from Python (median of rounds) | added by the filter |")
    print("|---|---|---|")
    base = statistics.median(runs["no filter"])
    for name, values in runs.items():
        value = statistics.median(values)
        print(f"| {name} | {value * 1e9:.0f} ns | {(value - base) * 1e9:+.0f} ns |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
