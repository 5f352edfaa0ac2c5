"""Benchmark of the HDF5 path: per-file cost of metadata reads in the worker child.

Builds (once, in --workdir) a .keras whose stored model.weights.h5 holds --size-gib of real
float32 weights, plus --files small Keras-layout weight files, then reports:
  * worker start-up (spawn + import h5py under rlimits),
  * the big .keras member read in place through FileWindow (warm worker),
  * files/second over the small files (warm worker, one ReadContext),
  * the big .keras and the small files through the public scanner (open + all rules).

Usage: python bench/bench_hdf5.py [--size-gib 2] [--files 200] [--workdir /tmp/kg-bench-h5]

Measured on the 2-core build machine while other jobs ran (load average 2-7), ranges over runs:
  worker start + first file: 310-740 ms (worker VmPeak ~112 MiB)
  2 GiB .keras (32 Dense 4096x4096 layers), member read in place: 3-56 ms
  2 GiB .keras via scan_many (zip + HDF5 + all rules, warm worker): 16-58 ms
  small 3-layer weight files, warm worker: 70-150 files/s; via scan_many incl. worker start: 50-124 files/s
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.hdf5.reader import read_hdf5, worker_for
from kerasguard.policy import GiB, Limits, Policy
from kerasguard.scanning.engine import scan_many


def build_big(workdir: Path, size_gib: float) -> Path:
    """A Sequential of 4096x4096 Dense layers (64 MiB each) adding up to ``size_gib``, as Keras lays
    it out: config.json plus a stored model.weights.h5 with real float32 data."""
    archive = workdir / f"big_{size_gib:g}g.keras"
    if archive.exists():
        return archive
    width = 4096
    count = max(1, int(size_gib * GiB) // (4 * width * width))
    weights = workdir / "model.weights.h5"
    block = np.random.default_rng(0).standard_normal((width, width)).astype("f4")
    layers: list[dict[str, Any]] = [
        {"class_name": "InputLayer", "config": {"name": "input", "batch_shape": [None, width]}}
    ]
    with h5py.File(weights, "w") as f:
        for i in range(count):
            name = "dense" if i == 0 else f"dense_{i}"
            vars_group = f.create_group(f"layers/{name}/vars")
            vars_group.attrs["name"] = name
            vars_group.create_dataset("0", data=block)
            vars_group.create_dataset("1", data=np.zeros(width, "f4"))
            layers.append(
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {"name": name, "units": width, "use_bias": True},
                    "build_config": {"input_shape": [None, width]},
                }
            )
        f.create_group("vars").attrs["name"] = "big"
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "big", "layers": layers}}
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))
        zf.write(weights, "model.weights.h5")
    weights.unlink()
    return archive


def build_small(workdir: Path, count: int) -> list[Path]:
    folder = workdir / "small"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"m{i:04d}.weights.h5"
        if not path.exists():
            with h5py.File(path, "w") as f:
                for layer in ("dense", "dense_1", "dense_2"):
                    g = f.create_group(f"layers/{layer}/vars")
                    g.attrs["name"] = layer
                    g.create_dataset("0", data=np.ones((64, 64), "f4"))
                    g.create_dataset("1", data=np.zeros(64, "f4"))
                f.create_group("vars").attrs["name"] = "model"
        paths.append(path)
    return paths


def member_blob(archive: Path) -> Blob:
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("model.weights.h5")
    with archive.open("rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(fh.read(4), "<u2")
    offset = info.header_offset + 30 + int(name_len) + int(extra_len)
    return Blob(
        Location(str(archive), member="model.weights.h5"), "model.weights.h5", info.file_size, archive, offset
    )


def timed_read(blob: Blob, ctx: ReadContext) -> tuple[float, Artifact]:
    ctx.start_file()
    art = Artifact(path=str(blob.location), format="x", location=blob.location)
    started = time.perf_counter()
    read_hdf5(blob, art, ctx, "hdf5")
    return time.perf_counter() - started, art


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kg-bench-h5"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    archive = build_big(args.workdir, args.size_gib)
    small = build_small(args.workdir, args.files)

    ctx = ReadContext(limits=Limits())
    try:
        started = time.perf_counter()
        cold, _ = timed_read(Blob.from_file(small[0], Location(str(small[0]))), ctx)
        vm_peak = worker_for(ctx).hello["vm_peak_kib"]
        print(f"worker start + first file: {cold * 1000:.1f} ms (worker VmPeak {vm_peak} KiB)")
        big = [timed_read(member_blob(archive), ctx) for _ in range(5)]
        assert not big[0][1].problems, big[0][1].problems
        print(
            f"{archive.stat().st_size / GiB:.2f} GiB .keras member in place: "
            f"median {statistics.median(t for t, _ in big) * 1000:.1f} ms over 5 reads"
        )
        started = time.perf_counter()
        for path in small:
            _, art = timed_read(Blob.from_file(path, Location(str(path))), ctx)
            assert not art.problems
        elapsed = time.perf_counter() - started
        print(f"{len(small)} small files, warm worker: {len(small) / elapsed:.0f} files/s")
    finally:
        ctx.close()
    report = scan_many([small[0], archive, archive], Policy())
    big_reports = [r for r in report.files if r.path == str(archive)]
    assert all(r.complete and not r.findings for r in big_reports), big_reports
    print(
        f"{archive.stat().st_size / GiB:.2f} GiB .keras via scan_many (zip + HDF5 + all rules, warm worker): "
        f"{min(r.duration_s for r in big_reports) * 1000:.1f} ms"
    )
    started = time.perf_counter()
    report = scan_many(small, Policy())
    elapsed = time.perf_counter() - started
    assert report.complete and not report.findings
    print(f"{len(small)} small files via scan_many (incl. worker start): {len(small) / elapsed:.0f} files/s")


if __name__ == "__main__":
    main()
