"""Interoperability with the OpenSSF ``model_signing`` tool (1.1.1), both ways, keys and certificates.

model_signing needs an explicit hashing config to verify reliably (its inferred config breaks
for blake2 and shards in 1.1.1), and it checks neither the model's name nor the signer: those
checks are kerasguard's (covered in test_verify.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kerasguard.integrity import ManifestMismatchError, SignatureError, sign, verify

from .conftest import Keys, Pki, SavedModels, copy_model, flip_byte

model_signing = pytest.importorskip("model_signing")


def ms_hashing(*ignore: str, algorithm: str = "sha256") -> object:
    return (
        model_signing.hashing.Config()
        .use_file_serialization(hashing_algorithm=algorithm)
        .set_ignored_paths(paths=list(ignore), ignore_git_paths=True)
    )


def ms_verify_key(model: Path, signature: Path, public_key: Path) -> None:
    ignore = [signature.name] if model.is_dir() else []
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
        ms_hashing(*ignore)
    ).verify(model, signature)


def ms_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


# --- model_signing verifies kerasguard's signatures ---------------------------------------------


def test_model_signing_api_verifies_our_directory_signature(saved: SavedModels, keys: Keys) -> None:
    ms_verify_key(saved.directory, saved.directory / "model.sig", keys.public("alice"))


def test_model_signing_api_verifies_our_file_signature(saved: SavedModels, keys: Keys) -> None:
    ms_verify_key(saved.file, saved.folder / "mlp.keras.sig", keys.public("alice"))


def test_model_signing_api_rejects_our_signature_after_tampering(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.directory, tmp_path)
    flip_byte(model / "model.weights.h5")
    with pytest.raises(ValueError, match=r"Hash mismatch for .*model\.weights\.h5"):
        ms_verify_key(model, model / "model.sig", keys.public("alice"))


def test_model_signing_cli_verifies_our_signatures(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    ok = ms_cli("verify", "key", saved.directory, "--signature", saved.directory / "model.sig",
                "--public_key", keys.public("alice"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "Verification succeeded" in ok.stdout
    ok = ms_cli("verify", "key", saved.file, "--signature", saved.folder / "mlp.keras.sig",
                "--public_key", keys.public("alice"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = ms_cli("verify", "key", saved.directory, "--signature", saved.directory / "model.sig",
                 "--public_key", keys.public("bob"))  # fmt: skip
    assert bad.returncode == 1


def test_model_signing_verifies_our_certificate_signature(tmp_path: Path, pki: Pki) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.h5").write_bytes(os.urandom(4096))
    sig = sign(model, pki.alice_key, certificate=pki.alice_cert)
    model_signing.verifying.Config().use_certificate_verifier(
        certificate_chain=[pki.root]
    ).set_hashing_config(ms_hashing("model.sig")).verify(model, sig)
    cli = ms_cli("verify", "certificate", model, "--signature", sig, "--certificate_chain", pki.root)
    assert cli.returncode == 0, cli.stderr
    with pytest.raises(Exception, match=r"unable to get local issuer certificate|certificate verify"):
        model_signing.verifying.Config().use_certificate_verifier(
            certificate_chain=[pki.other_root]
        ).set_hashing_config(ms_hashing("model.sig")).verify(model, sig)


def test_model_signing_verifies_our_blake3_signature(tmp_path: Path, keys: Keys) -> None:
    pytest.importorskip("blake3")
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(10_000))
    sig = sign(model, keys.private("alice"), algorithm="blake3")
    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys.public("alice")
    ).set_hashing_config(ms_hashing("model.sig", algorithm="blake3")).verify(model, sig)


# --- kerasguard verifies model_signing's signatures ---------------------------------------------


def ms_sign_key(model: Path, signature: Path, private_key: Path, *, algorithm: str = "sha256") -> None:
    ignore = [signature.name] if model.is_dir() else []
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).set_hashing_config(
        ms_hashing(*ignore, algorithm=algorithm)
    ).sign(model, signature)


@pytest.mark.parametrize("algorithm", ["sha256", "blake2", "blake3"])
def test_we_verify_model_signing_key_signatures(
    saved: SavedModels, keys: Keys, tmp_path: Path, algorithm: str
) -> None:
    if algorithm == "blake3":
        pytest.importorskip("blake3")
    model = copy_model(saved.directory, tmp_path)
    (model / "model.sig").unlink()
    ms_sign_key(model, model / "model.sig", keys.private("bob"), algorithm=algorithm)
    result = verify(model, key=keys.public("bob"))
    assert result.model_name == "mlp_dir"  # model_signing names the model after its folder
    assert result.manifest.algorithm == {"blake2": "blake2b"}.get(algorithm, algorithm)
    flip_byte(model / "model.weights.h5")
    with pytest.raises(ManifestMismatchError, match=r"model\.weights\.h5"):
        verify(model, key=keys.public("bob"))


def test_we_verify_model_signing_single_file_signature(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.file, tmp_path)
    sig = tmp_path / "mlp.keras.sig"
    ms_sign_key(model, sig, keys.private("bob"))
    assert verify(model, key=keys.public("bob")).manifest.kind == "file"
    with pytest.raises(SignatureError, match="wrong key"):
        verify(model, key=keys.public("alice"))


def test_we_verify_model_signing_cli_signature_and_its_ignored_git_folder(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    model = copy_model(saved.directory, tmp_path)
    (model / "model.sig").unlink()
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    out = ms_cli(
        "sign", "key", model, "--signature", model / "model.sig", "--private_key", keys.private("bob")
    )
    assert out.returncode == 0, out.stderr
    # The signer chose to leave .git out (model_signing's default); kerasguard honours the signed list.
    # model_signing signed kerasguard.manifest.json like any other file, so it is checked too.
    files = verify(model, key=keys.public("bob")).manifest.files.keys()
    assert files == {"config.json", "kerasguard.manifest.json", "metadata.json", "model.weights.h5"}
    (model / "kerasguard.manifest.json").write_text("{}")
    with pytest.raises(ManifestMismatchError, match=r"kerasguard\.manifest\.json"):
        verify(model, key=keys.public("bob"))


def test_unsigned_manifest_added_to_a_model_signing_directory_is_an_extra_file(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    """model_signing neither signs nor ignores a kerasguard.manifest.json added after signing."""
    model = copy_model(saved.directory, tmp_path)
    for name in ("model.sig", "kerasguard.manifest.json"):
        (model / name).unlink()
    ms_sign_key(model, model / "model.sig", keys.private("bob"))
    assert verify(model, key=keys.public("bob")).checks == ("signature",)
    (model / "kerasguard.manifest.json").write_text('{"schema": "whatever the attacker wants"}')
    with pytest.raises(ManifestMismatchError, match=r"extra.*kerasguard\.manifest\.json") as info:
        verify(model, key=keys.public("bob"))
    assert info.value.diff.extra == ("kerasguard.manifest.json",)


def test_we_verify_model_signing_certificate_signatures(tmp_path: Path, pki: Pki) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.h5").write_bytes(os.urandom(4096))
    sig = model / "model.sig"
    model_signing.signing.Config().use_certificate_signer(
        private_key=pki.alice_key, signing_certificate=pki.alice_cert, certificate_chain=[pki.root]
    ).set_hashing_config(ms_hashing("model.sig")).sign(model, sig)
    result = verify(model, cert_chain=pki.root, identity="alice@example.com")
    assert result.signer is not None and result.signer.name == "alice@example.com"
    with pytest.raises(SignatureError, match="does not chain to a trusted root"):
        verify(model, cert_chain=pki.other_root, identity="alice@example.com")
