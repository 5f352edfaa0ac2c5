"""Payload reader benchmark: pickle walker, .npy headers and SavedModel protobuf parsing, one run.

Usage:
    .venv/bin/python bench/bench_payloads.py [--out bench/out/payloads]

Shows that cost follows opcodes and graph nodes, not payload bytes: a pickle holding a 1 GiB bytes
payload and a 64 GiB sparse .npy are read in milliseconds, while dense opcode streams and large graphs
cost time per opcode / node. Files are sparse where possible and removed afterwards.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kerasguard.scanning.engine import scan  # noqa: E402
from support import pbenc  # noqa: E402


def timed(label: str, size: int, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    print(f"{label:<52} {size / 2**20:>10.1f} MiB {took * 1000:>10.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "payloads")
    args = parser.parse_args()
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        dense = out / "dense.pkl"
        dense.write_bytes(pickle.dumps([{"k": i, "s": str(i)} for i in range(200_000)], protocol=4))
        timed("pickle, 200k small dicts (dense opcodes)", dense.stat().st_size, lambda: scan(dense))

        payload = out / "payload.pkl"
        with payload.open("wb") as fh:  # BINBYTES8 of 1 GiB, sparse on disk
            fh.write(b"\x80\x04\x8e" + (1 << 30).to_bytes(8, "little"))
            fh.seek((1 << 30) - 1, 1)
            fh.write(b"\x00.")
        size = payload.stat().st_size
        timed("pickle, one 1 GiB bytes payload (skipped by seek)", size, lambda: scan(payload))

        npy = out / "sparse.npy"
        header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (16, 1073741824), }"
        with npy.open("wb") as fh:
            fh.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
            fh.truncate(len(header) + 10 + 64 * 2**30)
        timed(".npy, 64 GiB declared and stored (sparse)", npy.stat().st_size, lambda: scan(npy))

        nodes = [pbenc.node(f"n{i}", "MatMul", [f"n{i - 1}", "w"]) for i in range(200_000)]
        graph = pbenc.graph(nodes, [*pbenc.traced_saver()])
        folder = pbenc.write_savedmodel(out / "sm", graph)
        size = (folder / "saved_model.pb").stat().st_size
        timed("SavedModel, 200k nodes", size, lambda: scan(folder))
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
