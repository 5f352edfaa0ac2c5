"""Benchmark of the zip reader: time and peak memory on large and hostile archives.

Run: ``python bench/zip_scan.py [workdir]``. Each case is scanned in a fresh child process that
reports its own peak RSS (ru_maxrss), so the numbers include the interpreter and imports
(about 40 MiB here). Files are written to ``workdir`` (default: a temp dir) and deleted after.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

CHILD = """
import resource, sys, time
from kerasguard.scanning.engine import scan
start = time.perf_counter()
report = scan(sys.argv[1])
elapsed = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rules = sorted({f.rule_id for f in report.findings})
print(f"{elapsed:.2f} {rss:.0f} {','.join(rules) or '-'}")
"""

CONFIG = json.dumps({"module": "keras", "class_name": "Sequential", "config": {"layers": []}}).encode()


def stored_weights(path: Path, size: int) -> None:
    """A .keras whose stored model.weights.h5 is ``size`` bytes (a sparse hole after the magic)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", CONFIG)
    # Append a stored member by hand so its data can be a hole instead of written bytes.
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    data_start = infos[-1].header_offset + 30 + len(infos[-1].filename) + infos[-1].compress_size
    with open(path, "r+b") as fh:
        fh.truncate(data_start)
        name = b"model.weights.h5"
        offset = data_start
        fh.seek(offset)
        fh.write(
            struct.pack(
                "<4s2B4HL2L2H",
                b"PK\x03\x04",
                45,
                0,
                0,
                0,
                0,
                0x21,
                0,
                0xFFFF_FFFF,
                0xFFFF_FFFF,
                len(name),
                20,
            )
        )
        fh.write(name + struct.pack("<HHQQ", 1, 16, size, size))
        fh.write(b"\x89HDF\r\n\x1a\n")
        fh.seek(size - 8, os.SEEK_CUR)
        cd_start = fh.tell()
        entries = [
            (infos[0].filename.encode(), infos[0].CRC, infos[0].file_size, infos[0].header_offset, b"")
        ]
        entries.append((name, 0, 0xFFFF_FFFF, offset, struct.pack("<HHQQ", 1, 16, size, size)))
        for fname, crc, fsize, hoff, extra in entries:
            fh.write(
                struct.pack(
                    "<4s4B4HL2L5H2L",
                    b"PK\x01\x02",
                    45,
                    3,
                    45,
                    0,
                    0,
                    0,
                    0,
                    0x21,
                    crc,
                    fsize,
                    fsize,
                    len(fname),
                    len(extra),
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    hoff,
                )
            )
            fh.write(fname + extra)
        cd_size = fh.tell() - cd_start
        fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, cd_size, cd_start, 0))


def deflated_npy(path: Path, size: int) -> None:
    """A zip with one deflated .npy member of ``size`` bytes (compresses ~3x: must be spooled)."""
    rng = random.Random(0)
    block = bytes(rng.choice(b"abcd") for _ in range(MiB))
    header = (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", 118)
        + b"{'descr': '|u1', 'fortran_order': False, 'shape': (%d,), }" % size
    )
    header = header.ljust(128, b" ")[:127] + b"\n"
    archive = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    with archive, archive.open("weights/x.npy", "w", force_zip64=True) as fh:
        fh.write(header)
        for _ in range(size // MiB):
            fh.write(block)


def many_members(path: Path, count: int) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", CONFIG)
        for i in range(count - 1):
            zf.writestr(f"assets/{i}.txt", b"x")


def big_json(path: Path, size: int) -> None:
    doc = (
        b'{"module": "keras", "class_name": "Sequential", "config": {"layers": ['
        + b"0," * (size // 2)
        + b"0]}}"
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", doc)


def declared_bomb(path: Path, size: int) -> None:
    stream = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = stream.compress(b"\x00" * 1000) + stream.flush()
    name = b"model.weights.h5"
    extra = struct.pack("<HHQQ", 1, 16, size, len(raw))
    local = (
        struct.pack(
            "<4s2B4HL2L2H",
            b"PK\x03\x04",
            45,
            0,
            0,
            8,
            0,
            0x21,
            0,
            0xFFFF_FFFF,
            0xFFFF_FFFF,
            len(name),
            len(extra),
        )
        + name
        + extra
        + raw
    )
    cd = (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            45,
            3,
            45,
            0,
            0,
            8,
            0,
            0x21,
            0,
            0xFFFF_FFFF,
            0xFFFF_FFFF,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            0,
        )
        + name
        + extra
    )
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(local), 0)
    path.write_bytes(local + cd + eocd)


CASES: list[tuple[str, str, Callable[[Path, int], None], int]] = [
    ("stored 2 GiB weights (sparse)", "stored.keras", stored_weights, 2 * GiB),
    ("deflated 256 MiB .npy member", "npy.zip", deflated_npy, 256 * MiB),
    ("10,000 members", "many.keras", many_members, 10_000),
    ("15 MiB JSON config (deflated)", "json.keras", big_json, 15 * MiB),
    ("1 KB declaring 10 GiB", "bomb.keras", declared_bomb, 10 * GiB),
]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="kg-bench-zip-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    print(f"{'case':34} {'file':>10} {'build s':>8} {'scan s':>7} {'peak RSS':>9}  rules")
    try:
        for title, name, make, size in CASES:
            path = root / name
            t0 = time.perf_counter()
            make(path, size)
            built = time.perf_counter() - t0
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, check=True
            ).stdout.split()
            disk = path.stat().st_size
            print(f"{title:34} {disk / MiB:9.1f}M {built:8.1f} {out[0]:>7} {out[1]:>7}Mi  {out[2]}")
            path.unlink()
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
