"""verify(): real Keras models saved by save_model, tampered in the ways an attacker would."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import zipfile
from pathlib import Path

import pytest

from kerasguard.errors import IntegrityError
from kerasguard.integrity import (
    KeyMaterialError,
    ManifestMismatchError,
    SignatureError,
    UntrustedSignerError,
    compute_manifest,
    sign,
    verify,
    verify_manifest,
)
from kerasguard.policy import PinnedModel, Policy, Trust, TrustedKey, load_policy

from .conftest import Keys, Pki, SavedModels, copy_model, flip_byte


def policy_trusting(keys: Keys, *names: str, models: tuple[PinnedModel, ...] = (), **trust: object) -> Policy:
    entries = tuple(TrustedKey(n, str(keys.public(n))) for n in names)
    return Policy(trust=Trust(keys=entries, models=models, **trust))  # type: ignore[arg-type]


def flip_in_member(archive: Path, member: str) -> None:
    """Flip one byte in the middle of a stored member of a ZIP file, in place."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    with archive.open("r+b") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        flip_byte(archive, info.header_offset + 30 + name_len + extra_len + info.file_size // 2)


# --- what a good model looks like -------------------------------------------------------------


def test_saved_keras_file_verifies(saved: SavedModels, keys: Keys) -> None:
    result = verify(saved.file, key=keys.public("alice"))
    assert result.checks == ("signature",)
    assert result.model_name == "digits-mlp" and result.model_version == "1.0.0"
    assert result.claimed_signer == "alice"
    assert result.signer is not None and result.signer.name.startswith("key:")
    assert result.manifest.kind == "file" and list(result.manifest) == ["mlp.keras"]


def test_saved_directory_verifies_and_lists_its_files(saved: SavedModels, keys: Keys) -> None:
    result = verify(saved.directory, policy=policy_trusting(keys, "alice", "bob"))
    assert result.signer is not None and result.signer.name == "alice"
    assert list(result.manifest) == ["config.json", "metadata.json", "model.weights.h5"]


def test_flipped_weight_byte_inside_keras_file_names_the_file(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.file, tmp_path)
    flip_in_member(model, "model.weights.h5")
    with pytest.raises(ManifestMismatchError) as info:
        verify(model, key=keys.public("alice"))
    assert info.value.diff.changed == ("mlp.keras",)
    assert f"modified since the signature was made: {model}" in info.value.message


def test_flipped_weight_byte_in_directory_names_the_file(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.directory, tmp_path)
    flip_byte(model / "model.weights.h5")
    with pytest.raises(ManifestMismatchError) as info:
        verify(model, key=keys.public("alice"))
    assert info.value.diff.changed == ("model.weights.h5",)
    assert f"{model}/model.weights.h5" in info.value.message


def test_added_file_is_named(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.directory, tmp_path)
    (model / "assets" / "payload.py").write_text("import os; os.system('id')")
    with pytest.raises(ManifestMismatchError) as info:
        verify(model, key=keys.public("alice"))
    assert info.value.diff.extra == ("assets/payload.py",)
    assert "not covered by the signature (extra)" in info.value.message


def test_removed_file_is_named(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.directory, tmp_path)
    (model / "metadata.json").unlink()
    with pytest.raises(ManifestMismatchError) as info:
        verify(model, key=keys.public("alice"))
    assert info.value.diff.missing == ("metadata.json",)
    assert "listed in the signature but missing" in info.value.message


def test_symlink_in_directory_is_refused(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.directory, tmp_path)
    (model / "model.weights.h5").rename(tmp_path / "elsewhere.h5")
    (model / "model.weights.h5").symlink_to(tmp_path / "elsewhere.h5")
    with pytest.raises(IntegrityError, match=r"model\.weights\.h5: symlink inside the model directory"):
        verify(model, key=keys.public("alice"))


# --- keys and signers ----------------------------------------------------------------------------


def test_wrong_key(saved: SavedModels, keys: Keys) -> None:
    with pytest.raises(
        SignatureError, match=r"wrong key: the signature was made with key [0-9a-f]{16}, not with"
    ):
        verify(saved.file, key=keys.public("bob"))


def test_unknown_signer(saved: SavedModels, keys: Keys) -> None:
    with pytest.raises(
        UntrustedSignerError, match=r"unknown signer: key [0-9a-f]{16} is not one of .*\(bob\)"
    ):
        verify(saved.directory, policy=policy_trusting(keys, "bob"))


def test_explicit_key_outside_policy_is_untrusted(saved: SavedModels, keys: Keys) -> None:
    with pytest.raises(UntrustedSignerError, match="not a trusted key of the policy"):
        verify(saved.file, key=keys.public("alice"), policy=policy_trusting(keys, "bob"))


