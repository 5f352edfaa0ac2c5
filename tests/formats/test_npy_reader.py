"""The .npy header reader: real numpy files of every version, object arrays, hostile headers."""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.formats.npz import (
    NpyHeaderError,
    NpyHeaderLimit,
    dtype_facts,
    parse_npy_header,
    plain_dtype,
    read_npy,
)
from kerasguard.policy import Limits

LOC = Location("a.npy")


def npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=allow_pickle)
    return buf.getvalue()


def read(data: bytes, limits: Limits | None = None) -> Artifact:
    art = Artifact(path="a.npy", format="npy", location=LOC)
    ctx = ReadContext(limits=limits or Limits())
    ctx.start_file()
    read_npy(Blob.from_bytes(data, LOC, "a.npy"), art, ctx)
    return art


def handmade(header: str, version: int = 1, data: bytes = b"") -> bytes:
    raw = header.encode("latin-1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw + data
    return b"\x93NUMPY" + bytes([version, 0]) + len(raw).to_bytes(4, "little") + raw + data


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("fortran", [False, True])
def test_numpy_files_of_every_version(version: tuple[int, int], fortran: bool) -> None:
    array = np.arange(24, dtype="<f8").reshape(2, 3, 4)
    if fortran:
        array = np.asfortranarray(array)
    art = read(npy_bytes(array, version))
    assert art.problems == []
    [info] = art.npy_arrays
    assert info.descr == "<f8"
    assert info.shape == (2, 3, 4)
    assert info.fortran_order is fortran
    assert info.declared_bytes == info.stored_bytes == 24 * 8
    assert not info.has_object
    assert art.pickles == []


def test_structured_and_string_dtypes() -> None:
    array = np.zeros(3, dtype=[("name", "U5"), ("xy", "<f4", (2,)), ("flag", "?")])
    art = read(npy_bytes(array))
    [info] = art.npy_arrays
    assert info.declared_bytes == 3 * array.dtype.itemsize == info.stored_bytes
    assert not info.has_object


def test_object_array_data_is_walked_as_a_pickle() -> None:
    art = read(npy_bytes(np.array([1, "two", None], dtype=object), allow_pickle=True))
    assert art.problems == []
    [info] = art.npy_arrays
    assert info.has_object and info.descr == "|O"
    [walked] = art.pickles
    assert walked.role == "npy_object"
    assert walked.streams == 1
    assert {f"{g.module}.{g.name}" for g in walked.globals} <= {
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
    }


def test_object_field_in_a_structured_dtype_is_an_object_array() -> None:
    array = np.zeros(2, dtype=[("a", "<i4"), ("b", "O")])
    art = read(npy_bytes(array, allow_pickle=True))
    assert art.npy_arrays[0].has_object
    assert art.pickles[0].role == "npy_object"


def test_malicious_object_array_payload_is_recorded() -> None:
    payload = b"cos\nsystem\n(S'id'\ntR."
    art = read(handmade("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", data=payload))
    assert [f"{g.module}.{g.name}" for g in art.pickles[0].globals] == ["os.system"]


def test_object_array_from_a_file_is_walked_in_place(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"k": 1}], dtype=object), allow_pickle=True)
    art = Artifact(path=str(path), format="npy", location=Location(str(path)))
    ctx = ReadContext(limits=Limits())
    ctx.start_file()
    read_npy(Blob.from_file(path, Location(str(path))), art, ctx)
    assert art.problems == []
    assert art.pickles[0].streams == 1


def test_declared_bytes_are_not_allocated() -> None:
    art = read(handmade("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"))
    [info] = art.npy_arrays
    assert info.declared_bytes == 8 * 10**12
    assert info.stored_bytes == 0
    assert [p.kind for p in art.problems] == ["corrupt"]  # truncated data is reported as well


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x93NUMPY\x09\x00\x10\x00", "version 9.0"),
        (b"\x93NUMPY\x01\x00\xff\x00{}", "runs past"),
        (b"\x93NUMPY\x01", "preamble"),
        (handmade("[1, 2]"), "not a dict"),
        (handmade("{'descr': '<f4', 'shape': (1,)}"), "keys"),
        (handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}"), "keys"),
        (handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"), "negative"),
        (
            handmade("{'descr': '<f4', 'fortran_order': False, 'shape': " + str((1,) * 65) + "}"),
            "65 dimensions",
        ),
        (handmade("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}"), "tuple"),
        (handmade("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}"), "fortran_order"),
        (handmade("{'descr': '<q9z', 'fortran_order': False, 'shape': (1,)}"), "bad descr"),
        (handmade("{'descr': __import__('os').system('id'), 'fortran_order': 0, 'shape': ()}"), "literal"),
        (handmade("{'descr': " + "[" * 200 + "]" * 200 + "}"), "nesting"),
        (handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", version=3)[:-3], "runs past"),
        (b"\x93NUMPY\x03\x00\x02\x00\x00\x00\xff\xfe", "UTF-8"),
    ],
)
def test_hostile_headers_are_corrupt(data: bytes, needle: str) -> None:
    art = read(data)
    assert art.npy_arrays == []
    assert [p.kind for p in art.problems] == ["corrupt"]
    assert needle in art.problems[0].message


