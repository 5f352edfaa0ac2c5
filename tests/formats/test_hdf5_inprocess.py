"""The pure-Python HDF5 reader against h5py: same answer on every file it accepts, declines the rest.

Real Keras files (the checked-in fixtures of four Keras versions and models saved in this run), files
crafted with h5py to reach each structure the reader accepts, and mutated files compared with the
resource-limited h5py child.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.hdf5 import inprocess
from kerasguard.formats.hdf5 import reader as hdf5
from kerasguard.formats.hdf5 import virtual as h5virtual
from kerasguard.formats.hdf5.child_client import (
    MAX_DESCRIPTION_BYTES,
    WalkResult,
    parse_answer,
    parse_response,
    trusted_answer,
)
from kerasguard.formats.hdf5.reader import max_answer_bytes, worker_for
from kerasguard.formats.hdf5.values import MAX_GROUP_DEPTH, estimate_object_size, estimate_size
from kerasguard.policy import Limits, MiB
from support import attacks, kerasfiles
from support.h5craft import declare_bomb, h5file, keras_weights, member_window, module_context

h5ctx = module_context()
BENIGN = Path(__file__).resolve().parent.parent / "data" / "benign"
LIMITS = Limits()


def plain_answer(blob: Blob) -> WalkResult | str | None:
    """The reader's answer for ``blob`` (a failure as its kind, as :func:`child`); None if it declines."""
    answer = inprocess.read_plain(blob, LIMITS.h5_max_objects, LIMITS.max_json_bytes, MAX_DESCRIPTION_BYTES)
    if answer is None:
        return None
    result = parse_answer(answer, LIMITS.h5_max_objects)
    # The scan takes the reader's answer without re-validating it: it must be what parse_answer gives.
    assert trusted_answer(answer) == result
    for described in answer.get("objects", ()):  # the reader's byte budget counts as the child's
        assert estimate_object_size(described) == estimate_size(described)
    return result if isinstance(result, WalkResult) else result.kind


def plain(blob: Blob) -> WalkResult | None:
    result = plain_answer(blob)
    assert not isinstance(result, str), result
    return result


def plain_failure(blob: Blob) -> str | None:
    result = plain_answer(blob)
    return result if isinstance(result, str) else None


def child(blob: Blob, ctx: ReadContext) -> WalkResult | str:
    """What the h5py child says of the same bytes (a failure as its kind)."""
    assert blob.path is not None
    size = None if blob.offset == 0 and blob.size == blob.path.stat().st_size else blob.size
    request = {
        "op": "read",
        "path": str(blob.path.absolute()),
        "offset": blob.offset,
        "size": size,
        "max_objects": LIMITS.h5_max_objects,
        "max_json_bytes": LIMITS.max_json_bytes,
        "max_description_bytes": MAX_DESCRIPTION_BYTES,
        "cpu_seconds": 30,
    }
    answer = worker_for(ctx).request(request, 30.0, max_answer_bytes(LIMITS))
    if isinstance(answer, bytes):
        parsed = parse_response(answer, LIMITS.h5_max_objects)
        return parsed if isinstance(parsed, WalkResult) else parsed.kind
    return answer.kind


def file_blob(path: Path) -> Blob:
    return Blob.from_file(path, Location(str(path)))


def member_blob(zip_path: Path, name: str = "model.weights.h5") -> Blob:
    offset, size = member_window(zip_path, name)
    return Blob(location=Location(str(zip_path)), name=name, size=size, path=zip_path, offset=offset)


def assert_same(blob: Blob, ctx: ReadContext) -> WalkResult:
    """The reader accepts ``blob`` and says exactly what h5py says."""
    ours = plain(blob)
    assert ours is not None, f"{blob.location} declined"
    assert ours == child(blob, ctx)
    return ours


# ------------------------------------------------------------------------ real Keras files


def benign_hdf5() -> list[Path]:
    return sorted(p for p in BENIGN.rglob("*.h5"))


