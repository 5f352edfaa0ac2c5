"""The opcode pickle walker: benign pickles of every protocol, hand-assembled payloads, hostile bytes."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, PickleInfo, ReadProblem
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.pickle import ops as pickle_ops
from kerasguard.formats.pickle.ops import KEEP_TEXT, read_pickle
from kerasguard.policy import Limits

LOC = Location("test.pkl")


def walk(data: bytes, limits: Limits | None = None) -> tuple[PickleInfo, list[ReadProblem]]:
    art = Artifact(path="test.pkl", format="pickle", location=LOC)
    ctx = ReadContext(limits=limits or Limits())
    ctx.start_file()
    info = read_pickle(Blob.from_bytes(data, LOC, "test.pkl"), art, ctx)
    return info, art.problems


def assert_wellformed(data: bytes) -> None:
    """pickletools.dis checks stack and memo discipline without executing anything."""
    pickletools.dis(data, out=io.StringIO())


def names(info: PickleInfo) -> list[str]:
    return [f"{g.module}.{g.name}" for g in info.globals]


BENIGN = {
    "weights": np.arange(6, dtype=np.float32).reshape(2, 3),
    "meta": collections.OrderedDict(a=1, b=[1.5, "x", b"y", None, True]),
    "tuple": (1, 2, frozenset({3})),
    "scalar": np.float64(2.5),
}


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_benign_pickles_of_every_protocol_walk_cleanly(protocol: int) -> None:
    data = pickle.dumps(BENIGN, protocol=protocol)
    info, problems = walk(data)
    assert problems == []
    assert info.streams == 1
    assert info.opcodes == len(list(pickletools.genops(data)))
    assert info.protocol == (protocol if protocol >= 2 else None)
    assert all(g.resolved for g in info.globals)
    assert "collections.OrderedDict" in names(info)
    assert any(n.endswith("multiarray._reconstruct") or n.endswith("._frombuffer") for n in names(info))
    assert info.calls > 0


def test_global_os_system_with_reduce() -> None:
    data = b"cos\nsystem\n(S'echo pwned'\ntR."
    assert_wellformed(data)
    info, problems = walk(data)
    assert problems == []
    assert names(info) == ["os.system"]
    assert info.globals[0].opcode == "GLOBAL"
    assert info.globals[0].position == 0
    assert info.calls == 1


def test_stack_global_with_memoized_strings_is_resolved() -> None:
    # proto 4: push "os" (MEMOIZE), "system" (BINPUT 7), pop both, fetch them back from the memo
    data = (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94q\x07"  # memo[0]="os", memo[1]=memo[7]="system"
        b"00h\x00h\x07\x93\x8c\x02id\x85R."  # POP both, BINGET 0 and 7, STACK_GLOBAL, call
    )
    assert_wellformed(data)
    info, problems = walk(data)
    assert problems == []
    assert names(info) == ["os.system"]
    assert info.globals[0].resolved
    assert info.globals[0].opcode == "STACK_GLOBAL"
    assert info.calls == 1


def test_stack_global_with_long_binput_and_binunicode() -> None:
    data = (
        b"\x80\x03X" + struct.pack("<I", 10) + b"subprocess"
        b"r" + struct.pack("<I", 1) + b"0"  # LONG_BINPUT 1, POP
        b"j" + struct.pack("<I", 1) + b"X" + struct.pack("<I", 5) + b"Popen"  # LONG_BINGET 1, "Popen"
        b"\x93)R."
    )
    assert_wellformed(data)
    info, problems = walk(data)
    assert problems == []
    assert names(info) == ["subprocess.Popen"]
    assert info.globals[0].resolved


def test_stack_global_with_computed_operand_is_unresolved() -> None:
    # module name comes from calling str.lower() on a constant: only known at load time
    data = (
        b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02OS\x85R"  # str("OS") -> computed value
        b"\x8c\x06system\x93)R."
    )
    assert_wellformed(data)
    info, problems = walk(data)
    assert problems == []
    assert names(info)[0] == "builtins.str"
    unresolved = [g for g in info.globals if not g.resolved]
    assert len(unresolved) == 1
    assert unresolved[0].name == "system"
    assert unresolved[0].module == "<computed>"


def test_inst_in_a_protocol_0_text_pickle() -> None:
    data = b"(S'id'\nios\nsystem\n."
    assert_wellformed(data)
    info, problems = walk(data)
    assert problems == []
    assert names(info) == ["os.system"]
    assert info.globals[0].opcode == "INST"
    assert info.calls == 1


def test_protocol_0_benign_text_pickle() -> None:
    data = pickle.dumps({"a": [1, 2.0, "é", None]}, protocol=0)
    info, problems = walk(data)
    assert problems == []
    assert info.globals == []
    assert info.streams == 1


def test_binbytes8_declaring_a_terabyte_does_not_allocate(tmp_path: Path) -> None:
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc"
    _info, problems = walk(data)
    assert [p.kind for p in problems] == ["corrupt"]
    assert "1099511627776" in problems[0].message
    # the same through a file-backed blob (FileWindow, seek-based skipping)
    path = tmp_path / "tb.pkl"
    path.write_bytes(data)
    art = Artifact(path=str(path), format="pickle", location=Location(str(path)))
    ctx = ReadContext(limits=Limits())
    ctx.start_file()
    read_pickle(Blob.from_file(path, Location(str(path))), art, ctx)
    assert [p.kind for p in art.problems] == ["corrupt"]


def test_large_payloads_are_skipped_not_kept(tmp_path: Path) -> None:
    payload = b"\x00" * (3 << 20)
    data = pickle.dumps([payload, "tail"], protocol=4)
    path = tmp_path / "big.pkl"
    path.write_bytes(data)
    art = Artifact(path=str(path), format="pickle", location=Location(str(path)))
    ctx = ReadContext(limits=Limits())
    ctx.start_file()
    info = read_pickle(Blob.from_file(path, Location(str(path))), art, ctx)
    assert art.problems == []
    assert info.streams == 1


def test_every_truncation_is_reported() -> None:
    data = pickle.dumps(BENIGN, protocol=4)
    for cut in range(0, len(data)):
        _info, problems = walk(data[:cut])
        assert problems, f"prefix of {cut} bytes passed silently"
        assert problems[0].kind == "corrupt"


def test_truncated_payload_keeps_what_was_seen() -> None:
    data = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R"  # no STOP
    info, problems = walk(data)
    assert names(info) == ["os.system"]
    assert problems[0].kind == "corrupt"
    assert "STOP" in problems[0].message


def test_concatenated_pickles_are_all_walked() -> None:
    data = pickle.dumps([1, 2]) + b"cposix\nsystem\n(S'id'\ntR." + pickle.dumps("x", protocol=2)
    info, problems = walk(data)
    assert problems == []
    assert info.streams == 3
    assert names(info) == ["posix.system"]


def test_garbage_after_stop_is_corrupt() -> None:
    info, problems = walk(pickle.dumps(1) + b"\xff\xfe")
    assert info.streams == 1
    assert problems[0].kind == "corrupt"
    assert "0xff" in problems[0].message


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x80\x06N.", "protocol 6"),
        (b"\x80\x04R.", "underflow"),
        (b"\x80\x04h\x05.", "never stored"),
        (b"\x80\x04t.", "MARK"),
        (b"", "no pickle"),
        (b"Ixyz\n.", "decimal"),
        (b"\x80\x04T\xff\xff\xff\xff.", "negative"),
        (b"cos\nsystem", "newline"),
    ],
)
def test_malformed_streams_are_corrupt(data: bytes, needle: str) -> None:
    _info, problems = walk(data)
    assert [p.kind for p in problems] == ["corrupt"]
    assert needle in problems[0].message


def test_extension_codes_are_unresolved_imports() -> None:
    info, _problems = walk(b"\x80\x02\x82\x01)R.")
    assert [g.resolved for g in info.globals] == [False]
    assert info.globals[0].opcode == "EXT1"


def test_overlong_global_line_is_kept_truncated_and_walk_stays_in_sync() -> None:
    module = "a" * (KEEP_TEXT * 3)
    info, problems = walk(f"c{module}\nrun\n)R.".encode())
    assert problems == []
    assert len(info.globals[0].module) == KEEP_TEXT
    assert info.globals[0].name == "run"


def test_size_limit() -> None:
    data = pickle.dumps(list(range(2000)), protocol=2)
    _info, problems = walk(data, Limits(max_pickle_bytes=256))
    assert [p.kind for p in problems] == ["limit"]
    assert "max_pickle_bytes=256" in problems[0].message


def test_symbolic_stack_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickle_ops, "MAX_SYMBOLS", 1000)
    _info, problems = walk(b"(" + b"N" * 5000 + b"l.")
    assert [p.kind for p in problems] == ["limit"]
    _info, problems = walk(b"N" + b"p1\n" * 10 + b".")  # re-PUT of one key does not grow the memo
    assert problems == []


def test_deadline_stops_the_walk() -> None:
    art = Artifact(path="t", format="pickle", location=LOC)
    ctx = ReadContext(limits=Limits())
    ctx.deadline = time.monotonic() - 1
    read_pickle(Blob.from_bytes(pickle.dumps(list(range(10_000))), LOC, "t.pkl"), art, ctx)
    assert [p.kind for p in art.problems] == ["timeout"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    info, problems = walk(data)
    if not problems:  # only complete pickles may pass, and then as many as STOPs seen
        assert info.streams >= 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_after_a_proto_header(data: bytes) -> None:
    walk(b"\x80\x04" + data)


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.tuples(children, children)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(plain_data, st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL))
def test_fuzz_plain_data_matches_pickletools(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    info, problems = walk(data)
    assert problems == []
    assert info.opcodes == len(list(pickletools.genops(data)))
    expected = [
        arg.replace(" ", ".")
        for op, arg, _ in pickletools.genops(data)
        if op.name in ("GLOBAL", "INST") and isinstance(arg, str)
    ]
    assert [f"{g.module}.{g.name}" for g in info.globals if g.opcode in ("GLOBAL", "INST")] == expected