def test_pinned_model_signed_by_another_signer(saved: SavedModels, keys: Keys) -> None:
    pin = PinnedModel(name="digits-*", signers=("bob",))
    with pytest.raises(UntrustedSignerError, match=r"may only be signed by bob .* but was signed by 'alice'"):
        verify(saved.file, policy=policy_trusting(keys, "alice", "bob", models=(pin,)))


def test_pin_applies_only_to_matching_versions(saved: SavedModels, keys: Keys) -> None:
    other_version = PinnedModel(name="digits-*", signers=("bob",), version="2.*")
    allowed = PinnedModel(name="digits-mlp", signers=("alice",), version="1.*")
    policy = policy_trusting(keys, "alice", "bob", models=(other_version, allowed))
    assert verify(saved.file, policy=policy).signer_name == "alice"


def test_claimed_signer_must_match_the_key(tmp_path: Path, keys: Keys) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    sign(model, keys.private("mallory"), signer="alice")
    with pytest.raises(UntrustedSignerError, match="claims signer 'alice', but was made by 'mallory'"):
        verify(model, policy=policy_trusting(keys, "alice", "mallory"))


def test_model_name_and_version_are_bound(saved: SavedModels, keys: Keys) -> None:
    pub = keys.public("alice")
    assert (
        verify(saved.file, key=pub, model_name="digits-mlp", model_version="1.0.0").model_name == "digits-mlp"
    )
    with pytest.raises(UntrustedSignerError, match="is for model 'digits-mlp', not 'resnet'"):
        verify(saved.file, key=pub, model_name="resnet")
    with pytest.raises(UntrustedSignerError, match=r"is for '1\.0\.0', not version '2\.0\.0'"):
        verify(saved.file, key=pub, model_version="2.0.0")


def test_renamed_file_still_verifies_but_keeps_its_signed_name(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.file, tmp_path)
    renamed = model.rename(tmp_path / "other.keras")
    result = verify(renamed, key=keys.public("alice"), signature=tmp_path / "mlp.keras.sig")
    assert result.model_name == "digits-mlp"


def test_policy_key_paths_are_relative_to_the_policy_file(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "alice.pub").write_bytes(keys.public("alice").read_bytes())
    (tmp_path / "kerasguard.toml").write_text(
        '[trust]\nrequire = "signature"\n'
        '[[trust.keys]]\nname = "alice"\npublic-key = "keys/alice.pub"\n'
        '[[trust.models]]\nname = "digits-mlp"\nsigners = ["alice"]\n'
    )
    policy = load_policy(tmp_path / "kerasguard.toml")
    assert verify(saved.directory, policy=policy).signer_name == "alice"


def test_policy_requiring_signature_needs_trust_material(saved: SavedModels) -> None:
    with pytest.raises(UntrustedSignerError, match="requires a signature but names no trusted key"):
        verify(saved.file, policy=Policy(trust=Trust(require="signature")))


def test_bad_policy_key_file_is_a_configuration_error(saved: SavedModels, tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("not a key")
    policy = Policy(trust=Trust(keys=(TrustedKey("alice", str(tmp_path / "bad.pub")),)))
    with pytest.raises(KeyMaterialError, match="trust key 'alice'"):
        verify(saved.file, policy=policy)


def test_nothing_to_verify_against(saved: SavedModels) -> None:
    with pytest.raises(IntegrityError, match="nothing to verify"):
        verify(saved.file)


# --- malformed and missing signatures ------------------------------------------------------------


def test_missing_signature(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.file, tmp_path)
    (tmp_path / "mlp.keras.sig").unlink()
    with pytest.raises(SignatureError, match=r"no signature found at .*mlp\.keras\.sig"):
        verify(model, key=keys.public("alice"))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: "{]", "not valid JSON"),
        (lambda text: json.dumps({"mediaType": "x"}), "missing field"),
    ],
    ids=["truncated", "empty", "malformed", "incomplete"],
)
def test_malformed_signature(
    saved: SavedModels, keys: Keys, tmp_path: Path, corrupt: object, message: str
) -> None:
    model = copy_model(saved.directory, tmp_path)
    sig = model / "model.sig"
    sig.write_text(corrupt(sig.read_text()))  # type: ignore[operator]
    with pytest.raises(SignatureError, match=message):
        verify(model, key=keys.public("alice"))


