"""save_model: model, manifest and signature written together, atomically, by real Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasguard.errors import KerasGuardError
from kerasguard.integrity import KeyMaterialError, Manifest, compute_manifest, verify

from .conftest import Keys

kmodels = pytest.importorskip("support.kmodels")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def model() -> object:
    return kmodels.mlp()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old" in p.name)


def test_keras_file_with_manifest_and_signature(tmp_path: Path, keys: Keys, model: object) -> None:
    from kerasguard import save_model

    result = save_model(model, tmp_path / "m.keras", sign_with=keys.private("alice"), model_version="3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.manifest.json", "m.keras.sig"]
    assert result.signature_path == tmp_path / "m.keras.sig"
    assert Manifest.read(result.manifest_path) == compute_manifest(tmp_path / "m.keras") == result.manifest
    checked = verify(tmp_path / "m.keras", key=keys.public("alice"), model_name="m.keras", model_version="3")
    assert checked.checks == ("signature",)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)  # type: ignore[attr-defined]


def test_directory_model_loads_despite_signature_files(tmp_path: Path, keys: Keys, model: object) -> None:
    from kerasguard import save_model

    target = tmp_path / "mdir"
    result = save_model(model, target, sign_with=keys.private("alice"), model_name="digits")
    assert {"model.sig", "kerasguard.manifest.json", "config.json", "model.weights.h5"} <= {
        p.name for p in target.iterdir()
    }
    assert result.signature_path == target / "model.sig"
    assert verify(target, key=keys.public("alice")).model_name == "digits"
    assert verify(target, manifest=target / "kerasguard.manifest.json").checks == ("manifest",)
    assert keras.saving.load_model(target).count_params() == model.count_params()  # type: ignore[attr-defined]
    assert leftovers(tmp_path) == []


def test_unsigned_save_writes_the_manifest_only(tmp_path: Path, model: object) -> None:
    from kerasguard import save_model

    result = save_model(model, tmp_path / "m.keras")
    assert result.signature_path is None
    assert not (tmp_path / "m.keras.sig").exists()
    doc = json.loads((tmp_path / "m.keras.manifest.json").read_text())
    assert list(doc["files"]) == ["m.keras"]


def test_overwriting_a_directory_replaces_it_whole(tmp_path: Path, keys: Keys, model: object) -> None:
    from kerasguard import save_model

    target = tmp_path / "mdir"
    save_model(model, target, sign_with=keys.private("alice"))
    (target / "stale.bin").write_text("left over from an older save")
    save_model(model, target, sign_with=keys.private("bob"))
    assert not (target / "stale.bin").exists()
    assert verify(target, key=keys.public("bob")).checks == ("signature",)
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_when_asked(tmp_path: Path, model: object) -> None:
    from kerasguard import save_model

    (tmp_path / "m.keras").write_bytes(b"precious")
    with pytest.raises(KerasGuardError, match="already exists"):
        save_model(model, tmp_path / "m.keras", overwrite=False)
    assert (tmp_path / "m.keras").read_bytes() == b"precious"


def test_legacy_h5_is_refused(tmp_path: Path, model: object) -> None:
    from kerasguard import save_model

    with pytest.raises(KerasGuardError, match="legacy HDF5"):
        save_model(model, tmp_path / "m.h5")


def test_missing_folder(tmp_path: Path, model: object) -> None:
    from kerasguard import save_model

    with pytest.raises(KerasGuardError, match="no such folder"):
        save_model(model, tmp_path / "absent" / "m.keras")


@pytest.mark.parametrize("name", ["m.keras", "mdir"])
def test_a_failed_save_leaves_nothing_behind(tmp_path: Path, keys: Keys, model: object, name: str) -> None:
    from kerasguard import save_model

    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    with pytest.raises(KeyMaterialError):
        save_model(model, tmp_path / name, sign_with=bad_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.key"]
    with pytest.raises(KerasGuardError, match=r"expects a keras\.Model"):
        save_model(object(), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.key"]


def test_unsigned_resave_removes_the_stale_signature(tmp_path: Path, keys: Keys, model: object) -> None:
    from kerasguard import save_model

    save_model(model, tmp_path / "m.keras", sign_with=keys.private("alice"))
    save_model(model, tmp_path / "m.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.manifest.json"]


def test_import_kerasguard_pulls_in_neither_keras_nor_cryptography() -> None:
    code = (
        "import sys, kerasguard, kerasguard.integrity, kerasguard.integrity.manifest\n"
        "bad = [m for m in ('keras', 'jax', 'tensorflow', 'torch', 'cryptography') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert callable(kerasguard.save_model) and callable(kerasguard.verify)\n"
        "assert 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
