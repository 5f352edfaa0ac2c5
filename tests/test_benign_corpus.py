"""Benign models written by several Keras versions scan complete, with no finding at or above high.

Committed fixtures (tests/data/benign/<producer>/, see its README) come from older Keras 3 releases,
tf-keras 2.21 and Keras 3 on TensorFlow; the models only the installed Keras writes (npz weights, many
shards, mixed precision, tens of MB of weights) are built here at test time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kerasguard.findings import FileReport, ScanReport, Severity
from kerasguard.policy import Policy
from kerasguard.scanning.engine import scan

BENIGN = Path(__file__).parent / "data" / "benign"
PRODUCERS = sorted(p.name for p in BENIGN.iterdir() if p.is_dir())
SHARD = re.compile(r"_\d{5}\.weights\.h5$")


def fixtures() -> list[Path]:
    """Every model file of the corpus; shards are scanned through their index."""
    return sorted(p for p in BENIGN.glob("*/*") if p.name != "README.md" and not SHARD.search(p.name))


def is_npz(path: Path) -> bool:
    return path.name.endswith("_npz.keras")


def serious(report: ScanReport) -> list[str]:
    return [f"{f.rule_id} {f.location}: {f.message}" for f in report.at_or_above(Severity.HIGH)]


def only_file(report: ScanReport) -> FileReport:
    assert report.errors == ()
    assert len(report.files) == 1
    return report.files[0]


def test_corpus_has_every_producer_and_kind() -> None:
    assert {"keras-3.10.0", "keras-3.12.1", "tf-keras-2.21.0", "keras-3.15.1-tensorflow"} <= set(PRODUCERS)
    names = {p.name for p in fixtures()}
    for wanted in (
        "cnn.h5",
        "cnn_weights.h5",
        "rnn.weights.h5",
        "stack.weights.json",
        "mlp_npz.keras",
        "string_lookup.keras",
        "text_vectorization.h5",
        "mixed_precision.keras",
    ):
        assert wanted in names
    assert sum(p.stat().st_size for p in BENIGN.rglob("*")) < 3 * 1024 * 1024


@pytest.mark.parametrize("producer", PRODUCERS)
def test_readme_lists_every_file(producer: str) -> None:
    folder = BENIGN / producer
    listed = set(re.findall(r"^\| `([^`]+)` \|", (folder / "README.md").read_text(), re.M))
    present = {p.name for p in folder.iterdir() if p.name != "README.md" and not SHARD.search(p.name)}
    assert listed == present


@pytest.mark.parametrize(
    "path", [p for p in fixtures() if not is_npz(p)], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_fixture_scans_complete_with_nothing_serious(path: Path) -> None:
    report = scan(path, Policy())
    file = only_file(report)
    assert file.complete, [f.message for f in file.findings]
    assert file.format != "unknown"
    assert serious(report) == []
    assert report.exit_code(Severity.HIGH) == 0


EXPECTED_FORMATS = {
    "tf-keras-2.21.0/mlp.h5": "legacy_model",
    "tf-keras-2.21.0/cnn_weights.h5": "legacy_weights",
    "tf-keras-2.21.0/mlp.keras": "keras",
    "tf-keras-2.21.0/mlp.weights.h5": "keras_weights",
    "keras-3.12.1/cnn.h5": "legacy_model",
    "keras-3.12.1/stack.weights.json": "sharded_weights",
}


@pytest.mark.parametrize(("name", "fmt"), sorted(EXPECTED_FORMATS.items()))
def test_each_layout_is_read_as_what_it_is(name: str, fmt: str) -> None:
    assert only_file(scan(BENIGN / name, Policy())).format == fmt


def test_whole_corpus_in_one_run() -> None:
    report = scan(BENIGN, Policy())
    assert report.complete and report.errors == ()
    assert {Path(f.path).name for f in report.files} >= {p.name for p in fixtures()}
    serious_files = {
        Path(f.path).name for f in report.files if f.max_severity and f.max_severity >= Severity.HIGH
    }
    assert serious_files == set()


@pytest.mark.parametrize("path", [p for p in fixtures() if is_npz(p)], ids=lambda p: p.parent.name)
def test_keras_npz_weights_are_flagged_only_as_the_pickles_they_are(path: Path) -> None:
    """Keras writes npz weights as pickled object arrays (see tests/data/benign/README.md).

    Keras >= 3.9 refuses to unpickle them, so for the installed Keras they are medium (reported, not
    hidden); for a Keras 3.0-3.8 that would unpickle them they are critical.
    """
    report = scan(path, Policy())
    file = only_file(report)
    assert file.complete
    assert report.at_or_above(Severity.HIGH) == ()
    medium = report.at_or_above(Severity.MEDIUM)
    assert {f.rule_id for f in medium} == {"KG104", "KG105"}
    assert all(f.location.member and f.location.member.startswith("model.weights.npz") for f in medium)
    old = scan(path, Policy(keras_version="3.8.0"))
    assert {f.rule_id for f in old.at_or_above(Severity.CRITICAL)} >= {"KG104", "KG105", "KG601"}


# --- models written by the installed Keras, built at test time ---------------------------------------


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    kmodels = pytest.importorskip("support.kmodels")
    from keras.src.saving import saving_lib

    folder = tmp_path_factory.mktemp("current")
    out: dict[str, Path] = {}
    mixed = kmodels.mixed_precision()
    out["mixed_precision.keras"] = kmodels.save_keras(mixed, folder / "mixed_precision.keras")
    mixed.save(folder / "mixed_precision.h5")
    out["mixed_precision.h5"] = folder / "mixed_precision.h5"
    (folder / "sharded").mkdir()
    kmodels.cnn().save_weights(folder / "sharded" / "cnn.weights.json", max_shard_size=8e-6)
    out["cnn.weights.json"] = folder / "sharded" / "cnn.weights.json"
    saving_lib.save_model(kmodels.rnn(), str(folder / "rnn_npz.keras"), weights_format="npz")
    out["rnn_npz.keras"] = folder / "rnn_npz.keras"
    big = kmodels.big_dense()
    big.save(folder / "big.keras")
    big.save_weights(folder / "big.weights.h5")
    out["big.keras"] = folder / "big.keras"
    out["big.weights.h5"] = folder / "big.weights.h5"
    yield out


@pytest.mark.keras
@pytest.mark.parametrize(
    "name", ["mixed_precision.keras", "mixed_precision.h5", "cnn.weights.json", "big.keras", "big.weights.h5"]
)
def test_installed_keras_models_have_nothing_serious(current: dict[str, Path], name: str) -> None:
    report = scan(current[name], Policy())
    file = only_file(report)
    assert file.complete, [f.message for f in file.findings]
    assert serious(report) == []


@pytest.mark.keras
def test_sharded_index_has_several_shards(current: dict[str, Path]) -> None:
    shards = sorted(p.name for p in current["cnn.weights.json"].parent.glob("cnn_*.weights.h5"))
    assert len(shards) >= 2
    report = scan(current["cnn.weights.json"].parent, Policy())
    assert report.complete and serious(report) == []


@pytest.mark.keras
def test_big_model_is_read_whole(current: dict[str, Path]) -> None:
    """Tens of MB of real weights: the scan covers the whole file, it is not cut short by a limit."""
    file = only_file(scan(current["big.keras"], Policy()))
    assert file.size > 40 * 1024 * 1024
    assert file.complete and file.findings == ()


@pytest.mark.keras
def test_installed_keras_npz_is_the_same_pickle_format(current: dict[str, Path]) -> None:
    report = scan(current["rnn_npz.keras"], Policy())
    assert only_file(report).complete
    assert report.at_or_above(Severity.HIGH) == ()
    assert {f.rule_id for f in report.at_or_above(Severity.MEDIUM)} == {"KG104", "KG105"}
