"""KG105: numpy data that numpy.load(allow_pickle=True) would unpickle (object arrays, raw pickles)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerasguard.errors import PolicyError
from kerasguard.findings import Severity
from kerasguard.policy import Policy
from kerasguard.scanning import engine as scanner
from kerasguard.scanning.engine import scan
from support.scanhelp import hits

OLD_KERAS = Policy(keras_version="3.8.0")
NEW_KERAS = Policy(keras_version="3.15.1")
RAW_PICKLE = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R."


def test_object_array_npy_is_critical_for_keras_before_3_9(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    [finding] = hits(scan(path, OLD_KERAS), "KG105")
    assert finding.severity == Severity.CRITICAL
    assert "object-dtype" in finding.message and "|O" in finding.evidence
    [finding] = hits(scan(path, NEW_KERAS), "KG105")  # Keras >= 3.9 loads npz with allow_pickle=False
    assert finding.severity == Severity.MEDIUM


def test_unknown_keras_version_counts_as_vulnerable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no keras installed and none named by the policy
    monkeypatch.setattr(scanner, "installed_keras_version", lambda: None)
    path = tmp_path / "w.npy"
    np.save(path, np.array([None], dtype=object), allow_pickle=True)
    [finding] = hits(scan(path, Policy()), "KG105")
    assert finding.severity == Severity.CRITICAL


def test_invalid_keras_version_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(PolicyError, match="not-a-version"):
        scan(path, Policy(keras_version="not-a-version"))


def test_structured_dtype_with_an_object_field(tmp_path: Path) -> None:
    path = tmp_path / "s.npy"
    np.save(path, np.zeros(2, dtype=[("a", "<i4"), ("b", "O")]), allow_pickle=True)
    assert len(hits(scan(path, OLD_KERAS), "KG105")) == 1


def test_raw_pickle_named_model_weights_npz(tmp_path: Path) -> None:
    path = tmp_path / "model.weights.npz"
    path.write_bytes(RAW_PICKLE)
    report = scan(path, OLD_KERAS)
    [finding] = hits(report, "KG105")
    assert "raw pickle" in finding.message and finding.severity == Severity.CRITICAL
    assert hits(report, "KG104")  # and its import is judged too


def test_numeric_arrays_and_plain_pickles_are_not_kg105(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.arange(10, dtype=np.int16))
    (tmp_path / "data.pkl").write_bytes(b"\x80\x04K\x01.")
    assert hits(scan(tmp_path / "ok.npy", OLD_KERAS), "KG105") == []
    assert hits(scan(tmp_path / "data.pkl", OLD_KERAS), "KG105") == []


def test_object_array_inside_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, ok=np.ones(3), bad=np.array([1, "x"], dtype=object))
    report = scan(path, OLD_KERAS)
    [finding] = hits(report, "KG105")
    assert "bad.npy" in str(finding.location)


@pytest.mark.keras
def test_keras_archive_with_a_pickled_model_weights_npz(tmp_path: Path) -> None:
    from support import kmodels

    good = tmp_path / "good.keras"
    kmodels.mlp().save(good)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            if item.filename != "model.weights.h5":
                dst.writestr(item, src.read(item))
        dst.writestr("model.weights.npz", RAW_PICKLE)
    assert hits(scan(good, OLD_KERAS), "KG105") == []
    [finding] = hits(scan(bad, OLD_KERAS), "KG105")
    assert finding.location.member == "model.weights.npz"
    assert finding.severity == Severity.CRITICAL
