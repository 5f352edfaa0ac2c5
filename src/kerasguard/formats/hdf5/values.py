"""How HDF5 names and attribute values become text, shared by the h5py child and the pure-Python reader.

Both readers must describe a file identically (the differential tests compare them), so the rules for
turning values into short, printable text live here once. Standard library only: the child imports it.
"""

from __future__ import annotations

from typing import Any

MAX_ATTRS_PER_OBJECT = 64
MAX_SPLIT_PARTS = 4096
MAX_ATTR_READ_BYTES = 64 * 1024
REPR_CHARS = 200
JSON_ATTRS = ("model_config", "training_config")
MAX_EXTERNAL_FILES = 64  # external files listed per dataset
MAX_VIRTUAL_SOURCES = 64  # virtual sources listed per dataset
MAX_RANK = 32  # libhdf5's own limit on dataspace rank
# Links deeper than this many path components stop the walk (answer "truncated": "depth"). Keras nests a
# few levels (layers/<model>/layers/<layer>/vars/0); each deeper level made paths, and so the walk,
# grow quadratically (4,500 nested empty groups took libhdf5 a minute).
MAX_GROUP_DEPTH = 64


def text(raw: bytes | str) -> str:
    """A name as text; bytes that are not UTF-8 are kept visible as escapes."""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


def clip(value: str, limit: int = REPR_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def estimate_size(value: Any) -> int:
    """About how many bytes ``value`` takes as JSON (strings may grow when escaped: counted x2)."""
    if isinstance(value, str):
        return 2 * len(value) + 2
    if isinstance(value, dict):
        return sum(estimate_size(k) + estimate_size(v) + 2 for k, v in value.items()) + 2
    if isinstance(value, list):
        return sum(estimate_size(v) + 1 for v in value) + 2
    return 24


def estimate_object_size(described: dict[str, Any]) -> int:
    """``estimate_size(described)`` for one object description, without a call per value: names,
    texts, numbers and lists of them (shapes, chunks, attributes) are counted here; anything else as
    estimate_size counts it."""
    total = 2
    for key, value in described.items():
        total += (2 * len(key) + 2 if isinstance(key, str) else 24) + 2
        if isinstance(value, str):
            total += 2 * len(value) + 2
        elif type(value) is list:
            total += _list_size(value)
        elif isinstance(value, dict | list):
            total += estimate_size(value)
        else:  # a number, None: what estimate_size counts for any other value
            total += 24
    return total


def _list_size(items: list[Any]) -> int:
    """``estimate_size(items)``: integers and texts counted here, lists of texts too."""
    total = 2
    for item in items:
        if type(item) is int:
            total += 25
        elif isinstance(item, str):
            total += 2 * len(item) + 3
        elif type(item) is list and all(isinstance(v, str) for v in item):
            total += sum(2 * len(v) + 3 for v in item) + 3
        else:
            total += estimate_size(item) + 1
    return total


def as_bytes(value: Any) -> bytes:
    """A string-like attribute value as bytes (str, bytes, or an array of them, joined)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    items = getattr(value, "tolist", None)
    if items is not None:
        listed = items()
        if isinstance(listed, list | tuple):
            return b"".join(as_bytes(v) for v in listed)
        if isinstance(listed, bytes | str):
            return as_bytes(listed)
    raise TypeError(f"expected a string attribute, got {type(value).__name__}")


def short_repr(value: Any) -> str:
    """A short, printable description of an attribute value."""
    if isinstance(value, bytes):
        return clip(value.decode("utf-8", "backslashreplace"))
    if isinstance(value, str):
        return clip(value)
    size = getattr(value, "size", None)
    if isinstance(size, int) and size > 64:
        return f"<array shape {getattr(value, 'shape', '?')} dtype {getattr(value, 'dtype', '?')}>"
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        value = tolist()
    if isinstance(value, list):
        value = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for v in value]
    return clip(repr(value))
