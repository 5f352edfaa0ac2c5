"""KG409: .npy headers declaring far more data than the file holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from kerasguard.scanning.engine import scan
from support.scanhelp import hits

MiB = 1 << 20
FLOOR_1_MIB = policy_from_mapping({"limits": {"npy_bomb_floor": MiB}})  # stricter than the default floor


def npy(tmp_path: Path, shape: tuple[int, ...], stored: int, descr: str = "<f4") -> Path:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    path = tmp_path / "bomb.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(stored))
    return path


def test_terabyte_declaration_in_a_few_bytes(tmp_path: Path) -> None:
    [finding] = hits(scan(npy(tmp_path, (1 << 20, 1 << 20), 0)), "KG409")
    assert finding.severity == Severity.HIGH
    assert "declares 4398046511104 bytes" in finding.message
    assert "stored=0" in finding.evidence


def test_under_keras_4gib_floor_but_over_ours(tmp_path: Path) -> None:
    # 1 GiB declared, 1 MiB stored: Keras 3.15 would allocate it; 1024x > 100x
    assert len(hits(scan(npy(tmp_path, (256 * MiB,), MiB)), "KG409")) == 1


def test_below_the_floor_is_not_a_bomb(tmp_path: Path) -> None:
    path = npy(tmp_path, (8 * MiB,), 0)  # 32 MiB declared
    assert hits(scan(path), "KG409") == []
    assert len(hits(scan(path, FLOOR_1_MIB), "KG409")) == 1  # a stricter policy


def test_real_arrays_are_not_bombs(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((5 * MiB,), np.float32))  # 20 MiB, fully stored
    assert hits(scan(path, FLOOR_1_MIB), "KG409") == []


def test_object_arrays_are_left_to_the_pickle_rules(tmp_path: Path) -> None:
    path = npy(tmp_path, (1 << 30,), 0, descr="|O")
    assert hits(scan(path), "KG409") == []