def test_fifo_planted_as_signature_does_not_hang(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    import os

    model = copy_model(saved.directory, tmp_path)
    (model / "model.sig").unlink()
    os.mkfifo(model / "model.sig")
    with pytest.raises(SignatureError, match="is not a regular file"):
        verify(model, key=keys.public("alice"))


def test_oversized_signature(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.directory, tmp_path)
    with (model / "model.sig").open("wb") as fh:
        fh.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(SignatureError, match="larger than"):
        verify(model, key=keys.public("alice"))


def test_tampered_signature_bytes(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    model = copy_model(saved.directory, tmp_path)
    doc = json.loads((model / "model.sig").read_text())
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    (model / "model.sig").write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not verify"):
        verify(model, key=keys.public("alice"))


def test_rewritten_statement_breaks_the_signature(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    # An attacker who changes the weights and rewrites the digests in the statement to match.
    model = copy_model(saved.directory, tmp_path)
    flip_byte(model / "model.weights.h5")
    doc = json.loads((model / "model.sig").read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    new = compute_manifest(model)
    for r in statement["predicate"]["resources"]:
        r["digest"] = new.files[r["name"]].digest
    from kerasguard.integrity.bundle import root_digest

    statement["subject"][0]["digest"]["sha256"] = root_digest(
        [r["digest"] for r in statement["predicate"]["resources"]]
    )
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (model / "model.sig").write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not verify"):
        verify(model, key=keys.public("alice"))


def test_directory_signature_does_not_fit_a_file(saved: SavedModels, keys: Keys) -> None:
    with pytest.raises(IntegrityError, match=r"covers a directory of 3 files, but .* is a file"):
        verify(saved.file, key=keys.public("alice"), signature=saved.directory / "model.sig")


def test_edited_unsigned_manifest_in_a_signed_directory_is_an_extra_file(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    # kerasguard's signature leaves kerasguard.manifest.json out (ignore_paths: it cannot hold its own
    # digest). The one save_model wrote, the manifest of the signed files, verifies; any other content
    # is an unsigned file that a reader of the manifest would trust, so it is reported as extra.
    model = copy_model(saved.directory, tmp_path)
    assert verify(model, key=keys.public("alice")).checks == ("signature",)
    for content in ("{}", (model / "kerasguard.manifest.json").read_text().replace("config.json", "x.json")):
        (model / "kerasguard.manifest.json").write_text(content)
        with pytest.raises(ManifestMismatchError, match=r"extra.*kerasguard\.manifest\.json") as info:
            verify(model, key=keys.public("alice"))
        assert info.value.diff.extra == ("kerasguard.manifest.json",)


# --- digests and manifests -----------------------------------------------------------------------


def test_file_digest(saved: SavedModels, tmp_path: Path) -> None:
    import hashlib

    want = "sha256:" + hashlib.sha256(saved.file.read_bytes()).hexdigest()
    assert verify(saved.file, digest=want).checks == ("digest",)
    model = copy_model(saved.file, tmp_path)
    flip_in_member(model, "config.json")
    with pytest.raises(IntegrityError, match=f"file digest mismatch: expected {want}"):
        verify(model, digest=want)


def test_directory_digest_is_the_canonical_manifest_digest(saved: SavedModels, tmp_path: Path) -> None:
    want = compute_manifest(saved.directory).digest()
    assert verify(saved.directory, digest=want).manifest.digest() == want
    model = copy_model(saved.directory, tmp_path)
    (model / "extra.txt").write_text("x")
    with pytest.raises(IntegrityError, match="manifest digest of the directory mismatch"):
        verify(model, digest=want)


def test_blake3_digest(saved: SavedModels) -> None:
    pytest.importorskip("blake3")
    want = compute_manifest(saved.directory, "blake3").digest()
    assert want.startswith("blake3:")
    assert verify(saved.directory, digest=want).checks == ("digest",)


def test_trusted_manifest_file(saved: SavedModels, tmp_path: Path) -> None:
    trusted = tmp_path / "trusted.json"
    trusted.write_text(compute_manifest(saved.directory).to_json())
    assert verify(saved.directory, manifest=trusted).checks == ("manifest",)
    model = copy_model(saved.directory, tmp_path)
    flip_byte(model / "config.json")
    with pytest.raises(
        ManifestMismatchError, match=r"modified since manifest .*trusted\.json was made: .*config\.json"
    ):
        verify(model, manifest=trusted)


def test_malformed_manifest_file(saved: SavedModels, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "kerasguard.manifest/v1"')
    with pytest.raises(IntegrityError, match="not valid JSON"):
        verify(saved.directory, manifest=bad)
    with pytest.raises(IntegrityError, match="no manifest found at"):
        verify(saved.directory, manifest=tmp_path / "absent.json")


def test_all_checks_together(saved: SavedModels, keys: Keys) -> None:
    result = verify(
        saved.directory,
        key=keys.public("alice"),
        digest=compute_manifest(saved.directory).digest(),
        manifest=saved.directory / "kerasguard.manifest.json",
    )
    assert result.checks == ("signature", "digest", "manifest")


def test_verify_manifest_of_a_private_copy(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    result = verify(saved.directory, key=keys.public("alice"))
    copy = copy_model(saved.directory, tmp_path)
    verify_manifest(copy, result.manifest)
    flip_byte(copy / "config.json")
    with pytest.raises(ManifestMismatchError, match=r"config\.json"):
        verify_manifest(copy, result.manifest)


# --- certificates --------------------------------------------------------------------------------


@pytest.fixture
def cert_signed(tmp_path: Path, pki: Pki) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.weights.h5").write_bytes(b"w" * 100)
    sign(model, pki.alice_key, certificate=pki.alice_cert, signer="alice@example.com")
    return model


def test_certificate_signature_with_pinned_identity(cert_signed: Path, pki: Pki) -> None:
    result = verify(cert_signed, cert_chain=pki.root, identity="alice@example.com")
    assert result.signer is not None
    assert (result.signer.name, result.signer.kind) == ("alice@example.com", "certificate")
    policy = Policy(trust=Trust(identities=("alice@example.com",), cert_chains=(str(pki.root),)))
    assert verify(cert_signed, policy=policy).signer_name == "alice@example.com"


def test_certificate_without_pinned_identity_is_untrusted(cert_signed: Path, pki: Pki) -> None:
    with pytest.raises(UntrustedSignerError, match="no signer identity is pinned"):
        verify(cert_signed, cert_chain=pki.root)


def test_certificate_with_other_identity_is_unknown(cert_signed: Path, pki: Pki) -> None:
    with pytest.raises(
        UntrustedSignerError, match=r"unknown signer: the certificate names alice@example\.com"
    ):
        verify(cert_signed, cert_chain=pki.root, identity="bob@example.com")


def test_identity_outside_policy(cert_signed: Path, pki: Pki) -> None:
    policy = Policy(trust=Trust(identities=("bob@example.com",)))
    with pytest.raises(UntrustedSignerError, match="not among the trusted identities"):
        verify(cert_signed, cert_chain=pki.root, identity="alice@example.com", policy=policy)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("evil", "does not chain to a trusted root"),
        ("expired", "does not chain"),
        ("nosign", "not allowed to sign"),
    ],
)
def test_bad_certificates(tmp_path: Path, pki: Pki, which: str, message: str) -> None:
    model = tmp_path / "w.bin"
    model.write_bytes(b"weights")
    sign(model, getattr(pki, f"{which}_key"), certificate=getattr(pki, f"{which}_cert"))
    with pytest.raises(SignatureError, match=message):
        verify(model, cert_chain=pki.root, identity="alice@example.com")


def test_certificate_must_match_the_signing_key(tmp_path: Path, pki: Pki, keys: Keys) -> None:
    model = tmp_path / "w.bin"
    model.write_bytes(b"weights")
    with pytest.raises(KeyMaterialError, match="for another key"):
        sign(model, keys.private("alice"), certificate=pki.alice_cert)


def test_key_and_certificate_material_do_not_mix(
    cert_signed: Path, pki: Pki, keys: Keys, tmp_path: Path
) -> None:
    with pytest.raises(UntrustedSignerError, match="signed with a certificate, but no trusted root"):
        verify(cert_signed, key=keys.public("alice"))
    model = tmp_path / "k.bin"
    model.write_bytes(b"x")
    sign(model, keys.private("alice"))
    with pytest.raises(UntrustedSignerError, match=r"signed with a key .* but no public key was given"):
        verify(model, cert_chain=pki.root, identity="alice@example.com")


def test_verified_model_is_frozen(saved: SavedModels, keys: Keys) -> None:
    result = verify(saved.file, key=keys.public("alice"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.checks = ()  # type: ignore[misc]


def test_policy_file_with_certificate_roots_and_identities(
    cert_signed: Path, pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "root.pem").write_bytes(pki.root.read_bytes())
    (tmp_path / "kerasguard.toml").write_text(
        '[trust]\nrequire = "signature"\ncert-chains = ["pki/root.pem"]\nidentities = ["alice@example.com"]\n'
    )
    result = verify(cert_signed, policy=load_policy(tmp_path / "kerasguard.toml"))
    assert result.signer is not None and result.signer.identities == ("alice@example.com",)
