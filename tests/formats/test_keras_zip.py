"""The zip reader on archives saved by real Keras and on hostile archives built byte by byte."""

from __future__ import annotations

import io
import pickle
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.formats.zip import archive as keras_zip
from kerasguard.formats.zip import inflate as zip_inflate
from kerasguard.policy import GiB, Limits, MiB
from support.zipcraft import CONFIG, Entry, build, keras_entries


def read_path(path: Path, limits: Limits | None = None) -> Artifact:
    ctx = ReadContext(limits or Limits())
    ctx.start_file()
    try:
        return open_artifact(path, ctx)
    finally:
        ctx.close()


def read_bytes(tmp_path: Path, data: bytes, name: str = "m.keras", limits: Limits | None = None) -> Artifact:
    path = tmp_path / name
    path.write_bytes(data)
    return read_path(path, limits)


def problems(art: Artifact, kind: str | None = None) -> list[str]:
    return [p.message for p in art.problems if kind is None or p.kind == kind]


def config_docs(art: Artifact) -> list[object]:
    return [d.value for d in art.json_docs if d.role == "model_config"]


class Recorder:
    """A read_blob stand-in that records what the zip reader hands over."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def __call__(
        self, blob: Blob, art: Artifact, ctx: ReadContext, depth: int, role: str | None = None
    ) -> str:
        self.calls.append(
            {
                "name": blob.name,
                "depth": depth,
                "role": role,
                "path": blob.path,
                "offset": blob.offset,
                "in_memory": blob.data is not None,
                "exists": blob.path.exists() if blob.path else None,
                "head": blob.head(64),
                "size": blob.size,
            }
        )
        return "recorded"


def record(path: Path, limits: Limits | None = None) -> tuple[Artifact, Recorder]:
    art = Artifact(path=str(path), format="zip", location=Location(str(path)))
    ctx = ReadContext(limits or Limits())
    rec = Recorder()
    keras_zip.read_zip(Blob.from_file(path, art.location), art, ctx, 0, rec)
    return art, rec


# --- archives saved by Keras -------------------------------------------------------------------------


@pytest.mark.keras
def test_real_keras_archive_is_listed_with_every_field() -> None:
    from support import kerasfiles

    art = read_path(kerasfiles.saved("mlp"))
    assert art.format == "keras"
    listing = art.zips[0]
    assert listing.kind == "keras" and listing.depth == 0 and listing.prefix_bytes == 0
    assert [m.name for m in listing.members] == ["metadata.json", "config.json", "model.weights.h5"]
    assert listing.declared_entries == 3 and not listing.anomalies and not listing.truncated
    for m in listing.members:
        assert m.compress_type == 0 and m.local_compress_type == 0
        assert m.local_name == m.raw_name and m.local_problem is None and m.overlaps == ()
        assert m.data_offset is not None and m.data_offset > m.header_offset
    assert not problems(art, "corrupt") and not problems(art, "limit")
    (config,) = config_docs(art)
    assert isinstance(config, dict) and config["class_name"] == "Sequential"
    assert {d.role for d in art.json_docs} == {"model_config", "metadata"}
    assert any(m.kind == "hdf5" and m.name == "model.weights.h5" for m in art.members)


@pytest.mark.keras
def test_stored_members_are_windows_on_the_file_not_copies() -> None:
    from support import kerasfiles

    path = kerasfiles.saved("mlp")
    art, rec = record(path)
    by_name = {c["name"]: c for c in rec.calls}
    weights = by_name["model.weights.h5"]
    member = next(m for m in art.zips[0].members if m.name == "model.weights.h5")
    assert weights["path"] == path and not weights["in_memory"]
    assert weights["offset"] == member.data_offset and weights["size"] == member.file_size
    assert weights["head"].startswith(b"\x89HDF")
    assert by_name["config.json"]["role"] == "model_config"
    assert by_name["metadata.json"]["role"] == "metadata"
    assert weights["role"] == "keras_weights" and weights["depth"] == 1


@pytest.mark.keras
def test_npz_weights_archive_is_read_as_nested_npz() -> None:
    from support import kerasfiles

    art = read_path(kerasfiles.saved("mlp", "npz"))
    outer, inner = art.zips[0], art.zips[1]
    assert outer.kind == "keras" and not outer.anomalies
    assert inner.kind == "npz" and inner.depth == 1
    assert inner.location.member == "model.weights.npz"
    assert inner.members and all(m.name.endswith(".npy") for m in inner.members)
    assert not problems(art, "corrupt")


def test_keras_archive_agrees_with_zipfile_on_names_and_sizes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", CONFIG)
        zf.writestr("assets/vocab.txt", b"a\nb\n", compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("assets/", b"")
    art = read_bytes(tmp_path, buf.getvalue())
    ref = zipfile.ZipFile(io.BytesIO(buf.getvalue())).infolist()
    got = art.zips[0].members
    assert [(m.name, m.file_size, m.compress_size, m.header_offset) for m in got] == [
        (i.filename, i.file_size, i.compress_size, i.header_offset) for i in ref
    ]
    assert got[2].is_dir


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compressed_config_is_decoded(tmp_path: Path, method: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr("config.json", CONFIG)
        zf.writestr("metadata.json", b"{}")
    art = read_bytes(tmp_path, buf.getvalue())
    assert config_docs(art) == [{"module": "keras", "class_name": "Sequential", "config": {"layers": []}}]
    assert not art.problems


def test_large_compressed_member_spills_to_a_temp_file_that_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zip_inflate, "SPOOL_MEMORY", 64 * 1024)
    payload = pickle.dumps(list(range(50_000)), protocol=4)
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.pkl", payload)
    _art, rec = record(path)
    (call,) = rec.calls
    assert call["path"] is not None and call["exists"] is True and call["size"] == len(payload)
    assert call["head"] == payload[:64]
    assert isinstance(call["path"], Path) and not call["path"].exists()


# --- hostile structure ---------------------------------------------------------------------------------


def test_duplicate_config_reads_the_last_entry_and_records_both(tmp_path: Path) -> None:
    evil = b'{"class_name": "Lambda", "config": {}}'
    entries = [*keras_entries(), Entry(b"config.json", evil)]
    art = read_bytes(tmp_path, build(entries))
    names = [m.name for m in art.zips[0].members]
    assert names.count("config.json") == 2
    assert config_docs(art) == [{"class_name": "Lambda", "config": {}}]  # what zipfile.read() returns
    assert zipfile.ZipFile(tmp_path / "m.keras").read("config.json") == evil


def test_nul_in_name_is_cut_like_zipfile(tmp_path: Path) -> None:
    entries = [Entry(b"config.json\x00.txt", CONFIG)]
    art = read_bytes(tmp_path, build(entries))
    (m,) = art.zips[0].members
    assert m.name == "config.json" and m.raw_name == b"config.json\x00.txt"
    assert zipfile.ZipFile(tmp_path / "m.keras").namelist() == ["config.json"]
    assert config_docs(art)  # the loader reads it as config.json, so do we


def test_local_header_disagreements_are_recorded(tmp_path: Path) -> None:
    entries = keras_entries()
    entries[0].local_name = b"metadata.jsoX"
    entries[1].local_method = 8
    entries[2].local_sizes = (1, 2)
    art = read_bytes(tmp_path, build(entries))
    meta, config, weights = art.zips[0].members
    assert meta.local_name == b"metadata.jsoX" and "local header names" in (meta.local_problem or "")
    assert config.local_compress_type == 8 and "compression method 8" in (config.local_problem or "")
    assert "local header sizes" in (weights.local_problem or "")


def test_overlapping_members_are_marked(tmp_path: Path) -> None:
    shared = Entry(b"model.weights.h5", b"x" * 100)
    alias = Entry(b"assets/a.bin", b"x" * 100, write_local=False)
    entries = [Entry(b"config.json", CONFIG), shared, alias]
    build(entries)  # lays out the entries, so the alias can point at the shared local header
    alias.header_offset = shared.offset
    data = build(entries)
    art = read_bytes(tmp_path, data)
    members = {m.name: m for m in art.zips[0].members}
    assert members["assets/a.bin"].overlaps == ("model.weights.h5",)
    assert members["model.weights.h5"].overlaps == ("assets/a.bin",)
    assert members["config.json"].overlaps == ()


def test_symlink_member_is_recorded_with_its_target(tmp_path: Path) -> None:
    link = Entry(b"assets/link", b"../../../etc/passwd", external_attr=(0o120777 << 16))
    art = read_bytes(tmp_path, build([*keras_entries(), link]))
    m = next(m for m in art.zips[0].members if m.name == "assets/link")
    assert m.is_symlink and m.link_target == "../../../etc/passwd"


def test_zip64_archive_with_prefix(tmp_path: Path) -> None:
    data = build(keras_entries(), zip64=True, prefix=b"#!/bin/sh\nexit 0\n", relative_offsets=True)
    art = read_bytes(tmp_path, data)
    listing = art.zips[0]
    assert [m.name for m in listing.members] == ["metadata.json", "config.json", "model.weights.h5"]
    assert listing.prefix_bytes == len(b"#!/bin/sh\nexit 0\n")
    assert any("precede the archive" in a for a in listing.anomalies)
    assert config_docs(art) and not problems(art, "corrupt")


def test_zip64_sizes_in_extra_field(tmp_path: Path) -> None:
    entries = keras_entries()
    for e in entries:
        e.zip64_sizes = True
    art = read_bytes(tmp_path, build(entries))
    assert [m.file_size for m in art.zips[0].members] == [len(e.data) for e in entries]
    assert config_docs(art) and not art.zips[0].members[0].local_problem


def test_zip_glued_after_another_zip_scans_both(tmp_path: Path) -> None:
    first = build([Entry(b"config.json", b'{"class_name": "First"}')])
    second = build(keras_entries(), relative_offsets=True, prefix=first)
    art = read_bytes(tmp_path, second)
    assert art.zips[0].prefix_bytes == len(first)
    prefix_listing = next(z for z in art.zips if z.location.member == "<prefix>")
    assert [m.name for m in prefix_listing.members] == ["config.json"]
    values = [d.value for d in art.json_docs]
    assert {"class_name": "First"} in values  # what a streaming unzipper would load


def test_polyglot_that_only_ends_like_a_zip(tmp_path: Path) -> None:
    head = pickle.dumps({"a": 1}, protocol=4)
    data = build(keras_entries(), prefix=head, relative_offsets=True)
    art = read_bytes(tmp_path, data)
    assert zipfile.is_zipfile(tmp_path / "m.keras")  # what Keras's load_model checks
    assert any(m.kind == "pickle" for m in art.members)
    assert art.zips and config_docs(art)


def test_random_prefix_with_zip_trailer_is_a_keras_file(tmp_path: Path) -> None:
    data = build(keras_entries(), prefix=b"\x00junk" * 100, relative_offsets=True)
    art = read_bytes(tmp_path, data)
    assert art.format == "keras" and not problems(art, "unknown_format")


def test_comment_length_mismatch_and_fake_end_record(tmp_path: Path) -> None:
    fake = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 10, 10, 0)
    art = read_bytes(tmp_path, build(keras_entries(), comment=b"hello" + fake))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(tmp_path / "m.keras")  # zipfile picks the fake record in the comment
    assert problems(art, "corrupt")  # so do we, and say it is unreadable for Keras ...
    assert any("another end record" in a for a in art.zips[0].anomalies)  # ... but not for others
    assert [m.name for m in art.zips[0].members] == ["metadata.json", "config.json", "model.weights.h5"]
    assert art.zips[0].prefix_bytes == 0 and len(art.zips) == 1
    art2 = read_bytes(tmp_path, build(keras_entries(), comment=b"hi", comment_len=40))
    assert any("comment" in a for a in art2.zips[0].anomalies)


def test_declared_entry_count_mismatch(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, build(keras_entries(), eocd_entries=7))
    assert any("declares 7 entries" in a for a in art.zips[0].anomalies)


# --- truncated, corrupt, random -----------------------------------------------------------------------


def test_broken_central_directory_entry_keeps_what_was_read(tmp_path: Path) -> None:
    data = bytearray(build(keras_entries()))
    second_entry = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    data[second_entry : second_entry + 4] = b"XXXX"
    art = read_bytes(tmp_path, bytes(data))
    assert any("bad central directory signature in entry #1" in p for p in problems(art, "corrupt"))
    assert [m.name for m in art.zips[0].members] == ["metadata.json"]


def test_central_directory_cut_short_falls_back_to_local_headers(tmp_path: Path) -> None:
    data = build(keras_entries())
    second_entry = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    cut = data[:second_entry] + data[data.index(b"PK\x05\x06") :]  # end record still claims 3 entries
    art = read_bytes(tmp_path, cut)
    assert problems(art, "corrupt")
    assert [m.name for m in art.zips[0].members] == ["metadata.json", "config.json", "model.weights.h5"]
    assert any("recovered" in a for a in art.zips[0].anomalies)


def test_missing_end_record_recovers_members_from_local_headers(tmp_path: Path) -> None:
    data = build(keras_entries())
    art = read_bytes(tmp_path, data[: data.index(b"PK\x01\x02")])
    assert any("end-of-central-directory" in p for p in problems(art, "corrupt"))
    listing = art.zips[0]
    assert [m.name for m in listing.members] == ["metadata.json", "config.json", "model.weights.h5"]
    assert any("recovered" in a for a in listing.anomalies)
    assert config_docs(art)


def test_member_data_past_end_of_file(tmp_path: Path) -> None:
    entries = keras_entries()
    entries[2].compress_size = entries[2].file_size = 10_000
    art = read_bytes(tmp_path, build(entries))
    assert any("truncated" in p for p in problems(art, "corrupt"))


def test_random_bytes_named_keras(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, bytes(range(256)) * 8)
    assert art.problems and not art.zips


def test_zip_magic_then_garbage(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, b"PK\x03\x04" + b"\xff" * 500)
    assert problems(art, "corrupt")


def test_zero_byte_keras_file(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, b"")
    assert problems(art, "corrupt") == ["file is empty (0 bytes)"]


def test_empty_archive(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, build([]))
    assert art.zips[0].members == [] and art.zips[0].kind == "keras"


def test_invalid_utf8_name_with_utf8_flag(tmp_path: Path) -> None:
    art = read_bytes(tmp_path, build([Entry(b"bad\xff.json", b"{}", flags=0x800)]))
    assert any("not valid UTF-8" in p for p in problems(art, "corrupt"))


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    e = Entry(b"config.json", CONFIG, method=8, raw=b"\xff\xfe garbage not deflate")
    art = read_bytes(tmp_path, build([e]))
    assert any("cannot be decompressed" in p for p in problems(art, "corrupt"))


def test_data_longer_than_declared_size(tmp_path: Path) -> None:
    e = Entry(b"config.json", CONFIG, method=8, file_size=10)
    art = read_bytes(tmp_path, build([e]))
    assert any("more than the declared 10 bytes" in p for p in problems(art, "corrupt"))
    assert not config_docs(art)


def test_unknown_method_and_encrypted_members_are_not_read(tmp_path: Path) -> None:
    entries = [
        Entry(b"config.json", CONFIG, flags=0x1),
        Entry(b"assets/x.bin", b"abc", method=9, raw=b"\x00" * 8),
    ]
    art = read_bytes(tmp_path, build(entries))
    assert not config_docs(art)
    assert any("deflate64" in p for p in problems(art, "unsupported"))
    assert art.zips[0].members[0].encrypted


def test_lzma_member_declaring_a_huge_dictionary_still_decodes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as zf:
        zf.writestr("config.json", CONFIG)
    data = bytearray(buf.getvalue())
    props = data.index(b"\x05\x00", 30) + 2  # after version (2 bytes) and properties size
    data[props + 1 : props + 5] = struct.pack("<I", 0xFFFF_FFFF)  # 4 GiB dictionary
    art = read_bytes(tmp_path, bytes(data))
    assert config_docs(art)


# --- limits -----------------------------------------------------------------------------------------


def test_one_kilobyte_zip_declaring_ten_gib_is_not_inflated(tmp_path: Path) -> None:
    bomb = Entry(b"model.weights.h5", b"\x00" * 1000, method=8, zip64_sizes=True, file_size=10 * GiB)
    data = build([Entry(b"config.json", CONFIG), bomb])
    assert len(data) < 1024
    path = tmp_path / "b.keras"
    path.write_bytes(data)
    art, rec = record(path)
    assert [c["name"] for c in rec.calls] == ["config.json"]
    assert any("not decompressed" in p for p in problems(art, "limit"))
    (m,) = [m for m in art.zips[0].members if m.name == "model.weights.h5"]
    assert m.file_size == 10 * GiB


def test_member_limit_stops_reading(tmp_path: Path) -> None:
    entries = [Entry(f"assets/{i}.txt".encode(), b"x") for i in range(50)]
    art = read_bytes(tmp_path, build(entries), limits=Limits(max_members=10))
    listing = art.zips[0]
    assert len(listing.members) == 10 and listing.truncated and listing.declared_entries == 50
    assert any("max_members=10" in p for p in problems(art, "limit"))


def test_undeclared_extra_entries_still_hit_the_limit(tmp_path: Path) -> None:
    entries = [Entry(f"assets/{i}.txt".encode(), b"x") for i in range(30)]
    art = read_bytes(tmp_path, build(entries, eocd_entries=1), limits=Limits(max_members=10))
    assert art.zips[0].truncated and len(art.zips[0].members) == 10


def test_json_member_over_json_limit(tmp_path: Path) -> None:
    big = b'{"a": "' + b"x" * 5000 + b'"}'
    data = build([Entry(b"config.json", big, method=8)])
    art = read_bytes(tmp_path, data, limits=Limits(max_json_bytes=1000))
    assert any("max_json_bytes" in p for p in problems(art, "limit"))


def test_total_uncompressed_budget_is_shared_by_nested_archives(tmp_path: Path) -> None:
    inner = build([Entry(b"a.json", b"[" + b"0," * 3000 + b"0]", method=8)])
    data = build([Entry(f"n{i}.zip".encode(), inner, method=8) for i in range(5)])
    limits = Limits(max_total_uncompressed=len(inner) * 3)
    art = read_bytes(tmp_path, data, name="x.zip", limits=limits)
    assert any("max_total_uncompressed" in p for p in problems(art, "limit"))


def test_deeply_nested_zips_stop_at_max_nesting(tmp_path: Path) -> None:
    data = build([Entry(b"config.json", CONFIG)])
    for level in range(6):
        data = build([Entry(f"level{level}.zip".encode(), data)])
    art = read_bytes(tmp_path, data, name="deep.zip")
    assert max(z.depth for z in art.zips) == 3
    assert any("max_nesting" in p for p in problems(art, "limit"))


def test_entry_budget_is_shared_by_nested_archives(tmp_path: Path) -> None:
    inner = build([Entry(f"{i}.txt".encode(), b"x") for i in range(8)])
    data = build([Entry(f"n{i}.zip".encode(), inner) for i in range(5)])
    art = read_bytes(tmp_path, data, name="x.zip", limits=Limits(max_members=20))
    assert sum(len(z.members) for z in art.zips) <= 20
    assert problems(art, "limit")


# --- fuzz -------------------------------------------------------------------------------------------

_SEED = build([*keras_entries(), Entry(b"assets/v.txt", b"hello world" * 20, method=8)])


def _fuzz_read(data: bytes) -> Artifact:
    art = Artifact(path="f.keras", format="zip", location=Location("f.keras"))
    ctx = ReadContext(Limits(max_members=64, max_json_bytes=1 * MiB))
    keras_zip.read_zip(Blob.from_bytes(data, art.location, "f.keras"), art, ctx, 0, Recorder())
    return art


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    art = _fuzz_read(b"PK\x03\x04" + data)
    assert art.zips or art.problems


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_mutated_archive_never_raises(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SEED)
    for pos, value in edits:
        data[pos] = value
    art = _fuzz_read(bytes(data))
    assert art.zips or art.problems


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(_SEED)))
def test_fuzz_every_truncation_is_reported(cut: int) -> None:
    art = _fuzz_read(_SEED[:cut])
    complete = cut == len(_SEED)
    assert complete or art.problems or any(z.anomalies for z in art.zips)


def test_copy_of_real_archive_with_appended_assets(tmp_path: Path) -> None:
    """A benign archive plus asset members, as Keras writes for lookup layers."""
    src = tmp_path / "base.keras"
    src.write_bytes(build(keras_entries()))
    target = tmp_path / "with_assets.keras"
    shutil.copy(src, target)
    with zipfile.ZipFile(target, "a") as zf:
        zf.writestr("assets/string_lookup/vocabulary.txt", "a\nb\n")
    art = read_path(target)
    assert [m.name for m in art.zips[0].members][-1] == "assets/string_lookup/vocabulary.txt"
    assert not problems(art, "corrupt")


def test_deadline_stops_member_reading(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(build(keras_entries()))
    art = Artifact(path=str(path), format="zip", location=Location(str(path)))
    ctx = ReadContext(Limits())
    ctx.deadline = 1.0  # long past on the monotonic clock
    rec = Recorder()
    keras_zip.read_zip(Blob.from_file(path, art.location), art, ctx, 0, rec)
    assert rec.calls == [] and problems(art, "timeout")
    assert [m.name for m in art.zips[0].members] == ["metadata.json", "config.json", "model.weights.h5"]


def test_entries_aliasing_the_same_bytes_are_analysed_once(tmp_path: Path) -> None:
    shared = Entry(b"a.json", b'{"x": 1}', method=8)
    aliases = [Entry(f"b{i}.json".encode(), b'{"x": 1}', method=8, write_local=False) for i in range(50)]
    entries = [shared, *aliases]
    build(entries)
    for alias in aliases:
        alias.header_offset = shared.offset
    path = tmp_path / "alias.zip"
    path.write_bytes(build(entries))
    art, rec = record(path)
    assert len(art.zips[0].members) == 51 and [c["name"] for c in rec.calls] == ["a.json"]
    assert all(m.overlaps for m in art.zips[0].members)


def test_stray_end_signature_in_other_data_is_not_a_zip(tmp_path: Path) -> None:
    fake_end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 46, 0, 0)
    art = read_bytes(tmp_path, b"\x89HDF\r\n\x1a\n" + b"\x00" * 100 + fake_end, name="w.h5")
    assert not art.zips
    assert not keras_zip.has_trailing_zip(Blob.from_bytes(b"x" * 100 + fake_end, Location("x"), "x"))


def test_zip_carrying_an_hdf5_superblock_is_read_both_ways(tmp_path: Path) -> None:
    filler = Entry(b"assets/pad.bin", b"\x00" * 2000)
    data = bytearray(build([*keras_entries(), filler]))
    pad_start = data.index(b"\x00" * 2000)
    data[1024 : 1024 + 8] = b"\x89HDF\r\n\x1a\n"  # inside the padding member: the zip stays valid
    assert pad_start < 1024 < pad_start + 2000
    art = read_bytes(tmp_path, bytes(data), name="m.h5")
    assert any("HDF5 superblock at offset 1024" in a for a in art.zips[0].anomalies)
    assert zipfile.ZipFile(tmp_path / "m.h5").read("config.json")


def _stored_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("assets/blob.bin", payload)
    return buf.getvalue()


@pytest.mark.parametrize("where", ["file", "stored in a zip", "deflated in a zip"])
@pytest.mark.parametrize("flip", [None, 0, 1 << 20, (5 << 19) - 1])
def test_stored_member_crc_is_checked_over_every_chunk(tmp_path: Path, where: str, flip: int | None) -> None:
    """A stored member's CRC-32 is verified across read chunks (1 MiB), in a file, in a window of an
    outer archive and in memory: one byte edited anywhere is a mismatch, none is clean."""
    payload = bytearray(bytes(range(256)) * (10 << 11))  # 2.5 MiB
    data = bytearray(_stored_zip(bytes(payload)))
    if flip is not None:
        start = data.index(bytes(range(256)))
        data[start + flip] ^= 0x01
    inner = bytes(data)
    if where != "file":
        method = zipfile.ZIP_STORED if where == "stored in a zip" else zipfile.ZIP_DEFLATED
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            zf.writestr("inner.zip", inner)
        inner = buf.getvalue()
    art = read_bytes(tmp_path, inner, "a.zip")
    mismatches = [p for p in problems(art, "corrupt") if "CRC-32 mismatch" in p]
    assert len(mismatches) == (0 if flip is None else 1), problems(art)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1), st.integers(0, 5000))
def test_stored_crc32_is_zlibs_crc32(data: bytes, start: int, cut: int) -> None:
    """The stored members' CRC-32 (zlib-ng's when installed) is zlib's, chained over chunks too."""
    crc32 = keras_zip.stored_crc32()
    assert crc32(data, 0) == zlib.crc32(data)
    assert crc32(data, start) == zlib.crc32(data, start)
    view = memoryview(bytearray(data))
    assert crc32(view[cut:], crc32(view[:cut], 0)) == zlib.crc32(data)


def test_stored_crc32_without_zlib_ng_is_zlibs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without zlib-ng installed the check still runs, with zlib's CRC-32, and still finds a mismatch."""
    keras_zip.stored_crc32.cache_clear()
    monkeypatch.setitem(sys.modules, "zlib_ng", None)  # import fails as if it were not installed
    try:
        assert keras_zip.stored_crc32() is zlib.crc32
        data = bytearray(_stored_zip(bytes(range(256)) * 64))
        data[data.index(bytes(range(256))) + 7] ^= 0x01
        art = read_bytes(tmp_path, bytes(data), "a.zip")
        assert [p for p in problems(art, "corrupt") if "CRC-32 mismatch" in p]
    finally:
        keras_zip.stored_crc32.cache_clear()
