"""The HDF5 reader end to end: real files, the child worker, and hostile inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import kerasguard
from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.formats.hdf5.reader import detect_role, read_hdf5, worker_for
from kerasguard.policy import GiB, Limits, MiB, Policy
from kerasguard.scanning.engine import scan_many
from support.h5craft import (
    all_findings,
    declare_bomb,
    h5file,
    keras_weights,
    keras_zip,
    member_window,
    module_context,
    read_keras_zip,
)

h5ctx = module_context()


@pytest.fixture(autouse=True)
def child_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module tests the h5py child, so every file goes to it (the pure-Python reader, which
    answers for plain files in the scanner, is compared with the child in test_hdf5_inprocess.py)."""
    monkeypatch.setattr("kerasguard.formats.hdf5.reader.read_plain", lambda *args: None)


def read(path: Path, ctx: ReadContext, role: str = "hdf5") -> Artifact:
    ctx.start_file()
    art = Artifact(path=str(path), format="hdf5", location=Location(str(path)))
    read_hdf5(Blob.from_file(path, art.location), art, ctx, role)
    return art


def kinds(art: Artifact) -> list[str]:
    return [p.kind for p in art.problems]


def test_weights_layout_is_described_without_data(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "w.h5", keras_weights)
    art = read(path, h5ctx)
    assert art.problems == []
    (h5,) = art.h5_files
    assert h5.role == "keras_weights"
    by_path = {o.path: o for o in h5.objects}
    kernel = by_path["/layers/dense/vars/0"]
    assert (kernel.kind, kernel.shape, kernel.dtype, kernel.itemsize) == ("dataset", (8, 4), "float32", 4)
    assert kernel.declared_bytes == kernel.stored_bytes == 128
    assert kernel.layout == "contiguous"
    assert ("name", "dense") in by_path["/layers/dense/vars"].attrs


def test_bomb_metadata_is_exact_and_cheap(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "bomb.h5", lambda f: declare_bomb(f, "layers/dense/vars/0", 8 * GiB))
    assert path.stat().st_size < 64 * 1024
    (h5,) = read(path, h5ctx).h5_files
    (ds,) = h5.datasets
    assert ds.declared_bytes == 8 * GiB
    assert ds.stored_bytes == 0
    assert ds.chunks == (1, 1024)
    assert ds.filters == ("deflate",)