def test_header_length_limit() -> None:
    data = b"\x93NUMPY\x02\x00" + (50 << 20).to_bytes(4, "little")
    art = read(data)
    assert [p.kind for p in art.problems] == ["limit"]


def test_raw_pickle_named_npz_is_read_as_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.weights.npz"
    path.write_bytes(b"cposix\nsystem\n(S'id'\ntR.")
    ctx = ReadContext(limits=Limits())
    ctx.start_file()
    art = open_artifact(path, ctx)
    assert art.format == "pickle"
    [info] = art.pickles
    assert info.name == "model.weights.npz"
    assert info.role == "pickle"
    assert [g.module for g in info.globals] == ["posix"]


def test_protocol_4_pickle_named_npy_is_read_as_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    ctx = ReadContext(limits=Limits())
    ctx.start_file()
    art = open_artifact(path, ctx)
    assert art.pickles and art.problems == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([1, 2, 3]))
def test_fuzz_random_headers_raise_only_format_errors(body: bytes, version: int) -> None:
    size = len(body)
    prefix = b"\x93NUMPY" + bytes([version, 0])
    prefix += size.to_bytes(2 if version == 1 else 4, "little")
    with contextlib.suppress(NpyHeaderError, NpyHeaderLimit):
        parse_npy_header(prefix + body, len(prefix) + size, 1 << 20)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_random_header_text(text: str) -> None:
    art = read(handmade(text.encode("latin-1", "replace").decode("latin-1")))
    assert art.npy_arrays or art.problems


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=hnp.scalar_dtypes() | hnp.array_dtypes(max_size=3),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3),
    ),
    st.sampled_from([(1, 0), (2, 0), (3, 0)]),
)
def test_fuzz_round_trip_against_numpy(array: np.ndarray, version: tuple[int, int]) -> None:
    try:
        data = npy_bytes(array, version)
    except UnicodeEncodeError:  # field names outside latin-1 need version 3
        assume(False)
    art = read(data)
    assert art.problems == []
    [info] = art.npy_arrays
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    assert info.shape == loaded.shape
    assert info.declared_bytes == loaded.nbytes == info.stored_bytes


# ---------------------------------------------------------------- descrs sized without numpy


def _numpy_facts(descr: object) -> tuple[int, bool] | None:
    try:
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception:
        return None
    return int(dtype.itemsize), bool(dtype.hasobject)


DESCR_SPELLINGS = [
    order + kind + size
    for order in ("", "<", ">", "|", "=", "!")
    for kind in ("i", "u", "f", "c", "b", "O", "S", "U", "V", "M", "?", "e")
    for size in ("", "0", "01", "1", "2", "3", "4", "8", "9", "12", "16", "32", "64", "999999", "1000000")
]


@pytest.mark.parametrize("order", ["", "<", ">", "|", "="])
def test_every_plain_descr_is_sized_as_numpy_sizes_it(order: str) -> None:
    """The table never disagrees with numpy; what it does not know exactly it leaves to numpy."""
    known = 0
    for descr in DESCR_SPELLINGS:
        if not descr.startswith(order) or (order == "" and descr[:1] in "<>|=!"):
            continue
        ours = plain_dtype(descr)
        if ours is not None:
            known += 1
            assert ours == _numpy_facts(descr), descr
    assert known >= 20


@given(st.text(alphabet="<>|=!iufcbOSUVM0123456789[]", max_size=8))
@settings(max_examples=500, deadline=None)
def test_random_descr_strings_agree_with_numpy(descr: str) -> None:
    ours = plain_dtype(descr)
    if ours is not None:
        assert ours == _numpy_facts(descr)


def test_descrs_numpy_save_writes_for_weights_need_no_numpy() -> None:
    for dtype in (
        "float32",
        "float16",
        "float64",
        "int8",
        "uint8",
        "int64",
        "bool",
        "complex64",
        "O",
        "U7",
        "S3",
    ):
        descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
        assert plain_dtype(descr) == _numpy_facts(descr), descr
    assert dtype_facts([("a", "<f4"), ("b", "|O")]) == (12, True)  # structured (packed): numpy sizes it
    with pytest.raises(NpyHeaderError):
        dtype_facts("<q3")