@pytest.mark.parametrize("path", benign_hdf5(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_hdf5_files_match_h5py(path: Path, h5ctx: ReadContext) -> None:
    assert_same(file_blob(path), h5ctx)


@pytest.mark.parametrize("path", sorted(BENIGN.rglob("*.keras")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_keras_weights_match_h5py(path: Path, h5ctx: ReadContext) -> None:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        names = [i.filename for i in zf.infolist() if i.filename.endswith(".h5")]
    for name in names:
        assert_same(member_blob(path, name), h5ctx)


@pytest.mark.parametrize("builder", ["mlp", "cnn", "rnn", "custom_layer", "nested_submodel"])
def test_keras_saved_in_this_run_matches_h5py(builder: str, tmp_path: Path, h5ctx: ReadContext) -> None:
    saved = kerasfiles.saved(builder)
    assert_same(member_blob(saved), h5ctx)
    from support import kmodels

    model = kmodels.BENIGN[builder]()
    model.save(tmp_path / "legacy.h5")
    model.save_weights(tmp_path / "only.weights.h5")
    result = assert_same(file_blob(tmp_path / "legacy.h5"), h5ctx)
    assert "model_config" in result.json_attrs
    assert_same(file_blob(tmp_path / "only.weights.h5"), h5ctx)


# ------------------------------------------------------------------------ crafted, accepted


def _attrs_of_every_kind(f: h5py.File) -> None:
    keras_weights(f)
    g = f.create_group("kinds")
    for dtype in ("i1", "u1", "<i2", ">i4", "<u8", "<f2", ">f4", "<f8", ">u2"):
        g.attrs[f"scalar_{dtype}"] = np.array(7.5 if "f" in dtype else 7, dtype=dtype)
        g.attrs[f"array_{dtype}"] = np.arange(6, dtype=dtype).reshape(2, 3)
    g.attrs["vlen"] = "unicode ✓ text"
    g.attrs["vlen_list"] = ["a", "bb", ""]
    g.attrs["fixed"] = np.bytes_(b"fixed\x00\x00")
    g.attrs["fixed_list"] = np.array([b"x", b"yy"])
    g.attrs["big"] = np.zeros(6000, dtype="f8")  # near the 64 KiB limit of a version 1 header message
    g.attrs["long_list"] = np.arange(100)  # more than 64 elements
    g.attrs.create("empty", h5py.Empty("f4"))
    g.attrs["long_text"] = "x" * 1000
    many = f.create_group("many")
    for i in range(70):
        many.attrs[f"a{i:02d}"] = i
    deep = f
    for i in range(20):
        deep = deep.create_group(f"d{i}")
    deep.create_dataset("leaf", data=np.ones((2, 2), dtype="f8"))
    f["kinds/again"] = f["layers/dense/vars/0"]  # a second hard link
    f.create_dataset("scalar", data=np.float32(1.0))
    f.create_dataset("empty_shape", shape=(0, 4), dtype="f4")
    f.create_dataset("compact", data=np.arange(4, dtype="i4"), dtype="i4")
    f.create_dataset("text", data=np.array([b"ab", b"cd"]))


def _legacy_split_config(f: h5py.File) -> None:
    text = b'{"class_name": "Sequential", "config": {"layers": []}}'
    f.attrs["model_config0"] = np.bytes_(text[:20])
    f.attrs["model_config1"] = np.bytes_(text[20:])
    f.attrs["training_config"] = '{"loss": "mse"}'
    f.attrs["keras_version"] = "2.15.0"
    mw = f.create_group("model_weights")
    mw.attrs["layer_names"] = np.array([b"dense"])
    layer = mw.create_group("dense")
    layer.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
    layer.create_dataset("dense/kernel:0", data=np.zeros((3, 2), dtype="f4"))


@pytest.mark.parametrize(
    "build", [_attrs_of_every_kind, _legacy_split_config, keras_weights], ids=lambda b: b.__name__
)
def test_crafted_plain_files_match_h5py(
    build: Callable[[h5py.File], Any], tmp_path: Path, h5ctx: ReadContext
) -> None:
    result = assert_same(file_blob(h5file(tmp_path / "f.h5", build)), h5ctx)
    assert result.objects


def test_crafted_file_values_are_what_h5py_reads(tmp_path: Path, h5ctx: ReadContext) -> None:
    """A few values spelled out, so that a shared mistake in both readers would still show."""
    result = assert_same(file_blob(h5file(tmp_path / "f.h5", _attrs_of_every_kind)), h5ctx)
    objects = {o.path: o for o in result.objects}
    kinds = dict(objects["/kinds"].attrs)
    assert kinds["vlen"] == "unicode ✓ text"
    assert kinds["array_>i4"] == "[[0, 1, 2], [3, 4, 5]]"
    assert kinds["scalar_<f2"] == "7.5"
    assert kinds["big"] == "<array shape (6000,) dtype float64>"
    assert kinds["long_list"] == "<array shape (100,) dtype int64>"
    assert kinds["empty"] == "<empty>"
    assert dict(objects["/many"].attrs)["<more>"] == "6 more attributes not read"
    assert objects["/kinds/again"].kind == "dataset"  # first in name order, so the object itself
    assert objects["/layers/dense/vars/0"].kind == "hard_link"
    assert objects["/layers/dense/vars/0"].link_target == "/kinds/again"
    assert objects["/text"].dtype == "|S2"
    assert objects["/compact"].layout in ("compact", "contiguous")


def test_in_memory_bytes_are_read_like_the_file(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "f.h5", _legacy_split_config)
    from_memory = plain(Blob.from_bytes(path.read_bytes(), Location("mem"), "f.h5"))
    assert from_memory is not None and from_memory == plain(file_blob(path))


# ------------------------------------------------------------------------ attack layouts, answered


def _soft(f: h5py.File) -> None:
    keras_weights(f)
    f["alias"] = h5py.SoftLink("/layers")


def _external_link(f: h5py.File) -> None:
    keras_weights(f)
    f["ext"] = h5py.ExternalLink("other.h5", "/x")


def _external_storage(f: h5py.File) -> None:
    f.create_dataset("x", shape=(4,), dtype="f4", external=[("/etc/hostname", 0, 16)])


def _chunked(f: h5py.File) -> None:
    f.create_dataset("x", data=np.zeros((8, 8), dtype="f4"), chunks=(4, 4))


def _bomb(f: h5py.File) -> None:
    declare_bomb(f, "bomb", 3 * 2**30)


def _unwritten(f: h5py.File) -> None:
    f.create_dataset("x", shape=(1024, 1024), dtype="f4")  # declared, never stored


def _partial_chunks(f: h5py.File) -> None:
    """Partly written chunked datasets: only the chunks written are stored, filtered or not."""
    g = f.create_group("deep/er")
    options: list[dict[str, Any]] = [
        {},
        {"compression": "gzip"},
        {"compression": "gzip", "shuffle": True},
        {"fletcher32": True},
        {"compression": "gzip", "compression_opts": 9, "shuffle": True, "fletcher32": True},
        {"scaleoffset": 0},
    ]
    for i, opts in enumerate(options):
        for j, (shape, chunks) in enumerate([((100, 60), (7, 13)), ((40,), (8,)), ((6, 5, 4), (2, 5, 1))]):
            dtype = "i4" if "scaleoffset" in opts else "f4"
            ds = g.create_dataset(f"d{i}_{j}", shape=shape, dtype=dtype, chunks=chunks, **opts)
            corner = (slice(0, 3),) * len(shape)
            part = ds[corner].shape
            ds[corner] = np.arange(math.prod(part)).reshape(part)
    full = f.create_dataset("full", data=np.random.default_rng(0).random((300, 70)), chunks=(16, 16))
    full.attrs["note"] = "every chunk written"
    # enough chunks for a B-tree of more than one level (64 entries a node)
    many = f.create_dataset("many", shape=(5000,), dtype="u1", chunks=(1,), compression="gzip")
    many[::7] = 1
    f.create_dataset("nbit", data=np.arange(50, dtype="i4"), chunks=(10,), compression="lzf")


def _many_links(f: h5py.File) -> None:
    """Several soft and external links in one group, nested groups and a compact root."""
    keras_weights(f)
    g = f["layers/dense"]
    g["soft_a"] = h5py.SoftLink("/layers/dense/vars/0")
    g["soft_b"] = h5py.SoftLink("relative/path")
    g["ext_a"] = h5py.ExternalLink("/tmp/a.h5", "/secret")
    g["ext_b"] = h5py.ExternalLink("b.h5", "/x/y")
    g["hard"] = f["layers/dense/vars/1"]
    sub = g.create_group("sub")  # a new group inside a compact one
    sub["deep_soft"] = h5py.SoftLink("/nowhere")
    sub.create_dataset("w", data=np.ones(3, dtype="f8"))
    f["root_ext"] = h5py.ExternalLink("c.h5", "/")  # the root group itself becomes compact
    f.create_group("empty")
    f.attrs["note"] = "root attributes still read"


def _empty_compact(f: h5py.File) -> None:
    g = f.create_group("g")
    g["x"] = h5py.ExternalLink("x.h5", "/x")
    del g["x"]  # a compact group with no links left
    f.create_group("after").attrs["n"] = 1


def _external_files(f: h5py.File) -> None:
    f.create_dataset(
        "several",
        shape=(10, 4),
        dtype="f8",
        external=[("/etc/passwd", 0, 100), ("relative.bin", 4096, 200), ("/dev/zero", 0, h5py.h5f.UNLIMITED)],
    )
    f.create_dataset("exact", shape=(8,), dtype="u1", external=[("a.bin", 10, 4), ("b.bin", 0, 4)])
    f.create_dataset("unlimited", shape=(3,), dtype="i2", external=[("/etc/shadow", 0, h5py.h5f.UNLIMITED)])


def _virtual(f: h5py.File) -> None:
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource("src.h5", "x", shape=(4,))
    f.create_virtual_dataset("v", layout)


def _virtual_sources(f: h5py.File) -> None:
    """Several files and datasets, the same file repeated, the file itself ("."), strided pieces
    (irregular hyperslabs in the v1 encoding h5py writes), a non-ASCII name, inside nested groups."""
    layout = h5py.VirtualLayout(shape=(8, 10), dtype="i4")
    layout[0, :] = h5py.VirtualSource("a.h5", "x", shape=(10,))
    layout[1, :] = h5py.VirtualSource("a.h5", "y", shape=(10,))
    layout[2, ::2] = h5py.VirtualSource("/tmp/host.h5", "x", shape=(10,))[1:10:2]
    layout[3:5, :] = h5py.VirtualSource(".", "/g/data", shape=(2, 10))
    layout[5:8:2, 1:9:4] = h5py.VirtualSource("\u00fc.h5", "deep/x", shape=(4, 4))[0:4:2, 0:4:2]
    f.create_virtual_dataset("g/h/v", layout, fillvalue=-1)
    f.create_dataset("g/data", data=np.zeros((2, 10), dtype="i4"))


def _virtual_huge(f: h5py.File) -> None:
    """Bounds past 2**32: regular hyperslabs in the v2 encoding."""
    layout = h5py.VirtualLayout(shape=(2**33, 3), dtype="u1")
    layout[2**32 : 2**32 + 10, :] = h5py.VirtualSource("a.h5", "x", shape=(10, 3))
    layout[0 : 2**33 : 2**31, 1] = h5py.VirtualSource("b.h5", "x", shape=(4,))
    f.create_virtual_dataset("v", layout)


def _virtual_over_64(f: h5py.File) -> None:
    """100 sources: the child lists the first 64."""
    layout = h5py.VirtualLayout(shape=(100,), dtype="u1")
    for i in range(100):
        layout[i] = h5py.VirtualSource(f"f{i % 3}.h5", f"d{i}", shape=(1,))
    f.create_virtual_dataset("v", layout)


def _virtual_none(f: h5py.File) -> None:
    """ "none" selections (only the low-level API makes them) next to an all/hyperslab mapping."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    vspace, sspace = h5py.h5s.create_simple((6,)), h5py.h5s.create_simple((6,))
    vspace.select_none()
    sspace.select_none()
    dcpl.set_virtual(vspace, b"x.h5", b"d", sspace)
    vspace = h5py.h5s.create_simple((6,))
    vspace.select_hyperslab((0,), (1,), (2,), (3,))
    dcpl.set_virtual(vspace, b"y.h5", b"e", h5py.h5s.create_simple((3,)))
    tid = h5py.h5t.py_create(np.dtype("f4"))
    h5py.h5d.create(f.id, b"v", tid, h5py.h5s.create_simple((6,)), dcpl=dcpl)


VIRTUAL = [_virtual, _virtual_sources, _virtual_huge, _virtual_over_64, _virtual_none]


ANSWERED = [
    _soft,
    _external_link,
    _external_storage,
    _chunked,
    _bomb,
    _unwritten,
    _partial_chunks,
    _many_links,
    _empty_compact,
    _external_files,
    *VIRTUAL,
]


@pytest.mark.parametrize("build", ANSWERED, ids=lambda b: b.__name__)
def test_attack_layouts_are_answered_as_h5py_answers(
    build: Callable[[h5py.File], Any], tmp_path: Path, h5ctx: ReadContext
) -> None:
    assert_same(file_blob(h5file(tmp_path / "f.h5", build)), h5ctx)


@pytest.mark.parametrize("name", sorted(n for n in attacks.KERAS_ATTACKS if n in attacks.HDF5_ATTACKS))
def test_hdf5_attack_builders_are_answered_in_process(name: str, tmp_path: Path, h5ctx: ReadContext) -> None:
    build, _rules = attacks.KERAS_ATTACKS[name]
    out = build(kerasfiles.saved("mlp"), tmp_path / f"{name}.keras")
    assert_same(member_blob(out), h5ctx)


def test_answered_values_are_what_h5py_reads(tmp_path: Path, h5ctx: ReadContext) -> None:
    """A few fields spelled out, so that a shared mistake in both readers would still show."""
    result = assert_same(file_blob(h5file(tmp_path / "f.h5", _many_links)), h5ctx)
    objects = {o.path: o for o in result.objects}
    assert objects["/layers/dense/ext_a"].kind == "external_link"
    assert objects["/layers/dense/ext_a"].link_target == "/tmp/a.h5:/secret"
    assert objects["/layers/dense/soft_b"].link_target == "relative/path"
    result = assert_same(file_blob(h5file(tmp_path / "b.h5", _bomb)), h5ctx)
    (bomb,) = result.objects
    assert bomb.stored_bytes == 0 and bomb.filters == ("deflate",) and bomb.layout == "chunked"
    result = assert_same(file_blob(h5file(tmp_path / "e.h5", _external_files)), h5ctx)
    unlimited = {o.path: o for o in result.objects}["/unlimited"]
    assert unlimited.external == (("/etc/shadow", 0, 2**64 - 1),)


# ------------------------------------------------------------------------ declined


def _bool_attr(f: h5py.File) -> None:
    f.attrs["flag"] = True  # an enum type in HDF5


def _huge_vlen_config(f: h5py.File) -> None:
    f.attrs["model_config"] = "x" * (9 * MiB)


def _dense_links(f: h5py.File) -> None:
    g = f.create_group("g")
    for i in range(9):
        g[f"s{i}"] = h5py.SoftLink("/x")
    g["ext"] = h5py.ExternalLink("x.h5", "/x")  # more than 8 links: a fractal heap


def _resizable(f: h5py.File) -> None:
    f.create_dataset("x", shape=(4, 4), maxshape=(None, 4), dtype="f4", chunks=(2, 2))


def _virtual_unlimited(f: h5py.File) -> None:
    """An unlimited mapping: a resizable dataspace and unlimited hyperslabs."""
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4", maxshape=(None,))
    layout[0:] = h5py.VirtualSource("src.h5", "x", shape=(4,), maxshape=(None,))[0:]
    f.create_virtual_dataset("v", layout)


DECLINED = [_bool_attr, _huge_vlen_config, _virtual_unlimited, _dense_links, _resizable]


@pytest.mark.parametrize("build", DECLINED, ids=lambda b: b.__name__)
def test_anything_outside_the_known_layouts_is_declined(
    build: Callable[[h5py.File], Any], tmp_path: Path
) -> None:
    assert plain(file_blob(h5file(tmp_path / "f.h5", build))) is None


def test_newer_file_formats_and_userblocks_are_declined(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "latest.h5", "w", libver="latest") as f:
        keras_weights(f)
    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=512) as f:
        keras_weights(f)
    assert plain(file_blob(tmp_path / "latest.h5")) is None
    assert plain(file_blob(tmp_path / "ub.h5")) is None


def test_truncated_files_fail_as_in_the_child_and_extended_ones_are_declined(
    tmp_path: Path, h5ctx: ReadContext
) -> None:
    """A file shorter than its superblock says: libhdf5 refuses to open it, and so does the reader
    (without starting the child); a shorter prefix than the superblock, or a longer file, declines."""
    path = h5file(tmp_path / "f.h5", keras_weights)
    data = path.read_bytes()
    for cut in (0, 8, 95):
        assert plain(Blob.from_bytes(data[:cut], Location("t"), "t.h5")) is None
    for cut in (96, len(data) // 2, len(data) - 1):
        cut_path = tmp_path / f"cut{cut}.h5"
        cut_path.write_bytes(data[:cut])
        assert plain_failure(file_blob(cut_path)) == "corrupt"
        assert child(file_blob(cut_path), h5ctx) == "corrupt"
    assert plain(Blob.from_bytes(data + b"\x00", Location("t"), "t.h5")) is None


def test_mutated_superblocks_are_declined_or_fail_as_in_the_child(tmp_path: Path, h5ctx: ReadContext) -> None:
    """Every superblock byte (end-of-file address included) set to a few values: declined, or the
    child's exact answer (for a declared end past the file's end: the child's failure)."""
    data = h5file(tmp_path / "f.h5", keras_weights).read_bytes()
    refused = 0
    for pos in range(96):
        for value in (0x00, 0x01, 0x7F, 0xFF):
            mutated = bytearray(data)
            mutated[pos] = value
            check_mutant(bytes(mutated), tmp_path, h5ctx)
            refused += plain_failure(Blob.from_bytes(bytes(mutated), Location("t"), "t.h5")) is not None
    assert refused > 0


def test_repeated_link_names_are_declined(tmp_path: Path) -> None:
    """Two links named "0" in one group (the heap's "1" renamed): libhdf5 would find only one."""
    path = h5file(tmp_path / "f.h5", keras_weights)
    data = bytearray(path.read_bytes())
    pos = data.find(b"\x000\x00\x00\x00\x00\x00\x00\x001\x00")
    assert pos > 0, "heap layout of the two dataset names"
    data[pos + 9] = ord("0")
    assert plain(Blob.from_bytes(bytes(data), Location("t"), "t.h5")) is None


def test_a_modification_time_of_another_version_is_declined(tmp_path: Path, h5ctx: ReadContext) -> None:
    """libhdf5 opens no dataset whose modification time message (0x12) is not version 1 (found by
    scripts/fuzz_hdf5_inprocess.py): the reader leaves such a file to the child, which reports the error."""

    def timed(f: h5py.File) -> None:
        f.create_dataset("v", data=np.zeros(4, "f4"), track_times=True)

    path = h5file(tmp_path / "f.h5", timed)
    data = bytearray(path.read_bytes())
    # type 0x12, size 8, flags 0 or 1 (constant), 3 reserved bytes, then the version byte
    positions = [i for i in _find_all(bytes(data), b"\x12\x00\x08\x00") if data[i + 8] == 1]
    assert positions, "h5py writes a modification time for a dataset that tracks times"
    data[positions[0] + 8] = 2
    path.write_bytes(bytes(data))
    assert plain(file_blob(path)) is None
    answer = child(file_blob(path), h5ctx)
    assert isinstance(answer, WalkResult)
    assert any("mtime" in e.message for e in answer.errors)


def test_a_file_changed_to_a_shorter_one_while_read_is_declined(tmp_path: Path) -> None:
    path = h5file(tmp_path / "f.h5", keras_weights)
    blob = file_blob(path)
    path.write_bytes(path.read_bytes()[:200])
    assert plain(blob) is None


# ------------------------------------------------------------------------ mutations against h5py


def _fuzz_base(f: h5py.File) -> None:
    keras_weights(f)
    f.attrs["keras_version"] = "3.15.1"
    f.attrs["model_config"] = '{"class_name": "Sequential"}'
    f["layers"].attrs["names"] = np.array([b"dense", b"dropout"])


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return h5file(tmp_path_factory.mktemp("fz") / "base.h5", _fuzz_base).read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_are_declined_or_read_as_h5py_reads_them(
    data: st.DataObject, fuzz_base: bytes, h5ctx: ReadContext, tmp_path: Path
) -> None:
    mutated = bytearray(fuzz_base)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    path = tmp_path / f"m{data.draw(st.integers(0, 10**9))}.h5"
    path.write_bytes(bytes(mutated))
    try:
        blob = file_blob(path)
        ours = plain_answer(blob)
        if ours is not None:
            assert ours == child(blob, h5ctx)
    finally:
        path.unlink()


def _attack_base(f: h5py.File) -> None:
    """Every attack layout the reader answers, small: a chunk B-tree of two levels, filters, external
    files, soft links in a symbol table and a compact group with hard, soft and external links."""
    keras_weights(f)
    many = f.create_dataset("many", shape=(80,), dtype="u1", chunks=(1,), compression="gzip", shuffle=True)
    many[::1] = 1
    declare_bomb(f, "bomb", 2**30)
    f.create_dataset(
        "ext", shape=(4,), dtype="u1", external=[("/etc/passwd", 0, 2), ("b", 0, h5py.h5f.UNLIMITED)]
    )
    f["layers/soft"] = h5py.SoftLink("/layers/dense")
    f["vars/ext"] = h5py.ExternalLink("/tmp/x.h5", "/y")
    f["vars/soft"] = h5py.SoftLink("/many")
    f["vars/hard"] = f["many"]


@pytest.fixture(scope="module")
def attack_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int]]:
    """The file's bytes and the offsets of its metadata (where mutations find the most)."""
    path = h5file(tmp_path_factory.mktemp("fz") / "attack.h5", _attack_base)
    data = path.read_bytes()
    hot = [i for sig in (b"TREE", b"SNOD", b"HEAP", b"GCOL") for i in _find_all(data, sig)]
    with h5py.File(path, "r") as f:
        f.visit(lambda name: hot.append(h5py.h5o.get_info(f.id, name.encode()).addr) and None)
    return data, sorted(set(hot))


def _find_all(data: bytes, sig: bytes) -> list[int]:
    out, pos = [], data.find(sig)
    while pos >= 0:
        out.append(pos)
        pos = data.find(sig, pos + 1)
    return out


def test_attack_base_is_answered(
    attack_base: tuple[bytes, list[int]], tmp_path: Path, h5ctx: ReadContext
) -> None:
    path = tmp_path / "base.h5"
    path.write_bytes(attack_base[0])
    result = assert_same(file_blob(path), h5ctx)
    kinds = {o.path: o.kind for o in result.objects}
    assert kinds["/vars/ext"] == "external_link" and kinds["/layers/soft"] == "soft_link"


def check_mutant(data: bytes, tmp_path: Path, h5ctx: ReadContext) -> bool:
    """The reader declines ``data`` or says what h5py says; True if it answered."""
    path = tmp_path / "mutant.h5"
    path.write_bytes(data)
    try:
        blob = file_blob(path)
        ours = plain_answer(blob)
        if ours is not None:
            assert ours == child(blob, h5ctx)
        return ours is not None
    finally:
        path.unlink()


FUZZ_EXAMPLES = int(os.environ.get("KG_H5_FUZZ_EXAMPLES", "200"))


@settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_attack_layouts_are_declined_or_read_as_h5py_reads_them(
    data: st.DataObject, attack_base: tuple[bytes, list[int]], h5ctx: ReadContext, tmp_path: Path
) -> None:
    """Byte mutations near B-tree nodes, heaps and object headers (link, layout, filter and external
    file messages): each mutant is declined or answered exactly as the child answers it."""
    base, hot = attack_base
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.sampled_from(hot)) + data.draw(st.integers(0, 400))
        if pos < len(mutated):
            mutated[pos] = data.draw(st.integers(0, 255))
    check_mutant(bytes(mutated), tmp_path, h5ctx)


def _tree_nodes(data: bytes, kind: int) -> list[int]:
    return [i for i in _find_all(data, b"TREE") if data[i + 4] == kind]


def test_hostile_chunk_btrees_are_declined(
    attack_base: tuple[bytes, list[int]], tmp_path: Path, h5ctx: ReadContext
) -> None:
    """Cycles, bad signatures, huge entry counts and wrong levels in a chunk index never raise."""
    base = attack_base[0]
    nodes = _tree_nodes(base, 1)
    assert len(nodes) >= 3, "a two-level chunk B-tree"
    root = next(i for i in nodes if base[i + 5] == 1)
    mutants: list[bytes] = []
    for node in nodes:
        for patch in (b"TRE\x00", b"TREE\x00", b"TREE\x02"):
            mutants.append(base[:node] + patch + base[node + len(patch) :])
        for count in (65, 0xFFFF):
            mutants.append(base[: node + 6] + struct.pack("<H", count) + base[node + 8 :])
        mutants.append(base[: node + 5] + b"\x07" + base[node + 6 :])  # a level it is not at
        mutants.append(base[: node + 8] + struct.pack("<Q", node) + base[node + 16 :])  # sibling to itself
    # a child pointing back at the root: a cycle
    first_child = root + 24 + 8 + 8 * 2
    mutants.append(base[:first_child] + struct.pack("<Q", root) + base[first_child + 8 :])
    answered = sum(check_mutant(m, tmp_path, h5ctx) for m in mutants)
    assert answered == 0


def test_hostile_link_messages_never_differ(
    attack_base: tuple[bytes, list[int]], tmp_path: Path, h5ctx: ReadContext
) -> None:
    """Every byte of the compact group's link messages set to a few values: declined or exact."""
    base = attack_base[0]
    start = base.find(b"/tmp/x.h5\x00/y\x00")
    assert start > 0
    for pos in range(start - 40, start + 16):
        for value in (0x00, 0x01, 0x40, 0xFF):
            mutated = bytearray(base)
            mutated[pos] = value
            check_mutant(bytes(mutated), tmp_path, h5ctx)


def test_truncated_attack_files_are_declined_or_refused(attack_base: tuple[bytes, list[int]]) -> None:
    base = attack_base[0]
    for cut in range(0, len(base), max(1, len(base) // 50)):
        blob = Blob.from_bytes(base[:cut], Location("t"), "t.h5")
        assert plain_failure(blob) == ("corrupt" if cut >= 96 else None)


def test_reads_are_bounded_on_a_many_object_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of metadata reads bounds the time on any input: past it the reader declines."""

    def wide(f: h5py.File) -> None:
        for i in range(300):
            f.create_group(f"g{i:03d}")

    path = h5file(tmp_path / "wide.h5", wide)
    assert plain(file_blob(path)) is not None
    monkeypatch.setattr(inprocess, "MAX_READS", 50)
    assert plain(file_blob(path)) is None


def test_object_limit_sends_the_file_to_the_child(tmp_path: Path) -> None:
    path = h5file(tmp_path / "f.h5", keras_weights)
    blob = file_blob(path)
    assert inprocess.read_plain(blob, 2, LIMITS.max_json_bytes, MAX_DESCRIPTION_BYTES) is None
    assert inprocess.read_plain(blob, 100, LIMITS.max_json_bytes, MAX_DESCRIPTION_BYTES) is not None


def test_struct_helpers_refuse_short_input() -> None:
    with pytest.raises(inprocess.Decline):
        inprocess.dataspace(b"\x01\x02")
    with pytest.raises(inprocess.Decline):
        inprocess.datatype(b"\x11\x20\x1f\x00\x04\x00\x00\x00", 0, allow_vlen=False)


@pytest.mark.parametrize("budget", ["MAX_READ_BYTES", "MAX_TOTAL_BYTES"])
def test_byte_budgets_send_the_file_to_the_child(
    budget: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One structure larger than MAX_READ_BYTES, or more than MAX_TOTAL_BYTES read, declines."""
    path = h5file(tmp_path / "f.h5", _legacy_split_config)
    assert plain(file_blob(path)) is not None
    monkeypatch.setattr(inprocess, budget, 600)
    assert plain(file_blob(path)) is None
    assert plain(Blob.from_bytes(path.read_bytes(), Location("m"), "f.h5")) is None


def test_a_heap_declaring_more_than_the_file_is_declined(tmp_path: Path) -> None:
    data = bytearray(h5file(tmp_path / "f.h5", keras_weights).read_bytes())
    pos = data.find(b"HEAP")
    data[pos + 8 : pos + 16] = (2**40).to_bytes(8, "little")  # data segment size
    assert plain(Blob.from_bytes(bytes(data), Location("m"), "f.h5")) is None


# ------------------------------------------------------------------------ hostile virtual mappings


def _vds_base(f: h5py.File) -> None:
    _virtual_sources(f)
    _virtual_huge(f.create_group("huge"))  # v1 irregular and v2 regular hyperslabs, all selections


@pytest.fixture(scope="module")
def vds_base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return h5file(tmp_path_factory.mktemp("vds") / "vds.h5", _vds_base).read_bytes()


def vds_objects(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each global heap object (the VDS mappings) in ``data``."""
    out = []
    for heap in _find_all(data, b"GCOL"):
        end, pos = heap + struct.unpack_from("<Q", data, heap + 8)[0], heap + 16
        while pos + 16 <= end and struct.unpack_from("<H", data, pos)[0] != 0:
            size = struct.unpack_from("<Q", data, pos + 8)[0]
            out.append((pos + 16, size))
            pos += 16 + (size + 7) // 8 * 8
    return out


def with_checksum(data: bytearray, start: int, size: int) -> bytes:
    """``data`` with the mapping at ``start`` given a valid checksum again (so its parser is reached)."""
    data[start + size - 4 : start + size] = struct.pack(
        "<I", h5virtual.lookup3(bytes(data[start : start + size - 4]))
    )
    return bytes(data)


def test_virtual_mappings_are_answered(vds_base: bytes, tmp_path: Path, h5ctx: ReadContext) -> None:
    path = tmp_path / "vds.h5"
    path.write_bytes(vds_base)
    result = assert_same(file_blob(path), h5ctx)
    (v,) = (o for o in result.objects if o.path == "/g/h/v")
    assert v.layout == "virtual" and v.stored_bytes == 0
    assert v.virtual_sources == ("a.h5:x", "a.h5:y", "/tmp/host.h5:x", ".:/g/data", "\u00fc.h5:deep/x")
    assert len(vds_objects(vds_base)) == 2


def test_hostile_virtual_mappings_never_differ(vds_base: bytes, tmp_path: Path, h5ctx: ReadContext) -> None:
    """Every byte of a mapping set to a few values, its checksum fixed up: declined or exact. The
    same bytes without the fix-up always decline (libhdf5 refuses a wrong checksum)."""
    answered = 0
    for start, size in vds_objects(vds_base):
        for pos in range(start, start + size - 4):
            for value in {0x00, 0xFF, (vds_base[pos] + 1) & 0xFF} - {vds_base[pos]}:
                mutated = bytearray(vds_base)
                mutated[pos] = value
                assert plain(Blob.from_bytes(bytes(mutated), Location("m"), "m.h5")) is None
                answered += check_mutant(with_checksum(mutated, start, size), tmp_path, h5ctx)
    assert answered > 0  # names changed within their bounds are still answered


@pytest.mark.parametrize("count", [0, 6, 2**16, 2**32 - 1, 2**63, 2**64 - 1])
def test_huge_virtual_counts_never_differ(
    count: int, vds_base: bytes, tmp_path: Path, h5ctx: ReadContext
) -> None:
    """The entry count, a hyperslab's block count and its rank set out of range: declined or exact."""
    start, size = vds_objects(vds_base)[0]
    blob = vds_base[start : start + size]
    fields = [start + 1]  # the entry count (8 bytes)
    first_hyper = blob.find(b"\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
    fields += [start + first_hyper + 16, start + first_hyper + 20]  # rank, block count (4 bytes)
    for field in fields:
        width = 8 if field == start + 1 else 4
        mutated = bytearray(vds_base)
        mutated[field : field + width] = (count % 2 ** (8 * width)).to_bytes(width, "little")
        check_mutant(with_checksum(mutated, start, size), tmp_path, h5ctx)


def test_truncated_or_junk_virtual_mappings_decline(vds_base: bytes) -> None:
    """The parser alone, on every prefix of a real mapping (checksummed) and on junk: only Decline."""
    for start, size in vds_objects(vds_base):
        blob = vds_base[start : start + size - 4]
        for cut in range(len(blob)):
            part = blob[:cut] + struct.pack("<I", h5virtual.lookup3(blob[:cut]))
            with pytest.raises(inprocess.Decline):
                h5virtual.virtual_sources(part, (2**33, 3))
    assert h5virtual.lookup3(b"") == 0xDEADBEEF
    for junk in (b"", b"\x00" * 3, b"\x01" + bytes(12), b"\x00" + b"\xff" * 40):
        with pytest.raises(inprocess.Decline):
            h5virtual.virtual_sources(junk + struct.pack("<I", h5virtual.lookup3(junk)), (4,))


@settings(
    max_examples=FUZZ_EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_virtual_mappings_are_declined_or_read_as_h5py_reads_them(
    data: st.DataObject, vds_base: bytes, h5ctx: ReadContext, tmp_path: Path
) -> None:
    start, size = data.draw(st.sampled_from(vds_objects(vds_base)))
    mutated = bytearray(vds_base)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[start + data.draw(st.integers(0, size - 5))] = data.draw(st.integers(0, 255))
    check_mutant(with_checksum(mutated, start, size), tmp_path, h5ctx)


def test_a_truncated_weights_file_is_reported_corrupt_without_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scanner's path: the reader's refusal becomes the same KG901 problem the child's would,
    and no h5py child is started for it."""

    def no_child(ctx: ReadContext) -> None:
        raise AssertionError("the h5py child was asked")

    monkeypatch.setattr(hdf5, "worker_for", no_child)
    whole = h5file(tmp_path / "w.h5", keras_weights).read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(whole[: len(whole) // 2])
    ctx = ReadContext(limits=LIMITS)
    ctx.start_file()
    art = Artifact(path=str(path), format="hdf5", location=Location(str(path)))
    hdf5.read_hdf5(file_blob(path), art, ctx, "hdf5")
    assert [(p.kind, p.message) for p in art.problems] == [
        (
            "corrupt",
            f"not a readable HDF5 file: truncated: {path.stat().st_size} bytes where the superblock "
            f"declares {len(whole)}",
        )
    ]
    assert art.h5_files == []


# ------------------------------------------------------------------------ absurd nesting


def _nested(path: Path, levels: int, dataset_at: int | None = None) -> Path:
    def build(f: h5py.File) -> None:
        group: Any = f
        for level in range(levels):
            group = group.create_group("g")
            if dataset_at == level:
                group.create_dataset("d", data=np.zeros(3, "f4"))

    return h5file(path, build)


@pytest.mark.parametrize(("levels", "truncated"), [(63, None), (64, None), (65, "depth"), (300, "depth")])
def test_nesting_depth_limit_matches_h5py(
    tmp_path: Path, h5ctx: ReadContext, levels: int, truncated: str
) -> None:
    """Both readers stop at the first link deeper than MAX_GROUP_DEPTH, after the same objects."""
    ours = assert_same(file_blob(_nested(tmp_path / "n.h5", levels, dataset_at=10)), h5ctx)
    assert ours.truncated == truncated
    assert len(ours.objects) == min(levels, MAX_GROUP_DEPTH) + 1  # + the dataset


def test_deep_nesting_is_linear_and_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4,500 nested empty groups (4.6 MB, a minute for libhdf5's walk): the scan reads the same number of
    metadata blocks as for 100 levels, never starts the h5py child, stays small in memory and is a
    KG902 limit finding (incomplete), not clean."""
    import tracemalloc

    from kerasguard.formats.hdf5 import child_client as h5client
    from kerasguard.scanning.engine import scan

    reads: list[int] = []
    real_read = inprocess.Source.read

    def counting_read(self: inprocess.Source, addr: int, n: int) -> bytes:
        reads.append(n)
        return real_read(self, addr, n)

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("the h5py child was asked")

    monkeypatch.setattr(inprocess.Source, "read", counting_read)
    monkeypatch.setattr(h5client.H5WorkerProcess, "request", no_child)
    counts = {}
    for levels in (100, 4500):
        path = _nested(tmp_path / f"n{levels}.h5", levels)
        reads.clear()
        tracemalloc.start()
        report = scan(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        counts[levels] = len(reads)
        [file] = report.files
        assert not file.complete
        assert [f.rule_id for f in file.findings] == ["KG902"]
        assert "nested deeper than 64 levels" in file.findings[0].message
        assert peak < 16 * MiB, peak
    assert path.stat().st_size > 4_000_000
    assert counts[4500] == counts[100] < 20 * MAX_GROUP_DEPTH


_DESCRIBED_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _DESCRIBED_VALUES, max_size=6))
def test_the_fast_description_size_is_estimate_size(described: dict[str, Any]) -> None:
    """The in-process reader's byte budget counts exactly what the child's estimate_size counts."""
    assert estimate_object_size(described) == estimate_size(described)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_a_groups_description_size_in_closed_form(path: str) -> None:
    """Groups without attributes are counted by a formula: the same as estimate_size."""
    assert inprocess.group_size(path) == estimate_size({"path": path, "kind": "group"})
