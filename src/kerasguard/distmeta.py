"""Name and version of installed distributions, read from their metadata files, never by importing them.

Shared by the stack audit (every distribution on a path) and the scanner (which Keras will load the files).
Kept free of heavy imports: ``importlib.metadata`` pulls in the email package (~20 ms of a scan's start-up).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

MAX_METADATA_HEADER = 256 * 1024
_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (what ``packaging.utils.canonicalize_name`` returns)."""
    return _SEPARATORS.sub("-", name).lower()


def metadata_file(entry: Path) -> Path | None:
    """The file holding ``entry``'s metadata header if ``entry`` is a distribution's metadata, else None."""
    if entry.name.endswith(".dist-info"):
        return entry / "METADATA"
    if entry.name.endswith(".egg-info"):
        return entry if entry.is_file() else entry / "PKG-INFO"
    if entry.name.endswith(".egg") and entry.is_dir():
        return entry / "EGG-INFO" / "PKG-INFO"
    return None


def name_from_folder(entry: Path) -> str:
    """The project name a metadata folder's name suggests (``keras-3.15.1.dist-info`` -> ``keras``)."""
    stem = entry.name.rsplit(".", 1)[0]
    return stem.split("-", 1)[0]


def read_header(path: Path) -> dict[str, str]:
    """Name and Version from a METADATA / PKG-INFO header (stops at the first blank line)."""
    out: dict[str, str] = {}
    with path.open("rb") as fh:
        head = fh.read(MAX_METADATA_HEADER)
    text = head.decode("utf-8", errors="replace")
    for line in text.splitlines():
        if not line.strip():
            break
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("name", "version") and key not in out:
            out[key] = value.strip()
    return out


def installed_version(name: str, search_path: Iterable[str] | None = None) -> str | None:
    """Version of the first distribution called ``name`` on ``search_path`` (default ``sys.path``), as an
    import would find it; None when none is installed or its metadata is unreadable."""
    wanted = canonical_name(name)
    for folder in sys.path if search_path is None else search_path:
        try:
            entries = sorted(Path(folder or ".").iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        for entry in entries:
            meta = metadata_file(entry)
            if meta is None or canonical_name(name_from_folder(entry)) != wanted:
                continue
            try:
                header = read_header(meta)
            except OSError:
                continue
            if canonical_name(header.get("name", "")) == wanted and header.get("version"):
                return header["version"]
    return None
