"""Start-up hygiene: what a CLI run imports before it does its work.

Every run pays for every import, and a scan of a few small files is mostly start-up, so commands import
their implementation when they run. Checked through ``sys.modules`` in a fresh interpreter, never timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import kerasguard
import kerasguard.advisories

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Never needed to build the CLI or to scan: other commands' machinery, optional extras, ML frameworks.
NOT_FOR_SCAN = (
    "kerasguard.advisories.audit",
    "kerasguard.advisories.environment",
    "kerasguard.advisories.requirements",
    "kerasguard.integrity.manifest",
    "kerasguard.inspect",
    "kerasguard.loading.events",
    "kerasguard.loading.loader",
    "kerasguard.sandbox",
    "kerasguard.store",
    "kerasguard.golden",
    "packaging.markers",
    "pydantic",  # typer < 0.29 (decision 30); only the sign extra's sigstore uses it
    "sqlalchemy",
    "cryptography",
    "numpy",
    "keras",
    "jax",
    "tensorflow",
    "torch",
)
# rich pieces a scan does not draw (help output is typer's business: it draws tables).
NOT_DRAWN_BY_SCAN = ("rich.progress", "rich.table", "rich.tree")


def _imported_after(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the modules it left in sys.modules."""
    listing = tmp_path / "modules.json"
    dump = f"import json\nopen({str(listing)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    script = f"import sys\n{code}\n{dump}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(listing.read_text())
    return modules


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in names or m.startswith(tuple(f"{n}." for n in names))]


def _run_cli(*args: str, codes: tuple[int | None, ...] = (0, None)) -> str:
    return (
        f"sys.argv = ['kerasguard', *{list(args)!r}]\n"
        "from kerasguard.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        f"    assert exc.code in {codes!r}, exc.code\n"
    )


def test_building_the_cli_imports_no_command_implementation(tmp_path: Path) -> None:
    modules = _imported_after("import kerasguard.cli", tmp_path)
    assert not _loaded(modules, NOT_FOR_SCAN + NOT_DRAWN_BY_SCAN)
    assert not _loaded(modules, ("kerasguard.scanning.engine", "kerasguard.policy", "kerasguard.advisories"))


def test_help_does_not_import_the_scanner(tmp_path: Path) -> None:
    modules = _imported_after(_run_cli("--help"), tmp_path)
    assert not _loaded(modules, NOT_FOR_SCAN)
    assert not _loaded(modules, ("kerasguard.scanning.engine", "kerasguard.rules", "kerasguard.formats"))


def test_scan_imports_only_the_scan_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    report = tmp_path / "report.json"
    modules = _imported_after(_run_cli("scan", str(empty), "--format", "json", "-o", str(report)), tmp_path)
    assert json.loads(report.read_text())["summary"]["files"] == 0
    assert "kerasguard.scanning.engine" in modules
    assert not _loaded(modules, NOT_FOR_SCAN + NOT_DRAWN_BY_SCAN)
    # no file read: no advisory matching either (its database is loaded with the first finding)
    assert not _loaded(modules, ("kerasguard.advisories.database",))


def test_lazy_exports_resolve_and_are_listed() -> None:
    from kerasguard import Policy, Severity, scan
    from kerasguard.advisories import AdvisoryDatabase, audit_environment
    from kerasguard.policy import Policy as PolicyClass
    from kerasguard.scanning.engine import scan as scan_function

    assert scan is scan_function and Policy is PolicyClass and Severity.HIGH
    assert callable(audit_environment) and AdvisoryDatabase.__name__ == "AdvisoryDatabase"
    assert {"scan", "scan_many", "Policy", "load_model"} <= set(dir(kerasguard))
    assert {"load_database", "audit_environment"} <= set(dir(kerasguard.advisories))
    assert set(kerasguard.__all__) <= set(dir(kerasguard))
    assert set(kerasguard.advisories.__all__) <= set(dir(kerasguard.advisories))


def test_scanning_plain_model_files_imports_neither_numpy_nor_h5py(tmp_path: Path) -> None:
    """Keras files in the layout Keras writes (HDF5 weights, .npz weights) are read in-process by
    kerasguard's own readers: no h5py child, no numpy import (~75 ms) in the scanning process."""
    import numpy as np

    folder = tmp_path / "models"
    folder.mkdir()
    np.savez(folder / "model.weights.npz", np.zeros((3, 4), "float32"), np.arange(5), np.array(["a", "bc"]))
    benign = Path(__file__).resolve().parent / "data" / "benign"
    for name in (
        "keras-3.10.0/mlp_npz.keras",
        "keras-3.10.0/cnn.keras",
        "keras-3.10.0/cnn.h5",
        "tf-keras-2.21.0/cnn.h5",
    ):
        (folder / name.replace("/", "_")).write_bytes((benign / name).read_bytes())
    report = tmp_path / "report.json"
    code = _run_cli("scan", str(folder), "--jobs", "1", "--format", "json", "-o", str(report))
    modules = _imported_after(code, tmp_path)
    summary = json.loads(report.read_text())["summary"]
    assert summary["files"] == 5, summary
    assert not _loaded(modules, ("numpy", "h5py"))


def test_a_config_with_many_brackets_imports_no_numpy(tmp_path: Path) -> None:
    """The JSON depth check of a large document (over 65,536 brackets) stays on the scan path's own
    code: no numpy import (it used to vectorise with numpy there)."""
    config = {"class_name": "Sequential", "config": {"layers": [], "pad": [[0]] * 40_000}}
    path = tmp_path / "brackets.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
    report = tmp_path / "report.json"
    code = _run_cli("scan", str(path), "--format", "json", "-o", str(report), codes=(0, 1, 2, None))
    modules = _imported_after(code, tmp_path)
    assert json.loads(report.read_text())["summary"]["files"] == 1
    assert not _loaded(modules, ("numpy",))
