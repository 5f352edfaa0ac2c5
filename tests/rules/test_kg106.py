"""KG106: SavedModel graphs that call back into Python (py_function, numpy_function, py_func)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from kerasguard.scanning.engine import scan
from support import pbenc
from support.scanhelp import hits

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "savedmodel"


@pytest.mark.parametrize("fixture", ["pyfunc", "pyfunc_pbtxt"])
def test_tf_py_function_saved_by_tensorflow(fixture: str) -> None:
    [finding] = hits(scan(FIXTURES / fixture), "KG106")
    assert finding.severity == Severity.CRITICAL
    assert "EagerPyFunc" in finding.message and "tf.py_function" in finding.message
    assert "__inference_serve_" in finding.message
    assert "token=pyfunc_" in finding.evidence


@pytest.mark.parametrize("fixture", ["keras2_benign", "keras2_lookup", "readfile", "tf1_saver"])
def test_graphs_without_callbacks(fixture: str) -> None:
    assert hits(scan(FIXTURES / fixture), "KG106") == []


@pytest.mark.parametrize("op", ["PyFunc", "PyFuncStateless", "EagerPyFunc", "FuturePyFuncV9"])
def test_every_callback_op_in_a_frozen_graph(tmp_path: Path, op: str) -> None:
    path = tmp_path / "frozen.pb"
    path.write_bytes(pbenc.graph([pbenc.node("x", "Placeholder"), pbenc.node("cb", op, ["x"])]))
    [finding] = hits(scan(path), "KG106")
    assert op in finding.message and "top-level graph" in finding.message
