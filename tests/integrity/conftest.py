"""Shared material for integrity tests: key pairs, a test PKI, and real Keras models saved once.

Tests that modify a model copy it first (``fresh``); the session copies stay pristine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from kerasguard.integrity.keys import generate_keypair

from .pki import CA, write_cert, write_key


@dataclass
class Keys:
    folder: Path

    def private(self, who: str) -> Path:
        return self.folder / f"{who}.key"

    def public(self, who: str) -> Path:
        return self.folder / f"{who}.pub"


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    for who in ("alice", "bob", "mallory"):
        generate_keypair(folder / f"{who}.key", folder / f"{who}.pub")
    return Keys(folder)


@dataclass
class Pki:
    root: Path  # trusted root certificate (PEM)
    other_root: Path  # a root nobody trusts
    alice_key: Path
    alice_cert: Path  # alice@example.com, issued by root
    evil_key: Path
    evil_cert: Path  # alice@example.com, issued by other_root
    expired_key: Path
    expired_cert: Path
    nosign_key: Path
    nosign_cert: Path  # may not sign (key usage)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root, other = CA.create(), CA.create("someone else's root")
    alice_key, alice_cert = root.issue("alice@example.com")
    evil_key, evil_cert = other.issue("alice@example.com")
    exp_key, exp_cert = root.issue("alice@example.com", expired=True)
    ns_key, ns_cert = root.issue("alice@example.com", may_sign=False)
    return Pki(
        root=write_cert(root.cert, d / "root.pem"),
        other_root=write_cert(other.cert, d / "other-root.pem"),
        alice_key=write_key(alice_key, d / "alice-cert.key"),
        alice_cert=write_cert(alice_cert, d / "alice.pem"),
        evil_key=write_key(evil_key, d / "evil.key"),
        evil_cert=write_cert(evil_cert, d / "evil.pem"),
        expired_key=write_key(exp_key, d / "expired.key"),
        expired_cert=write_cert(exp_cert, d / "expired.pem"),
        nosign_key=write_key(ns_key, d / "nosign.key"),
        nosign_cert=write_cert(ns_cert, d / "nosign.pem"),
    )


@dataclass
class SavedModels:
    """A real Keras MLP saved by kerasguard.save_model, signed by alice, as a .keras file and a directory."""

    folder: Path
    file: Path
    directory: Path


@pytest.fixture(scope="session")
def saved(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> SavedModels:
    kmodels = pytest.importorskip("support.kmodels")
    from kerasguard import save_model

    folder = tmp_path_factory.mktemp("saved")
    model = kmodels.mlp()
    common = {"sign_with": keys.private("alice"), "model_name": "digits-mlp", "model_version": "1.0.0"}
    save_model(model, folder / "mlp.keras", signer="alice", **common)
    save_model(model, folder / "mlp_dir", signer="alice", **common)
    return SavedModels(folder, folder / "mlp.keras", folder / "mlp_dir")


def copy_model(src: Path, dest_folder: Path) -> Path:
    """Copy a model (and, for a file, its .sig and .manifest.json beside it) into ``dest_folder``."""
    dest = dest_folder / src.name
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        for extra in ("", ".sig", ".manifest.json"):
            side = src.with_name(src.name + extra)
            if side.exists():
                shutil.copy2(side, dest_folder / side.name)
    return dest


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Invert one byte in the middle of ``path`` (or at ``offset``)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