def test_links_are_recorded_not_followed(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("real", data=np.arange(4, dtype="f4"))
        f["soft"] = h5py.SoftLink("/real")
        f["ext"] = h5py.ExternalLink("/etc/other.h5", "/x")
        g = f.create_group("g")
        g["loop"] = g  # a hard-link cycle
        f["alias"] = f["real"]

    (h5,) = read(h5file(tmp_path / "links.h5", build), h5ctx).h5_files
    by_path = {o.path: o for o in h5.objects}
    assert (by_path["/soft"].kind, by_path["/soft"].link_target) == ("soft_link", "/real")
    assert (by_path["/ext"].kind, by_path["/ext"].link_target) == ("external_link", "/etc/other.h5:/x")
    assert (by_path["/g/loop"].kind, by_path["/g/loop"].link_target) == ("hard_link", "/g")
    alias = {by_path["/alias"].kind, by_path["/real"].kind}
    assert alias == {"dataset", "hard_link"}


def test_external_storage_and_virtual_sources(tmp_path: Path, h5ctx: ReadContext) -> None:
    planted = tmp_path / "planted.txt"
    planted.write_bytes(b"secret" * 10)

    def build(f: h5py.File) -> None:
        f.create_dataset("ext", shape=(60,), dtype="u1", external=[(str(planted), 0, 60)])
        layout = h5py.VirtualLayout(shape=(10,), dtype="f4")
        layout[:] = h5py.VirtualSource("elsewhere.h5", "data", shape=(10,))
        f.create_virtual_dataset("vds", layout)

    (h5,) = read(h5file(tmp_path / "x.h5", build), h5ctx).h5_files
    by_path = {o.path: o for o in h5.objects}
    assert by_path["/ext"].external == ((str(planted), 0, 60),)
    assert by_path["/vds"].is_virtual and by_path["/vds"].virtual_sources == ("elsewhere.h5:data",)


def test_legacy_model_config_becomes_a_json_document(tmp_path: Path, h5ctx: ReadContext) -> None:
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": []}}

    def build(f: h5py.File) -> None:
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")  # bytes, as older Keras wrote it
        f.attrs["training_config"] = json.dumps({"loss": "mse"})
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("model_weights").attrs["layer_names"] = np.array([b"dense"])

    art = read(h5file(tmp_path / "legacy.h5", build), h5ctx)
    (h5,) = art.h5_files
    assert h5.role == "legacy_model"
    assert h5.root_attrs["keras_version"] == "2.15.0"
    docs = {d.role: d for d in art.json_docs}
    assert docs["model_config"].value == config
    assert str(docs["model_config"].location) == f"{tmp_path / 'legacy.h5'}:/@model_config"
    assert docs["training_config"].value == {"loss": "mse"}


def test_split_model_config_is_joined(tmp_path: Path, h5ctx: ReadContext) -> None:
    text = json.dumps({"class_name": "Sequential", "config": {"name": "split", "layers": []}})

    def build(f: h5py.File) -> None:
        f.attrs["model_config0"] = text[:20]
        f.attrs["model_config1"] = text[20:]

    art = read(h5file(tmp_path / "split.h5", build), h5ctx)
    assert [d.value["config"]["name"] for d in art.json_docs] == ["split"]


def test_invalid_model_config_is_a_problem(tmp_path: Path, h5ctx: ReadContext) -> None:
    art = read(
        h5file(tmp_path / "bad.h5", lambda f: f.attrs.__setitem__("model_config", b"{not json")), h5ctx
    )
    assert kinds(art) == ["corrupt"]
    assert art.problems[0].location.h5path == "/@model_config"


def test_oversized_model_config_is_a_limit(tmp_path: Path) -> None:
    path = h5file(
        tmp_path / "big.h5", lambda f: f.attrs.__setitem__("model_config", "[" + "1," * 5000 + "1]")
    )
    ctx = ReadContext(limits=Limits(max_json_bytes=1000))
    try:
        art = read(path, ctx)
    finally:
        ctx.close()
    assert kinds(art) == ["limit"] and "max_json_bytes=1000" in art.problems[0].message


@pytest.mark.parametrize(
    ("root", "objects", "role"),
    [
        ({"model_config": "{}"}, [], "legacy_model"),
        ({"layer_names": "['d']"}, [], "legacy_weights"),
        ({}, ["/layers"], "keras_weights"),
        ({}, ["/data"], "hdf5"),
    ],
)
def test_role_detection(root: dict[str, str], objects: list[str], role: str) -> None:
    from kerasguard.formats.artifact import H5Object

    assert detect_role(root, [H5Object(p, "group") for p in objects]) == role


def test_stored_zip_member_is_read_in_place(tmp_path: Path, h5ctx: ReadContext) -> None:
    weights = h5file(tmp_path / "model.weights.h5", keras_weights)
    archive = keras_zip(tmp_path / "m.keras", {"metadata.json": b"{}", "model.weights.h5": weights})
    offset, size = member_window(archive, "model.weights.h5")
    assert offset > 0 and size == weights.stat().st_size
    art = read_keras_zip(archive, h5ctx)
    assert art.problems == []
    (h5,) = art.h5_files
    assert str(h5.location) == f"{archive}!/model.weights.h5"
    assert {o.path for o in h5.datasets} == {"/layers/dense/vars/0", "/layers/dense/vars/1"}


def test_in_memory_blob_goes_through_a_private_temp_file(tmp_path: Path, h5ctx: ReadContext) -> None:
    data = h5file(tmp_path / "w.h5", keras_weights).read_bytes()
    h5ctx.start_file()
    art = Artifact(path="mem", format="zip", location=Location("outer.zip", member="inner.h5"))
    read_hdf5(Blob.from_bytes(data, art.location, "inner.h5"), art, h5ctx, "hdf5")
    assert art.problems == [] and art.h5_files[0].role == "keras_weights"


def test_object_limit_truncates_with_a_finding(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        for i in range(30):
            f.create_group(f"g{i:02d}")

    ctx = ReadContext(limits=Limits(h5_max_objects=10))
    try:
        art = read(h5file(tmp_path / "many.h5", build), ctx)
    finally:
        ctx.close()
    assert len(art.h5_files[0].objects) == 10
    assert kinds(art) == ["limit"] and "h5_max_objects=10" in art.problems[0].message


# ---------------------------------------------------------------- hostile bytes


def test_truncated_file_is_corrupt(tmp_path: Path, h5ctx: ReadContext) -> None:
    whole = h5file(tmp_path / "w.h5", keras_weights).read_bytes()
    for cut in (8, 96, len(whole) // 2, len(whole) - 1):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(whole[:cut])
        art = read(path, h5ctx)
        assert "corrupt" in kinds(art), cut
        assert "KG901" in {f.rule_id for f in all_findings(art)}


def test_random_bytes_after_signature_are_corrupt(tmp_path: Path, h5ctx: ReadContext) -> None:
    rng = np.random.default_rng(7)
    for i in range(5):
        path = tmp_path / f"rand{i}.h5"
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.bytes(4096))
        art = read(path, h5ctx)
        assert art.problems and set(kinds(art)) <= {"corrupt", "limit"}


def test_flipped_bytes_never_crash_the_scan(tmp_path: Path, h5ctx: ReadContext) -> None:
    """Corrupted real files: a problem or a clean read, never an exception in the parent."""
    whole = bytearray(h5file(tmp_path / "w.h5", keras_weights).read_bytes())
    rng = np.random.default_rng(11)
    for i in range(20):
        data = bytearray(whole)
        for pos in rng.integers(0, len(data), size=8):
            data[pos] ^= 0xFF
        path = tmp_path / f"flip{i}.h5"
        path.write_bytes(bytes(data))
        art = read(path, h5ctx)
        assert art.h5_files or art.problems


def test_memory_limit_is_a_limit_finding_and_the_next_file_scans(tmp_path: Path, h5ctx: ReadContext) -> None:
    """A 24 MiB model_config read by a worker with 16 MiB of headroom."""
    read(h5file(tmp_path / "warm.h5", keras_weights), h5ctx)
    baseline_mib = worker_for(h5ctx).hello["vm_peak_kib"] // 1024
    text = json.dumps({"class_name": "Sequential", "config": {"name": "x" * (24 * MiB), "layers": []}})
    big = h5file(tmp_path / "big.h5", lambda f: f.attrs.__setitem__("model_config", text))
    ctx = ReadContext(limits=Limits(parser_memory_mb=baseline_mib + 16, max_json_bytes=64 * MiB))
    try:
        art = read(big, ctx)
        assert "limit" in kinds(art)
        assert not art.json_docs
        assert "KG902" in {f.rule_id for f in all_findings(art)}
        after = read(h5file(tmp_path / "after.h5", keras_weights), ctx)
        assert after.problems == [] and after.h5_files[0].role == "keras_weights"
    finally:
        ctx.close()


def _blocked_opening_fifo(pid: int, seconds: float = 30.0) -> bool:
    """Whether the worker sleeps in open() of a FIFO without a writer (i.e. is inside the request)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            syscall = Path(f"/proc/{pid}/syscall").read_text().split()[:1]
        except OSError:
            return False
        if wchan in ("wait_for_partner", "fifo_open") or syscall in (["257"], ["56"]):  # openat x86_64/arm64
            return True
        time.sleep(0.01)
    return False


def test_time_limit_is_a_timeout_finding_and_the_next_file_scans(tmp_path: Path) -> None:
    """A read that never ends (a FIFO nobody writes) is cut at the file deadline."""
    fifo = tmp_path / "stuck.h5"
    os.mkfifo(fifo)
    ctx = ReadContext(limits=Limits(file_timeout_s=1.0))
    try:
        read(h5file(tmp_path / "warm.h5", keras_weights), ctx)
        first_pid = worker_for(ctx).pid
        ctx.start_file()
        art = Artifact(path=str(fifo), format="hdf5", location=Location(str(fifo)))
        read_hdf5(Blob(art.location, fifo.name, 4096, path=fifo), art, ctx, "hdf5")
        assert kinds(art) == ["timeout"]
        assert {f.rule_id for f in all_findings(art)} == {"KG902"}
        assert worker_for(ctx).pid is None  # the stuck worker was killed
        after = read(h5file(tmp_path / "after.h5", keras_weights), ctx)
        assert after.problems == []
        assert worker_for(ctx).pid not in (None, first_pid)
    finally:
        ctx.close()


def test_worker_crash_is_a_crash_finding_and_the_next_file_scans(tmp_path: Path) -> None:
    """The worker dies by SIGSEGV in the middle of a request."""
    fifo = tmp_path / "crash.h5"
    os.mkfifo(fifo)
    ctx = ReadContext(limits=Limits())
    try:
        read(h5file(tmp_path / "warm.h5", keras_weights), ctx)
        pid = worker_for(ctx).pid
        assert pid is not None
        ctx.start_file()
        art = Artifact(path=str(fifo), format="hdf5", location=Location(str(fifo)))
        reader = threading.Thread(
            target=read_hdf5, args=(Blob(art.location, "c.h5", 4096, path=fifo), art, ctx, "x")
        )
        reader.start()
        if not _blocked_opening_fifo(pid):
            os.kill(pid, signal.SIGKILL)
            reader.join(30)
            pytest.skip("cannot see in /proc that the worker waits in open()")
        os.kill(pid, signal.SIGSEGV)  # the worker is inside the request, waiting for a FIFO writer
        reader.join(30)
        assert not reader.is_alive()
        assert kinds(art) == ["crash"] and "SIGSEGV" in art.problems[0].message
        assert {f.rule_id for f in all_findings(art)} == {"KG905"}
        after = read(h5file(tmp_path / "after.h5", keras_weights), ctx)
        assert after.problems == []
    finally:
        ctx.close()


def test_worker_dying_while_idle_is_not_blamed_on_the_next_file(tmp_path: Path) -> None:
    ctx = ReadContext(limits=Limits())
    try:
        read(h5file(tmp_path / "a.h5", keras_weights), ctx)
        worker = worker_for(ctx)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        time.sleep(0.1)
        art = read(h5file(tmp_path / "b.h5", keras_weights), ctx)
        assert art.problems == [] and worker.restarts == 1
    finally:
        ctx.close()


def test_worker_is_reused_across_files_and_pooled_then_closed(tmp_path: Path) -> None:
    from kerasguard.formats.hdf5.child_client import POOL

    ctx = ReadContext(limits=Limits())
    paths = [h5file(tmp_path / f"w{i}.h5", keras_weights) for i in range(3)]
    worker = worker_for(ctx)
    before, restarts = worker.requests, worker.restarts
    for path in paths:
        assert read(path, ctx).problems == []
    pid = worker.pid
    assert worker.requests == before + 3 and worker.restarts == restarts and pid is not None
    ctx.close()  # back to the pool, still running, for the next run of this process
    assert worker.pid == pid
    POOL.close_all()
    assert worker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_worker_runs_with_its_limits(tmp_path: Path) -> None:
    ctx = ReadContext(limits=Limits(parser_memory_mb=512))
    try:
        read(h5file(tmp_path / "w.h5", keras_weights), ctx)
        pid = worker_for(ctx).pid
        limits = Path(f"/proc/{pid}/limits").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        ctx.close()
    rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
    assert rows["Max address space"][:2] == [str(512 * MiB)] * 2
    assert rows["Max file size"][:2] == ["0", "0"]
    assert rows["Max core file size"][:2] == ["0", "0"]
    assert int(rows["Max open files"][0]) <= 16
    assert not any(e.startswith((b"PYTHONPATH=", b"HOME=")) for e in environ)
    assert b"HDF5_PLUGIN_PRELOAD=::" in environ


def test_scanner_scans_h5_files_end_to_end(tmp_path: Path) -> None:
    good = h5file(tmp_path / "good.weights.h5", keras_weights)
    bad = h5file(tmp_path / "bad.h5", lambda f: declare_bomb(f, "layers/dense/vars/0", 3 * GiB))
    report = scan_many([good, bad], Policy(keras_version="3.15.1"))
    by_path = {r.path: r for r in report.files}
    assert by_path[str(good)].findings == () and by_path[str(good)].format == "keras_weights"
    assert {f.rule_id for f in by_path[str(bad)].findings} >= {"KG405", "KG406"}


def test_open_artifact_routes_hdf5_by_magic(tmp_path: Path) -> None:
    path = h5file(tmp_path / "renamed.bin", keras_weights)
    ctx = ReadContext(limits=Limits())
    try:
        ctx.start_file()
        art = open_artifact(path, ctx)
    finally:
        ctx.close()
    assert art.format == "keras_weights" and art.problems == []


def test_attributes_are_read_with_a_size_cap_and_any_type(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        g = f.create_group("g")
        g.attrs["big"] = np.zeros(100_000)
        g.attrs["ref"] = g.ref
        g.attrs["enum"] = np.array(1, dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
        g.attrs["names"] = np.array([b"a", b"b"])
        g.attrs["text"] = "x" * 1000
        g.attrs.create("nothing", h5py.Empty("f4"))

    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w", libver="latest") as f:  # dense attribute storage for the big one
        build(f)
    art = read(path, h5ctx)
    assert art.problems == []
    attrs = dict(art.h5_files[0].objects[0].attrs)
    assert attrs["big"] == "<800000 bytes, shape (100000,)>"
    assert attrs["names"] == "['a', 'b']"
    assert attrs["enum"] == "1" and attrs["nothing"] == "<empty>"
    assert attrs["text"].endswith("...") and len(attrs["text"]) == 200
    assert "ref" in attrs


def test_worker_dies_with_a_scanner_that_never_closed_it(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    with h5py.File(path, "w", libver="latest") as f:  # a newer layout: read by the child, not in-process
        keras_weights(f)
    script = f"""
import os, sys
from pathlib import Path
from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.hdf5.reader import read_hdf5, worker_for
from kerasguard.policy import Limits
ctx = ReadContext(limits=Limits())
ctx.start_file()
art = Artifact(path="w", format="x", location=Location("w"))
read_hdf5(Blob.from_file(Path({str(path)!r}), art.location), art, ctx, "hdf5")
print(worker_for(ctx).pid, flush=True)
os._exit(0)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(kerasguard.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_absurd_timeouts_are_clamped(tmp_path: Path) -> None:
    ctx = ReadContext(limits=Limits(file_timeout_s=1e12))
    try:
        assert read(h5file(tmp_path / "w.h5", keras_weights), ctx).problems == []
    finally:
        ctx.close()


def test_model_config_cannot_be_hidden_behind_many_attributes(tmp_path: Path, h5ctx: ReadContext) -> None:
    """Only 64 attributes per object are described, but model_config is looked up by name."""

    def build(f: h5py.File) -> None:
        for i in range(80):
            f.attrs[f"a{i:03d}"] = i  # all sort before "model_config"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        f.create_group("g").attrs.update({f"x{i:03d}": i for i in range(70)})

    path = tmp_path / "many_attrs.h5"
    with h5py.File(path, "w", libver="latest") as f:
        build(f)
    art = read(path, h5ctx)
    assert art.problems == []
    assert [d.role for d in art.json_docs] == ["model_config"]
    assert art.h5_files[0].role == "legacy_model"
    group_attrs = dict(art.h5_files[0].objects[0].attrs)
    assert group_attrs["<more>"] == "6 more attributes not read"
