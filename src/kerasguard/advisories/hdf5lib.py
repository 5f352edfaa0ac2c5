"""Which libhdf5 an installed h5py loads, found without importing h5py.

The HDF5 advisories are bugs in the C library, so an h5py is judged by the libhdf5 it loads. Wheels bundle it
(``h5py.libs/`` on Linux, ``h5py/.dylibs`` on macOS, ``h5py.libs`` DLLs on Windows); the library embeds
``HDF5 library version: X.Y.Z``, which we read from the file. Without a bundled library (a source or conda
build) we fall back to the version map of the official wheels.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path

from packaging.version import InvalidVersion, Version

# h5py manylinux wheel -> bundled HDF5, read off each released wheel's own library.
WHEEL_HDF5: dict[str, str] = {
    "3.10.0": "1.14.2",
    "3.11.0": "1.14.2",
    "3.12.1": "1.14.4",
    "3.13.0": "1.14.6",
    "3.14.0": "1.14.6",
    "3.15.1": "1.14.6",
    "3.16.0": "2.0.0",
}
MAX_LIBRARY_BYTES = 256 * 1024 * 1024
_VERSION_RE = re.compile(rb"HDF5 library version: ?([0-9]+\.[0-9]+\.[0-9]+)")
_LIB_RE = re.compile(
    r"^(lib)?hdf5(-[0-9a-f]+)?(\.so[.0-9]*|\.[0-9.]*dylib|\.dll)$"  # libhdf5.so.310, hdf5.dll
    r"|^(lib)?hdf5[.-].*\.(so|dylib|dll)"  # libhdf5-9e18f0c6.so.320.0.0 (auditwheel), libhdf5.310.dylib
)


def version_in_library(path: Path) -> str | None:
    """The ``HDF5 library version`` string embedded in a libhdf5 binary, or None."""
    try:
        size = path.stat().st_size
        if size == 0 or size > MAX_LIBRARY_BYTES:
            return None
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mem:
            found = _VERSION_RE.search(mem)
            return found.group(1).decode("ascii") if found else None
    except (OSError, ValueError):
        return None


def _is_hdf5_library(name: str) -> bool:
    lower = name.lower()
    return "hdf5" in lower and "hdf5_hl" not in lower and bool(_LIB_RE.match(lower))


def bundled_library(site_dir: Path) -> Path | None:
    """The libhdf5 shipped inside an h5py wheel installed in ``site_dir``."""
    for folder in (site_dir / "h5py.libs", site_dir / "h5py" / ".dylibs", site_dir / "h5py"):
        try:
            names = sorted(p.name for p in folder.iterdir())
        except OSError:
            continue
        for name in names:
            if _is_hdf5_library(name):
                return folder / name
    return None


def system_library(site_dir: Path) -> Path | None:
    """A libhdf5 in the environment's own ``lib`` (conda, source builds): ``<prefix>/lib/libhdf5.so*``."""
    parts = site_dir.parts
    if len(parts) < 4 or parts[-1] != "site-packages":
        return None
    lib = site_dir.parents[1]  # <prefix>/lib/pythonX.Y/site-packages -> <prefix>/lib
    try:
        names = sorted(p.name for p in lib.iterdir() if p.name.startswith("libhdf5"))
    except OSError:
        return None
    for name in names:
        if _is_hdf5_library(name):
            return lib / name
    return None


def installed_hdf5(site_dir: Path, h5py_version: str) -> tuple[str | None, str]:
    """(HDF5 version, how it was determined) for an h5py installed in ``site_dir``."""
    for finder, how in ((bundled_library, "bundled library"), (system_library, "environment library")):
        lib = finder(site_dir)
        if lib is not None:
            found = version_in_library(lib)
            if found:
                return found, f"{how} {lib}"
    return wheel_hdf5(h5py_version)


def wheel_hdf5(h5py_version: str) -> tuple[str | None, str]:
    """The HDF5 the official h5py wheel of this version bundles, when known."""
    try:
        key = str(Version(h5py_version))
    except InvalidVersion:
        return None, "unknown (invalid h5py version)"
    found = WHEEL_HDF5.get(key)
    if found is None:
        return None, f"unknown (h5py {h5py_version} is not in the wheel map; judged by h5py version)"
    return found, f"h5py {key} wheel map"
