"""Builders of fake installed environments for the audit tests (metadata only, nothing importable)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SiteFactory = Callable[..., Path]


def write_dist(site: Path, name: str, version: str, *, kind: str = "dist-info", extra: str = "") -> Path:
    """A distribution's metadata as pip writes it (no package code: nothing to import)."""
    folder_name = f"{name.replace('-', '_')}-{version}"
    header = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\nlong description\n"
    if kind == "dist-info":
        folder = site / f"{folder_name}.dist-info"
        folder.mkdir(parents=True)
        (folder / "METADATA").write_text(header)
        return folder
    if kind == "egg-info-dir":
        folder = site / f"{folder_name}.egg-info"
        folder.mkdir(parents=True)
        (folder / "PKG-INFO").write_text(header)
        return folder
    if kind == "egg-info-file":
        path = site / f"{folder_name}.egg-info"
        path.write_text(header)
        return path
    raise ValueError(kind)


def write_hdf5_library(site: Path, hdf5_version: str, name: str = "libhdf5-0123abcd.so.310.4.6") -> Path:
    """A stand-in for the libhdf5 an h5py wheel bundles: only the embedded version string matters."""
    libs = site / "h5py.libs"
    libs.mkdir(parents=True, exist_ok=True)
    path = libs / name
    path.write_bytes(
        b"\x7fELF" + b"\x00" * 4096 + f"HDF5 library version: {hdf5_version}".encode() + b"\x00" * 64
    )
    return path
