"""Dataset manifests: per-file digests and one root digest, so the data a model was trained on is
provable later. The format is kerasguard's model manifest (:mod:`kerasguard.integrity.manifest`,
``kerasguard.manifest/v1``), computed over the dataset file or folder; the data manifest's own file
(``kerasguard.data-manifest.json``) is left out of a folder's digest.
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasguard.integrity.manifest import DEFAULT_EXCLUDES, Manifest, check, compute_manifest

DATA_MANIFEST_NAME = "kerasguard.data-manifest.json"
_EXCLUDES = (*DEFAULT_EXCLUDES, DATA_MANIFEST_NAME)


def data_manifest(path: str | os.PathLike[str], algorithm: str = "sha256") -> Manifest:
    """Hash every file of a dataset (a file, or a folder walked in sorted order; links refused)."""
    return compute_manifest(path, algorithm, excludes=_EXCLUDES)


def verify_data_manifest(
    path: str | os.PathLike[str], manifest: Manifest | str | os.PathLike[str]
) -> Manifest:
    """Raise IntegrityError (ManifestMismatchError) naming every changed, extra or missing file."""
    expected = manifest if isinstance(manifest, Manifest) else Manifest.read(Path(manifest))
    actual = data_manifest(path, expected.algorithm)
    check(expected, actual, str(path), against="the data manifest")
    return actual
