"""`kerasguard data check` on bad and hostile input: a clear finding or error (exit 2), never a
traceback, never an unpickle; and the checks that must fire do fire."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerasguard.data import check
from kerasguard.errors import DataError
from kerasguard.findings import Severity
from support.dghelp import png_declaring, run_cli
from support.scanhelp import hits


def ids(report: object) -> set[str]:
    return {f.rule_id for f in report.findings}  # type: ignore[attr-defined]


def blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.normal(size=(n, 6)) + y[:, None] * 3.0
    return x, y


# -- arrays -------------------------------------------------------------------------------------


def test_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Boom(), 1], dtype=object), allow_pickle=True)
    _, out = run_cli("data", "check", str(path), code=2)
    assert "object dtype" in out and "never unpickled" in out
    assert not marker.exists()
    with pytest.raises(DataError, match="object dtype"):
        check(path)


def test_pickle_disguised_as_npz_member_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.touch, (marker,))

    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", pickle.dumps(Boom()))
    run_cli("data", "check", str(path), code=2)
    assert not marker.exists()


def test_npy_declaring_huge_shape_allocates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000), }"
    header = header + " " * (117 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    _, out = run_cli("data", "check", str(path), code=2)
    assert "more than kerasguard loads" in out


def test_truncated_npy(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((100, 8)))
    path.write_bytes(path.read_bytes()[:-100])
    _, out = run_cli("data", "check", str(path), code=2)
    assert "truncated" in out


def test_ragged_inputs_and_mismatched_labels() -> None:
    with pytest.raises(DataError, match="ragged"):
        check([[1.0, 2.0], [3.0]], [0, 1])
    with pytest.raises(DataError, match="2 samples but 3 labels"):
        check(np.zeros((2, 3)), [0, 1, 1])
    with pytest.raises(DataError, match="not numeric"):
        check(np.array(["a", "b"]), [0, 1])


def test_npz_with_x_and_y_of_different_lengths(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((10, 3)), y=np.zeros(9, dtype=int))
    _, out = run_cli("data", "check", str(path), code=2)
    assert "10 samples but 9 labels" in out


# -- labels -------------------------------------------------------------------------------------


def test_labels_outside_the_class_set_and_empty_classes(tmp_path: Path) -> None:
    x, y = blobs()
    y = y.copy()
    y[:3] = 7
    y[y == 2] = 1  # class 2 disappears
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    args = ["--num-classes", "4", "--format", "json", "--no-label-issues"]
    _, out = run_cli("data", "check", str(path), *args, code=1)
    report = json.loads(out[out.index("{") :])
    found = {f["rule_id"]: f for f in report["findings"]}
    assert found["KGD111"]["severity"] == "high" and "[7]" in found["KGD111"]["message"]
    assert "2" in found["KGD112"]["message"]


def test_one_sample_is_reported_not_crashed() -> None:
    report = check(np.ones((1, 4)), [0], label_issues=False)
    assert "KGD113" in ids(report)
    assert report.samples == 1 and report.exit_code(Severity.HIGH) == 0


def test_identical_inputs_with_conflicting_labels_are_high() -> None:
    x, y = blobs()
    x[10] = x[11]
    y[10], y[11] = 0, 3
    report = check(x, y, label_issues=False)
    conflict = hits(report.findings, "KGD107")
    assert conflict and "10, 11" in conflict[0].evidence
    assert report.exit_code(Severity.HIGH) == 1


def test_nan_inf_outliers_and_reference_ranges() -> None:
    x, y = blobs()
    ref_x, ref_y = blobs(seed=1)
    x = x.copy()
    x[5, 2] = np.nan
    x[6, 1] = np.inf
    x[7, 0] = 1e6
    report = check(x, y, reference=ref_x, reference_labels=ref_y, label_issues=False)
    found = {f.rule_id: f for f in report.findings}
    assert "2 row(s)" in found["KGD103"].message
    assert "rows 7" in found["KGD109"].evidence
    assert "KGD104" in found and "7" in found["KGD104"].evidence
    assert "KGD108" not in found  # same balance as the reference


def test_class_balance_against_reference_chi_square() -> None:
    ref_x, ref_y = blobs(400)
    keep = (ref_y != 3) | (np.arange(400) % 10 == 0)  # class 3 mostly removed
    report = check(ref_x[keep], ref_y[keep], reference=ref_x, reference_labels=ref_y, label_issues=False)
    balance = hits(report.findings, "KGD108")
    assert balance and "class 3" in balance[0].message


def test_clean_data_has_no_high_finding() -> None:
    x, y = blobs(300)
    report = check(x, y, label_issues=False)
    assert not report.at_or_above(Severity.MEDIUM), report.findings
    assert report.exit_code(Severity.HIGH) == 0


# -- tables -------------------------------------------------------------------------------------


def test_csv_with_bom_quoted_newlines_and_mixed_types(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 0.5},{i % 3}\n" for i in range(40))
    path = tmp_path / "t.csv"
    path.write_bytes(('a,"b\nname",label\n' + rows + '"7\n",1.5,2\nabc,2.5,1\n').encode("utf-8-sig"))
    _, out = run_cli("data", "check", str(path), "--format", "json", "--no-label-issues")
    report = json.loads(out[out.index("{") :])
    assert report["samples"] == 42
    findings = report["findings"]
    mixed = [f for f in findings if f["rule_id"] == "KGD102" and f["severity"] == "medium"]
    assert mixed and "'a'" in mixed[0]["message"] and "abc" in mixed[0]["evidence"]
    # the BOM did not end up in the first column's name; the quoted newline is escaped in the name
    assert all("\ufeff" not in f["message"] for f in findings)
    assert report["stats"]["classes"] == {"0": 14, "1": 14, "2": 14}


def test_csv_type_changes_after_first_block(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    body = "".join(f"{i},{i % 2}\n" for i in range(400_000))
    path.write_text("v,label\n" + body + "oops,1\n")
    report = check(path, label_issues=False)
    mixed = hits(report.findings, "KGD102")
    assert mixed and "oops" in mixed[0].evidence


def test_parquet_with_string_labels(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = blobs()
    names = np.array(["cat", "dog", "emu", "fox"])[y]
    table = pa.table({"f0": x[:, 0], "f1": x[:, 1], "label": names})
    pq.write_table(table, tmp_path / "t.parquet")
    report = check(tmp_path / "t.parquet", label_issues=False)
    assert report.features == 2 and report.stats["classes"]["0 (cat)"] == 50


def test_csv_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b'a,b\n1,2\n"unterminated\n')
    run_cli("data", "check", str(path), code=2)


# -- images -------------------------------------------------------------------------------------


def _image_folder(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_with_bomb_and_non_image(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "a" / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    (root / "b" / "notes.png").write_text("not an image")
    (root / "empty").mkdir()
    (root / "elsewhere").symlink_to(tmp_path)  # a class "folder" pointing outside the data
    (root / "b" / "passwd.png").symlink_to("/etc/passwd")
    _, out = run_cli("data", "check", str(root), "--format", "json", "--no-label-issues", code=2)
    report = json.loads(out[out.index("{") :])
    assert report["complete"] is False
    found = {(f["rule_id"], f["location"].get("member")) for f in report["findings"]}
    assert ("KGD902", "a/bomb.png") in found
    assert ("KGD901", "b/notes.png") in found
    assert any(r == "KGD112" for r, _ in found)  # the empty class
    assert ("KGD901", "elsewhere") in found and ("KGD901", "b/passwd.png") in found
    assert report["samples"] == 24


def test_image_folder_clean_exit_0(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    run_cli("data", "check", str(root), "--no-label-issues", code=0)


# -- manifest -----------------------------------------------------------------------------------


def test_manifest_then_verify_and_check_detect_a_change(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    manifest = tmp_path / "data.manifest.json"
    run_cli("data", "manifest", str(root), "-o", str(manifest), code=0)
    run_cli("data", "verify", str(root), "--manifest", str(manifest), code=0)
    run_cli("data", "check", str(root), "--manifest", str(manifest), "--no-label-issues", code=0)
    from PIL import Image

    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(root / "a" / "0.png")  # a poisoned swap
    _, out = run_cli("data", "verify", str(root), "--manifest", str(manifest), code=1)
    assert "a/0.png" in out
    _, out = run_cli("data", "check", str(root), "--manifest", str(manifest), "--no-label-issues", code=1)
    assert "KGD114" in out


def test_unknown_kind_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    run_cli("data", "check", str(tmp_path / "x.txt"), code=2)
    run_cli("data", "check", str(tmp_path / "nope.npz"), code=2)
    run_cli("data", "check", str(tmp_path / "x.txt"), "--fail-on", "bogus", code=2)


def test_image_folder_adding_up_past_the_limit_is_refused_while_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kerasguard.data.dataset as dataset
    import kerasguard.data.readers.images as images

    root = _image_folder(tmp_path)
    monkeypatch.setattr(dataset, "MAX_VALUES", 8 * 8 * 5)  # room for five 8x8 images
    decoded: list[str] = []
    real_load = images._load

    def counting_load(path: Path, *args: object) -> object:
        decoded.append(path.name)
        return real_load(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "_load", counting_load)
    with pytest.raises(DataError, match="more than kerasguard loads"):
        check(root, label_issues=False)
    assert len(decoded) == 6  # stopped at the sixth image, not after all 24


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        ("ImportError('pyarrow is broken here')", "pyarrow is broken here"),
        ("ModuleNotFoundError(\"No module named 'pyarrow'\", name='pyarrow')", "needs the 'ml' extra"),
    ],
)
def test_a_missing_ml_module_names_the_extra_in_brackets(tmp_path: Path, raised: str, expected: str) -> None:
    """Regression: the hint was printed as rich markup, so ``[ml]`` vanished ("pip install 'kerasguard'")."""
    import subprocess
    import sys

    blocked = tmp_path / "blocked" / "pyarrow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(f"raise {raised}\n")
    table = tmp_path / "t.csv"
    table.write_text("a,label\n1,0\n2,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "kerasguard", "data", "check", str(table), "--label", "label"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "blocked")},
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "pip install 'kerasguard[ml]'" in done.stderr
    assert "Traceback" not in done.stderr
