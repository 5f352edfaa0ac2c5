"""KG104: pickle imports outside the safe list (walked by opcode, never unpickled)."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from kerasguard.scanning.engine import scan
from support import pbenc
from support.scanhelp import hits


def write(tmp_path: Path, data: bytes, name: str = "model.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_global_os_system(tmp_path: Path) -> None:
    [finding] = hits(scan(write(tmp_path, b"cos\nsystem\n(S'id'\ntR.")), "KG104")
    assert finding.severity == Severity.CRITICAL
    assert "os.system" in finding.message and "shell commands" in finding.message
    assert finding.evidence.startswith("GLOBAL at byte 0")
    assert finding.cwe == "CWE-502"


def test_stack_global_through_the_memo(tmp_path: Path) -> None:
    data = b"\x80\x04\x8c\x0asubprocess\x94\x8c\x05Popen\x94\x93\x8c\x02id\x85R."
    [finding] = hits(scan(write(tmp_path, data)), "KG104")
    assert "subprocess.Popen" in finding.message
    assert "STACK_GLOBAL" in finding.evidence


def test_unresolved_stack_global_is_critical(tmp_path: Path) -> None:
    data = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93)R."
    findings = hits(scan(write(tmp_path, data)), "KG104")
    unresolved = [f for f in findings if "computed while unpickling" in f.message]
    assert len(unresolved) == 1 and unresolved[0].severity == Severity.CRITICAL
    assert not any("builtins.str" in f.message for f in findings)  # str itself is a safe container


@pytest.mark.parametrize(
    ("module", "name", "reason"),
    [
        ("__builtin__", "eval", "evaluates"),  # Python 2 spelling, renamed by the unpickler
        ("builtins", "getattr", "any attribute"),
        ("runpy", "run_path", "runs modules"),
        ("importlib", "import_module", "imports any module"),
        ("nt", "system", "Windows"),
        ("collections", "OrderedDict.__init__.__globals__", "not on the safe list"),
        ("mylib.models", "Thing", "not on the safe list"),
    ],
)
def test_imports_outside_the_safe_list(tmp_path: Path, module: str, name: str, reason: str) -> None:
    [finding] = hits(scan(write(tmp_path, f"c{module}\n{name}\n)R.".encode())), "KG104")
    assert reason in finding.message


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_and_container_pickles_are_clean(tmp_path: Path, protocol: int) -> None:
    value = {
        "w": np.ones((2, 2), np.float32),
        "s": np.int64(3),
        "o": collections.OrderedDict(a=[1, (2, 3)], b={4}, c=frozenset({5}), d=bytearray(b"x")),
    }
    report = scan(write(tmp_path, pickle.dumps(value, protocol=protocol)))
    assert report.findings == ()


def test_torch_checkpoint_pickle_is_clean(tmp_path: Path) -> None:
    # data.pkl of torch.save({"w": tensor}) (protocol 2), assembled by hand: rebuild + storage via BINPERSID
    data = (
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02"
        b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04"
        b"ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x04tq\x08QK\x00"
        b"K\x02K\x02\x86q\tK\x02K\x01\x86q\n\x89ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0es."
    )
    pickletools.dis(data, out=io.StringIO())  # well-formed (checked without executing)
    report = scan(write(tmp_path, data))
    assert [f.rule_id for f in report.findings] == []


def test_duplicates_are_one_finding_with_a_count(tmp_path: Path) -> None:
    data = b"(cos\nsystem\nS'a'\n\x85Rcos\nsystem\nS'b'\n\x85Rl."
    [finding] = hits(scan(write(tmp_path, data)), "KG104")
    assert "(2 times)" in finding.evidence


def test_policy_allowlist_with_reason(tmp_path: Path) -> None:
    path = write(tmp_path, b"cmylib.models\nThing\n)R.")
    allow = {"allow": {"pickle_globals": [{"name": "mylib.*", "reason": "our own pipeline objects"}]}}
    assert hits(scan(path, policy_from_mapping(allow)), "KG104") == []
    assert len(hits(scan(path), "KG104")) == 1


def test_object_array_payload_in_npy(tmp_path: Path) -> None:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"cposix\nsystem\n(S'id'\ntR."
    [finding] = hits(scan(write(tmp_path, data, "weights.npy")), "KG104")
    assert "object array" in finding.message and "posix.system" in finding.message


def test_pickle_hidden_in_savedmodel_assets(tmp_path: Path) -> None:
    folder = pbenc.write_savedmodel(
        tmp_path / "sm",
        pbenc.graph([pbenc.node("x", "Identity")]),
        {"assets/tokenizer.pkl": b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."},
    )
    [finding] = hits(scan(folder), "KG104")
    assert finding.location.member == "assets/tokenizer.pkl"


def test_benign_object_array_has_no_kg104(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "x", None], dtype=object), allow_pickle=True)
    assert hits(scan(path), "KG104") == []
