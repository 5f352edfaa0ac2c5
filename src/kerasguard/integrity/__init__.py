"""Trust before load: manifests, OpenSSF model-signing signatures, verification.

``verify(path, key=..., cert_chain=..., digest=..., policy=...)`` returns a :class:`VerifiedModel`
(who signed what) or raises :class:`~kerasguard.errors.IntegrityError`; it never returns False.
Hashing and manifests need only the standard library; signing and verifying need the ``sign``
extra (``cryptography``), so those names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasguard._lazy import lazy_exports
from kerasguard.integrity.errors import (
    KeyMaterialError,
    ManifestMismatchError,
    SignatureError,
    UntrustedSignerError,
)
from kerasguard.integrity.hashing import hash_file, parse_digest
from kerasguard.integrity.manifest import FileEntry, Manifest, ManifestDiff, compute_manifest, diff

if TYPE_CHECKING:
    from kerasguard.integrity.keys import generate_keypair
    from kerasguard.integrity.signing import Signer, default_manifest_path, default_signature_path, sign
    from kerasguard.integrity.verifying import VerifiedModel, verify, verify_manifest

_LAZY = {
    "generate_keypair": "kerasguard.integrity.keys",
    "Signer": "kerasguard.integrity.signing",
    "sign": "kerasguard.integrity.signing",
    "default_signature_path": "kerasguard.integrity.signing",
    "default_manifest_path": "kerasguard.integrity.signing",
    "VerifiedModel": "kerasguard.integrity.verifying",
    "verify": "kerasguard.integrity.verifying",
    "verify_manifest": "kerasguard.integrity.verifying",
}


def _needs_sign_extra(name: str, exc: ImportError) -> Exception:
    from kerasguard.errors import KerasGuardError

    return KerasGuardError(
        f"kerasguard.integrity.{name} needs the 'sign' extra ({exc.name} is not installed)",
        hint="pip install 'kerasguard[sign]'",
    )


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), _needs_sign_extra)


__all__ = [
    "FileEntry",
    "KeyMaterialError",
    "Manifest",
    "ManifestDiff",
    "ManifestMismatchError",
    "SignatureError",
    "Signer",
    "UntrustedSignerError",
    "VerifiedModel",
    "compute_manifest",
    "default_manifest_path",
    "default_signature_path",
    "diff",
    "generate_keypair",
    "hash_file",
    "parse_digest",
    "sign",
    "verify",
    "verify_manifest",
]
