"""The dispatcher's reader table: one reader per sniffed kind, none missing, none dead."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

from kerasguard.formats import dispatch
from kerasguard.formats.sniff import BLOB_KINDS, HDF5_MAGIC, sniff


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", "{}")
    return buf.getvalue()


# One real blob per kind, as sniff sees it (head, name).
SAMPLES: dict[str, tuple[bytes, str]] = {
    "zip": (_zip_bytes(), "model.keras"),
    "hdf5": (HDF5_MAGIC + b"\0" * 64, "model.h5"),
    "npy": (b"\x93NUMPY\x01\x00", "x.npy"),
    "pickle": (pickle.dumps({"a": 1}, protocol=4), "x.bin"),
    "json": (b' {"class_name": "Sequential"}', "config.json"),
    "yaml": (b"class_name: Sequential\n", "model.yaml"),
    "protobuf": (b"\x08\x01", "saved_model.pb"),
    "empty": (b"", "x.bin"),
    "unknown": (b"GIF89a", "x.bin"),
}


def test_every_kind_has_exactly_one_reader() -> None:
    assert set(dispatch.READERS) == set(BLOB_KINDS)
    assert len(BLOB_KINDS) == len(set(BLOB_KINDS))
    for kind in BLOB_KINDS:
        assert dispatch.READERS[kind] is dispatch.reader_for(kind)


def test_every_kind_is_what_sniff_answers_for_some_blob() -> None:
    assert set(SAMPLES) == set(BLOB_KINDS)
    for kind, (head, name) in SAMPLES.items():
        assert sniff(head, name) == kind, kind


def test_the_table_routes_a_real_file_to_its_reader(tmp_path: Path) -> None:
    from kerasguard.formats.context import ReadContext
    from kerasguard.policy import Limits

    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps(print, protocol=4))
    ctx = ReadContext(limits=Limits())
    try:
        art = dispatch.open_artifact(path, ctx)
    finally:
        ctx.close()
    assert art.format == "pickle"
    assert [(g.module, g.name) for p in art.pickles for g in p.globals] == [("builtins", "print")]
