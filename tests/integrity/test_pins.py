"""Policy pins of model names, signers and minimum versions, enforced without the caller's help.

The attacker can put files where the model is loaded from but cannot sign: they swap in a validly
signed *other* model, or an older signed release of the same one. The caller passes no
--model-name / --model-version; the policy's ``[[trust.models]]`` must still refuse both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasguard.cli.app import app
from kerasguard.errors import PolicyError
from kerasguard.integrity import UntrustedSignerError, sign, verify
from kerasguard.policy import PinnedModel, Policy, Trust, TrustedKey, load_policy

from .conftest import Keys, SavedModels


def pinned(keys: Keys, *pins: PinnedModel) -> Policy:
    return Policy(trust=Trust(keys=(TrustedKey("alice", str(keys.public("alice"))),), models=pins))


def signed_copy(saved: SavedModels, keys: Keys, folder: Path, name: str, version: str | None) -> Path:
    """The same Keras file, signed by alice as another model name or version (a real, valid signature)."""
    folder.mkdir(exist_ok=True)
    model = folder / "model.keras"
    shutil.copy2(saved.file, model)
    sign(model, keys.private("alice"), model_name=name, model_version=version, signer="alice")
    return model


def test_older_signed_version_is_refused_by_min_version(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    policy = pinned(keys, PinnedModel(name="digits-mlp", signers=("alice",), min_version="2.0"))
    with pytest.raises(
        UntrustedSignerError, match=r"signed for version '1\.0\.0', older than the minimum 2\.0"
    ):
        verify(saved.file, policy=policy)
    newer = signed_copy(saved, keys, tmp_path / "new", "digits-mlp", "2.0.1")
    assert verify(newer, policy=policy).model_version == "2.0.1"
    # PEP 440 ordering, not string ordering: 10.0 is newer than 2.0
    assert verify(signed_copy(saved, keys, tmp_path / "ten", "digits-mlp", "10.0"), policy=policy)


def test_signature_of_another_model_cannot_stand_in(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    policy = pinned(keys, PinnedModel(name="resnet", signers=("alice",)))
    other = signed_copy(saved, keys, tmp_path / "other", "mobilenet", "3.0")
    with pytest.raises(UntrustedSignerError, match=r"for model 'mobilenet', which no trust.models pin"):
        verify(other, policy=policy)
    resnet = signed_copy(saved, keys, tmp_path / "resnet", "resnet", "3.0")
    assert verify(resnet, policy=policy).model_name == "resnet"


def test_pinned_name_with_an_unpinned_version_is_refused(saved: SavedModels, keys: Keys) -> None:
    policy = pinned(keys, PinnedModel(name="digits-mlp", signers=("alice",), version="2.*"))
    with pytest.raises(UntrustedSignerError, match=r"no pin covers its signed version '1\.0\.0'"):
        verify(saved.file, policy=policy)


def test_min_version_needs_a_signed_comparable_version(
    saved: SavedModels, keys: Keys, tmp_path: Path
) -> None:
    policy = pinned(keys, PinnedModel(name="digits-mlp", signers=("alice",), min_version="1.0"))
    unversioned = signed_copy(saved, keys, tmp_path / "none", "digits-mlp", None)
    with pytest.raises(UntrustedSignerError, match="names no version"):
        verify(unversioned, policy=policy)
    odd = signed_copy(saved, keys, tmp_path / "odd", "digits-mlp", "latest")
    with pytest.raises(UntrustedSignerError, match="not a PEP 440 version"):
        verify(odd, policy=policy)


def test_pins_require_a_signature_and_trust_material(saved: SavedModels, tmp_path: Path) -> None:
    plain = tmp_path / "plain.keras"
    shutil.copy2(saved.file, plain)
    with pytest.raises(UntrustedSignerError, match="pins model signers but names no trusted key"):
        verify(plain, policy=Policy(trust=Trust(models=(PinnedModel(name="*", signers=("ci",)),))))


def test_load_model_refuses_a_rolled_back_model_before_loading(saved: SavedModels, keys: Keys) -> None:
    from kerasguard import load_model

    policy = pinned(keys, PinnedModel(name="digits-mlp", signers=("alice",), min_version="2.0"))
    with pytest.raises(UntrustedSignerError, match=r"older than the minimum 2\.0"):
        load_model(saved.file, policy=policy)


def test_cli_verify_refuses_by_policy_pin(saved: SavedModels, keys: Keys, tmp_path: Path) -> None:
    policy_file = tmp_path / "kerasguard.toml"
    policy_file.write_text(
        f'[[trust.keys]]\nname = "alice"\npublic-key = "{keys.public("alice")}"\n'
        '[[trust.models]]\nname = "digits-mlp"\nsigners = ["alice"]\nmin_version = "2.0"\n'
    )
    result = CliRunner().invoke(app, ["verify", str(saved.file), "--policy", str(policy_file)])
    assert result.exit_code == 1, result.output
    assert "older than the minimum" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        (
            'name = "resnet"\nsigners = ["ci"]\nmin_version = "two"',
            r"trust\.models\[0\].*'two' is not a PEP 440",
        ),
        (
            'name = "resnet"\nsigners = ["ci"]\nminimum_version = "2.0"',
            r"unknown policy key 'trust\.models\[0\]\.minimum_version'",
        ),
        ('name = "resnet"\nsigners = "ci"', r"'trust\.models\[0\]\.signers' must be a list"),
        ('name = ""\nsigners = ["ci"]', r"trust\.models\[0\].*'name' must not be empty"),
        ('signers = ["ci"]', r"trust\.models\[0\] is missing required key\(s\): name"),
        (
            'name = "resnet"\nsigners = ["ci"]\nmin_version = 2',
            r"'trust\.models\[0\]\.min_version' must be a string",
        ),
    ],
)
def test_bad_pins_are_policy_errors_naming_the_key(tmp_path: Path, pin: str, message: str) -> None:
    path = tmp_path / "kerasguard.toml"
    path.write_text(f"[[trust.models]]\n{pin}\n")
    with pytest.raises(PolicyError, match=message):
        load_policy(path)
