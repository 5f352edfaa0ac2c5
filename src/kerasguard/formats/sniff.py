"""Recognise what a blob is from its first bytes and its name; never from what it claims inside."""

from __future__ import annotations

from typing import Literal, get_args

# Every kind sniff() can answer. The dispatcher's reader table is keyed by it, and mypy checks that
# every kind has a reader (formats.dispatch.reader_for ends in assert_never).
BlobKind = Literal["zip", "hdf5", "npy", "pickle", "json", "yaml", "protobuf", "empty", "unknown"]
BLOB_KINDS: tuple[BlobKind, ...] = get_args(BlobKind)

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"

# Files a directory walk scans by name alone (others only by magic bytes); what load_model accepts is
# loading.sources.LOADABLE_SUFFIXES.
SCANNED_BY_NAME_SUFFIXES = (
    ".keras",
    ".h5",
    ".hdf5",
    ".hdf",
    ".npz",
    ".npy",
    ".pkl",
    ".pickle",
    ".pt",
    ".pth",
    ".joblib",
    ".pb",
    ".zip",
    ".yaml",
    ".yml",
)


def sniff(head: bytes, name: str) -> BlobKind:
    """Kind of a blob: zip, hdf5, npy, pickle, json, yaml, protobuf, empty or unknown.

    HDF5 superblocks may sit at 0, 512, 1024, 2048...: callers pass at least 4 KiB when they can.
    """
    lower = name.lower()
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if lower.endswith((".npy", ".npz")):
        # numpy.load unpickles whatever is neither a zip nor an .npy (when allow_pickle is on)
        return "pickle"
    for offset in (0, 512, 1024, 2048):
        if head[offset : offset + 8] == HDF5_MAGIC:
            return "hdf5"
    if head[:1] == b"\x80" and len(head) > 1 and 0 <= head[1] <= 5:
        return "pickle"
    if lower.endswith((".pkl", ".pickle", ".joblib", ".pt", ".pth")):
        return "pickle"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"  # before the JSON check: a YAML loader reads it, and "{...}" is valid YAML too
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if stripped[:1] in (b"{", b"[") or lower.endswith(".json"):
        return "json"
    if lower.endswith(".pb"):
        return "protobuf"
    return "unknown"


def is_candidate_name(name: str) -> bool:
    """Whether a file found while walking a directory should be scanned by name alone."""
    lower = name.lower()
    return lower.endswith(SCANNED_BY_NAME_SUFFIXES) or lower.endswith(".weights.json")
