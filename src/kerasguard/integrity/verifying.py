"""``verify``: is this model the one that was signed (or pinned), by a signer we trust?

Order matters: the signature is authenticated and the signer, model name and version are judged
against the policy *before* any file is hashed, so a bad signature costs nothing and a good one
is never used to describe files it does not cover. Every failure raises; nothing returns False.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kerasguard.errors import IntegrityError
from kerasguard.integrity.bundle import MAX_BUNDLE_BYTES, Bundle, Statement
from kerasguard.integrity.certs import load_certificates, verify_chain
from kerasguard.integrity.errors import (
    KeyMaterialError,
    ManifestMismatchError,
    SignatureError,
    UntrustedSignerError,
)
from kerasguard.integrity.fsutil import read_regular_file
from kerasguard.integrity.hashing import parse_digest
from kerasguard.integrity.keys import key_hint, load_public_key
from kerasguard.integrity.manifest import (
    DEFAULT_EXCLUDES,
    MANIFEST_NAME,
    Manifest,
    ManifestDiff,
    Progress,
    check,
    compute_manifest,
    diff,
)
from kerasguard.integrity.signing import (
    Signer,
    check_signature,
    default_signature_path,
    relative_inside,
)
from kerasguard.policy import Policy, Trust

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VerifiedModel:
    """What was verified, and who vouched for it.

    ``manifest`` lists exactly the files that were checked (computed from disk, equal to the
    signed or pinned one); load only those. ``checks`` names what was verified: ``signature``,
    ``digest`` and/or ``manifest``.
    """

    path: Path
    manifest: Manifest
    checks: tuple[str, ...]
    signer: Signer | None = None
    model_name: str | None = None
    model_version: str | None = None
    claimed_signer: str | None = None
    signature_path: Path | None = None

    @property
    def signer_name(self) -> str | None:
        return self.signer.name if self.signer else None

    def summary(self) -> str:
        """One human-readable line for logs and the CLI."""
        count = len(self.manifest)
        parts = [f"verified {self.path} ({count} file{'s' if count != 1 else ''}, {self.manifest.algorithm})"]
        if self.signer:
            parts.append(f"signed by {self.signer.name} ({self.signer.kind} {self.signer.key_id[:16]})")
        if self.model_name:
            version = f" version {self.model_version!r}" if self.model_version else ""
            parts.append(f"model {self.model_name!r}{version}")
        parts.append("checks: " + ", ".join(self.checks))
        return "; ".join(parts)


def _policy_base(policy: Policy) -> Path:
    source = Path(policy.source)
    return (
        source.parent if policy.source not in ("<default>", "<mapping>") and source.is_file() else Path.cwd()
    )


def _policy_path(policy: Policy, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else _policy_base(policy) / p


@dataclass
class _Trust:
    """The trust material of one verification, resolved from the caller and the policy."""

    keys: list[tuple[str | None, ec.EllipticCurvePublicKey, str]]  # (policy name, key, origin)
    explicit_key: tuple[ec.EllipticCurvePublicKey, str] | None
    roots: list[x509.Certificate]
    identities: frozenset[str] | None  # None: no identity pinned
    policy_keys: bool

    @property
    def any(self) -> bool:
        return bool(self.keys or self.explicit_key or self.roots)


def _resolve_trust(
    trust: Trust, policy: Policy, key: PathLike | None, cert_chain: PathLike | None, identity: str | None
) -> _Trust:
    keys: list[tuple[str | None, ec.EllipticCurvePublicKey, str]] = []
    for entry in trust.keys:
        try:
            keys.append((entry.name, load_public_key(_policy_path(policy, entry.public_key)), policy.source))
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"{policy.source}: trust key {entry.name!r}: {exc.message}") from None
    explicit = (load_public_key(key), os.fspath(key)) if key is not None else None
    roots: list[x509.Certificate] = []
    for chain in trust.cert_chains:
        roots.extend(load_certificates(_policy_path(policy, chain)))
    if cert_chain is not None:
        roots.extend(load_certificates(cert_chain))
    allowed: frozenset[str] | None = frozenset(trust.identities) if trust.identities else None
    if identity is not None:
        if allowed is not None and identity not in allowed:
            raise UntrustedSignerError(
                f"identity {identity!r} is not among the trusted identities of {policy.source}"
            )
        allowed = frozenset({identity})
    return _Trust(keys, explicit, roots, allowed, bool(trust.keys))


def _authenticate(bundle: Bundle, material: _Trust, source: str) -> Signer:
    if bundle.uses_certificate:
        return _authenticate_certificate(bundle, material, source)
    return _authenticate_key(bundle, material, source)


def _authenticate_certificate(bundle: Bundle, material: _Trust, source: str) -> Signer:
    if not material.roots:
        raise UntrustedSignerError(
            f"{source} is signed with a certificate, but no trusted root certificate was given",
            hint="pass --cert-chain ROOTS.pem or set trust.cert-chains in the policy",
        )
    chain = verify_chain(bundle.certificates, material.roots)
    if not check_signature(bundle, chain.public_key):
        raise SignatureError(
            f"{source}: the signature does not match the signed content (tampered signature)"
        )
    if material.identities is None:
        raise UntrustedSignerError(
            f"{source}: signed by certificate identity {', '.join(chain.identities) or chain.subject}, "
            "but no signer identity is pinned; a certificate chain alone does not say who may sign",
            hint="pass --identity or set trust.identities in the policy",
        )
    matched = [i for i in chain.identities if i in material.identities]
    if not matched:
        names = ", ".join(chain.identities) or f"none (subject {chain.subject})"
        raise UntrustedSignerError(
            f"{source}: unknown signer: the certificate names {names}, "
            f"not a trusted identity ({', '.join(sorted(material.identities))})"
        )
    return Signer(matched[0], "certificate", chain.fingerprint, chain.identities, named_by_policy=True)


def _authenticate_key(bundle: Bundle, material: _Trust, source: str) -> Signer:
    hint = bundle.key_hint
    if material.explicit_key is not None:
        key, origin = material.explicit_key
        if hint is not None and key_hint(key) != hint:
            raise SignatureError(
                f"{source}: wrong key: the signature was made with key {hint[:16]}, "
                f"not with {origin} ({key_hint(key)[:16]})"
            )
        if not check_signature(bundle, key):
            raise SignatureError(
                f"{source}: the signature does not verify with {origin} (wrong key or tampered signature)"
            )
        named = [name for name, k, _ in material.keys if key_hint(k) == key_hint(key)]
        if material.policy_keys and not named:
            raise UntrustedSignerError(
                f"{source}: signed with {origin} (key {key_hint(key)[:16]}), "
                "which is not a trusted key of the policy"
            )
        name = named[0] if named else None
        return Signer(name or f"key:{key_hint(key)[:16]}", "key", key_hint(key), named_by_policy=bool(named))
    if not material.keys:
        raise UntrustedSignerError(
            f"{source} is signed with a key ({(hint or 'no key id')[:16]}), but no public key was given",
            hint="pass --key PUB.pem or list the key under trust.keys in the policy",
        )
    candidates = [(n, k) for n, k, _ in material.keys if hint is None or key_hint(k) == hint]
    if not candidates:
        raise UntrustedSignerError(
            f"{source}: unknown signer: key {hint[:16] if hint else '?'} "
            "is not one of the policy's trusted keys "
            f"({', '.join(str(n) for n, _, _ in material.keys)})"
        )
    for name, key in candidates:
        if check_signature(bundle, key):
            return Signer(str(name), "key", key_hint(key), named_by_policy=True)
    raise SignatureError(f"{source}: the signature does not verify with the trusted key (tampered signature)")


def _check_model_pins(
    statement: Statement,
    signer: Signer,
    trust: Trust,
    model_name: str | None,
    model_version: str | None,
    source: str,
) -> None:
    if model_name is not None and statement.model_name != model_name:
        raise UntrustedSignerError(
            f"{source}: the signature is for model {statement.model_name!r}, not {model_name!r}"
        )
    if model_version is not None and statement.model_version != model_version:
        signed = repr(statement.model_version) if statement.model_version else "no version"
        raise UntrustedSignerError(f"{source}: the signature is for {signed}, not version {model_version!r}")
    if statement.signer is not None and signer.named_by_policy and statement.signer != signer.name:
        raise UntrustedSignerError(
            f"{source}: the signature claims signer {statement.signer!r}, but was made by {signer.name!r}"
        )
    _check_pins(statement, signer, trust, source)


def _check_pins(statement: Statement, signer: Signer, trust: Trust, source: str) -> None:
    """``trust.models`` is a closed list: the signed name and version must be pinned, by this signer.

    The caller need not say which model it expects: a signature for a model no pin names (another
    model signed by the same key) is refused, and so is a pinned model signed for a version below the
    pin's ``min_version`` (a rollback to an older, validly signed release).
    """
    if not trust.models:
        return
    name, version = statement.model_name, statement.model_version or ""
    named = [pin for pin in trust.models if fnmatch.fnmatchcase(name, pin.name)]
    if not named:
        pinned = ", ".join(repr(pin.name) for pin in trust.models)
        raise UntrustedSignerError(
            f"{source}: the signature is for model {name!r}, which no trust.models pin of the policy "
            f"names (pinned: {pinned}); another model's signature cannot stand in for a pinned one",
        )
    applies = [pin for pin in named if fnmatch.fnmatchcase(version, pin.version)]
    if not applies:
        raise UntrustedSignerError(
            f"{source}: model {name!r} is pinned, but no pin covers its signed version "
            f"{version or '(none)'!r} (pinned versions: {', '.join(repr(p.version) for p in named)})"
        )
    for pin in applies:
        if signer.name not in pin.signers:
            raise UntrustedSignerError(
                f"{source}: model {name!r} version {version or '(none)'!r} may only be "
                f"signed by {', '.join(pin.signers) or 'nobody'} (policy pin {pin.name!r}), "
                f"but was signed by {signer.name!r}"
            )
        if pin.min_version is not None:
            _check_min_version(name, statement.model_version, pin.min_version, pin.name, source)


def _check_min_version(name: str, signed: str | None, minimum: str, pin: str, source: str) -> None:
    from packaging.version import InvalidVersion, Version

    if not signed:
        raise UntrustedSignerError(
            f"{source}: the signature of model {name!r} names no version, but the policy pin {pin!r} "
            f"requires version {minimum} or newer",
            hint="sign with --model-version",
        )
    try:
        older = Version(signed) < Version(minimum)
    except InvalidVersion:
        raise UntrustedSignerError(
            f"{source}: model {name!r} is signed for version {signed!r}, which is not a PEP 440 version, "
            f"so it cannot be compared with the minimum {minimum} of policy pin {pin!r}"
        ) from None
    if older:
        raise UntrustedSignerError(
            f"{source}: model {name!r} is signed for version {signed!r}, older than the minimum "
            f"{minimum} of policy pin {pin!r} (a rollback to an older signed release?)"
        )


def _check_manifest_beside(model: Path, verified: Manifest) -> None:
    """A ``kerasguard.manifest.json`` the signature leaves out must be the manifest of what it signs.

    kerasguard's own signatures list the manifest in ``ignore_paths`` (it cannot contain its own
    digest), so its content is not signed. Anything but exactly the manifest of the verified files
    (what ``save_model`` writes) is reported as an extra file: a reader that trusts that file must
    never see content the signer did not vouch for.
    """
    path = model / MANIFEST_NAME
    if not (path.exists() or path.is_symlink()):
        return
    try:
        same = diff(Manifest.read(path), verified).ok
    except IntegrityError:
        same = False
    if not same:
        problem = ManifestDiff(extra=(MANIFEST_NAME,))
        raise ManifestMismatchError(
            f"{model}: integrity check failed\n{problem.describe(str(model), against='the signature')}"
            " (not signed, and not the manifest of the signed files)",
            diff=problem,
        )


def _read_bundle(sig_path: Path) -> Bundle:
    if not (sig_path.exists() or sig_path.is_symlink()):
        raise SignatureError(
            f"no signature found at {sig_path}",
            hint="sign the model with `kerasguard sign`, or point to its signature with --signature",
        )
    data = read_regular_file(sig_path, MAX_BUNDLE_BYTES, "signature", SignatureError)
    return Bundle.from_json(data, source=f"signature {sig_path}")


def verify(
    path: PathLike,
    *,
    key: PathLike | None = None,
    cert_chain: PathLike | None = None,
    digest: str | None = None,
    policy: Policy | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    signature: PathLike | None = None,
    manifest: PathLike | None = None,
    identity: str | None = None,
    progress: Progress | None = None,
) -> VerifiedModel:
    """Verify a model file or directory; return who signed what, or raise IntegrityError.

    Checks, each when asked for: the OMS signature (``key``, ``cert_chain``, ``signature``, or
    trust material in ``policy.trust``), a pinned ``digest`` (``sha256:<hex>``: the file's digest,
    or a directory's canonical manifest digest, see :mod:`kerasguard.integrity.manifest`), and a
    trusted ``manifest`` file. Raises :class:`~kerasguard.errors.IntegrityError` subclasses:
    SignatureError, UntrustedSignerError, ManifestMismatchError (naming the files).
    """
    model = Path(path)
    if not (model.is_file() or model.is_dir()):
        raise IntegrityError(f"{model}: no such model file or directory")
    policy = policy or Policy()
    trust = policy.trust
    material = _resolve_trust(trust, policy, key, cert_chain, identity)
    wants_signature = (
        material.any or signature is not None or trust.require == "signature" or bool(trust.models)
    )
    if not (wants_signature or digest or manifest):
        raise IntegrityError(
            f"nothing to verify {model} against",
            hint="give a public key (--key), a certificate chain (--cert-chain), "
            "a digest (--digest) or a manifest (--manifest)",
        )
    if (trust.require == "signature" or trust.models) and not material.any:
        why = "requires a signature" if trust.require == "signature" else "pins model signers"
        raise UntrustedSignerError(
            f"{policy.source} {why} but names no trusted key or certificate chain",
            hint="list keys under trust.keys or roots under trust.cert-chains",
        )

    cache: dict[tuple[str, tuple[str, ...]], Manifest] = {}

    def actual(algorithm: str, excludes: tuple[str, ...]) -> Manifest:
        if (algorithm, excludes) not in cache:
            cache[(algorithm, excludes)] = compute_manifest(model, algorithm, progress, excludes=excludes)
        return cache[(algorithm, excludes)]

    checks: list[str] = []
    result_manifest: Manifest | None = None
    signer: Signer | None = None
    statement: Statement | None = None
    sig_path: Path | None = None
    if wants_signature:
        sig_path = Path(signature) if signature is not None else default_signature_path(model)
        source = f"signature {sig_path}"
        bundle = _read_bundle(sig_path)
        signer = _authenticate(bundle, material, source)
        statement = Statement.from_payload(bundle.payload, source=source)
        _check_model_pins(statement, signer, trust, model_name, model_version, source)
        if model.is_file() != statement.single_file:
            what = (
                "a single file"
                if statement.single_file
                else f"a directory of {len(statement.resources)} files"
            )
            raise IntegrityError(
                f"{source} covers {what}, but {model} is {'a file' if model.is_file() else 'a directory'}"
            )
        # Only what the signature itself leaves out (its ignore_paths) and the signature file are not
        # compared: an unsigned kerasguard.manifest.json is an extra file like any other.
        excludes = statement.ignore_paths
        inside = relative_inside(model, sig_path)
        if inside:
            excludes += (inside,)
        result_manifest = actual(statement.algorithm, tuple(dict.fromkeys(excludes)))
        check(statement.manifest(model.name), result_manifest, str(model), against="the signature")
        if model.is_dir() and MANIFEST_NAME in statement.ignore_paths and inside != MANIFEST_NAME:
            _check_manifest_beside(model, result_manifest)
        checks.append("signature")
    if digest is not None:
        algorithm, want = parse_digest(digest)
        computed = actual(algorithm, DEFAULT_EXCLUDES)
        got = computed.digest()
        if got != f"{algorithm}:{want}":
            what = "file digest" if computed.kind == "file" else "manifest digest of the directory"
            raise IntegrityError(
                f"{model}: {what} mismatch: expected {algorithm}:{want}, got {got}",
                hint=None if computed.kind == "file" else "compare `kerasguard hash` output to find the file",
            )
        result_manifest = result_manifest or computed
        checks.append("digest")
    if manifest is not None:
        expected = Manifest.read(manifest)
        excludes = DEFAULT_EXCLUDES
        inside = relative_inside(model, Path(manifest))
        if inside:
            excludes += (inside,)
        computed = actual(expected.algorithm, excludes)
        check(expected, computed, str(model), against=f"manifest {manifest}")
        result_manifest = result_manifest or computed
        checks.append("manifest")
    assert result_manifest is not None
    return VerifiedModel(
        path=model,
        manifest=result_manifest,
        checks=tuple(checks),
        signer=signer,
        model_name=statement.model_name if statement else None,
        model_version=statement.model_version if statement else None,
        claimed_signer=statement.signer if statement else None,
        signature_path=sig_path,
    )


def verify_manifest(path: PathLike, expected: Manifest, *, progress: Progress | None = None) -> Manifest:
    """Re-hash ``path`` (e.g. a private copy of a verified model) and check it equals ``expected``.

    Only the files of ``expected`` are allowed; anything else is reported as extra.
    """
    computed = compute_manifest(path, expected.algorithm, progress)
    check(expected, computed, os.fspath(path))
    return computed
