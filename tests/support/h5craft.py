"""Hostile HDF5 files built in code with h5py (never downloaded), and helpers to scan them.

Bombs are declared, never written: a chunked, gzip, never-written dataset declaring gigabytes
stores a few hundred bytes, so every file here stays small.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from kerasguard.findings import Finding, Severity
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import Limits, Policy
from kerasguard.rules import RuleContext
from kerasguard.scanning.engine import Target, run_rules, scan_target

FIXED_KERAS = "3.15.1"  # fixed for every CVE in the reference table
OLD_KERAS = "3.13.0"  # affected by all the HDF5 CVEs


def h5file(path: Path, build: Callable[[h5py.File], Any]) -> Path:
    """Write an HDF5 file with ``build(f)``."""
    with h5py.File(path, "w") as f:
        build(f)
    return path


def declare_bomb(f: h5py.File, name: str, nbytes: int, dtype: str = "f4") -> None:
    """A chunked + gzip dataset declaring ``nbytes`` that is never written (stores ~nothing)."""
    itemsize = np.dtype(dtype).itemsize
    cols = 1024
    rows = max(1, nbytes // (itemsize * cols))
    f.create_dataset(name, shape=(rows, cols), dtype=dtype, chunks=(1, cols), compression="gzip")


def keras_weights(f: h5py.File, kernel: tuple[int, ...] = (8, 4), bias: tuple[int, ...] = (4,)) -> None:
    """A Keras 3 style weights layout for one Dense layer (real data)."""
    vars_group = f.create_group("layers/dense/vars")
    vars_group.attrs["name"] = "dense"
    vars_group.create_dataset("0", data=np.zeros(kernel, dtype="f4"))
    vars_group.create_dataset("1", data=np.zeros(bias, dtype="f4"))
    f.create_group("vars").attrs["name"] = "model"


def keras_zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    """A .keras-like zip with STORED members, as Keras writes them."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, content in members.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return path


def member_window(zip_path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of a stored member's bytes inside the zip, from its local header."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(name)
    assert info.compress_type == zipfile.ZIP_STORED
    with zip_path.open("rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def read_keras_zip(zip_path: Path, ctx: ReadContext) -> Artifact:
    """Read a .keras through the real zip reader: model.weights.h5 is read in place at its offset."""
    ctx.start_file()
    return open_artifact(zip_path, ctx)


def rule_context(keras_version: str = FIXED_KERAS, **limits: Any) -> RuleContext:
    return RuleContext(policy=Policy(limits=Limits(**limits)), keras_version=keras_version)


def scan_path(path: Path, ctx: ReadContext, keras_version: str = FIXED_KERAS) -> tuple[Finding, ...]:
    """Scan one file as the scanner does, reusing the test session's HDF5 worker."""
    rule_ctx = RuleContext(policy=Policy(limits=ctx.limits), keras_version=keras_version)
    return scan_target(Target(path, str(path)), ctx, rule_ctx).findings


def all_findings(art: Artifact, rule_ctx: RuleContext | None = None) -> list[Finding]:
    return run_rules(art, rule_ctx or rule_context())[0]


def severe(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity >= Severity.HIGH]


def config_json(model: dict[str, Any]) -> bytes:
    return json.dumps(model).encode("utf-8")


def _context() -> Iterator[ReadContext]:
    ctx = ReadContext(limits=Limits())
    try:
        yield ctx
    finally:
        ctx.close()


def module_context() -> Any:
    """A module-scoped fixture: one ReadContext (so one HDF5 worker) per test module.

    Use as ``h5ctx = module_context()``; tests call ``h5ctx.start_file()`` through scan helpers.
    """
    return pytest.fixture(scope="module", name="h5ctx")(_context)
