"""Fast probe tests: statistics, data checks, policy table, STRIP file format, PNG writer, CLI errors."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from kerasguard.errors import PolicyError, ProbeError
from kerasguard.policy import policy_from_mapping
from kerasguard.probe.data import as_labelled, check_fits, check_per_class, read_npz
from kerasguard.probe.metrics import anomaly_indexes, roc_auc, tpr_at_fpr
from kerasguard.probe.png import write_png


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(1.0, 1.0, 200), 1)  # rounding makes ties
    neg = np.round(rng.normal(0.0, 1.0, 150), 1)
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert roc_auc(pos, neg) == pytest.approx(pairwise)
    assert roc_auc(neg, neg) == pytest.approx(0.5)


def test_tpr_at_fpr_allows_only_that_many_false_positives() -> None:
    neg = np.arange(100, dtype=float)  # 0..99
    pos = np.array([98.5, 99.5, 100.5, 50.0])
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(0.75)  # threshold 98: one negative (99) above
    assert tpr_at_fpr(pos, neg, 0.001) == pytest.approx(0.5)  # none allowed: threshold 99


def test_anomaly_index_flags_only_the_small_outlier() -> None:
    norms = np.array([3.0, 10.0, 11.0, 9.5, 10.5, 12.0, 9.0, 30.0])
    idx = anomaly_indexes(norms)
    assert idx[0] > 2 and idx[-1] < -2
    assert np.all(np.abs(idx[1:-1]) < 2)
    assert np.all(anomaly_indexes(np.full(5, 4.0)) == 0)


def test_data_with_nan_is_an_error() -> None:
    x = np.zeros((10, 4), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(ProbeError, match=r"NaN.*row 3"):
        as_labelled(x, np.zeros(10))


def test_data_that_does_not_fit_the_model_is_an_error() -> None:
    data = as_labelled(np.zeros((10, 5)), np.arange(10) % 3)
    with pytest.raises(ProbeError, match=r"shape \(5,\), the model expects \(4\)"):
        check_fits(data, (4,), 3, what="clean data")
    with pytest.raises(ProbeError, match="labels range from 0 to 2, the model has classes 0 to 1"):
        check_fits(as_labelled(np.zeros((10, 4)), np.arange(10) % 3), (4,), 2, what="clean data")
    with pytest.raises(ProbeError, match="one label per sample"):
        as_labelled(np.zeros((10, 4)), np.zeros(9))


def test_too_few_samples_per_class_names_the_minimum() -> None:
    data = as_labelled(np.zeros((25, 4)), np.array([0] * 12 + [1] * 12 + [2]))
    with pytest.raises(ProbeError, match=r"minimum 10\): class 2: 1"):
        check_per_class(data, 3, 10, what="clean data")
    with pytest.raises(ProbeError, match=r"class 3: 0"):
        check_per_class(data, 4, 1, what="clean data")


def test_npz_with_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ProbeError, match="pickled objects; refused, never unpickled"):
        read_npz(path)
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 2)))
    with pytest.raises(ProbeError, match="no array 'y'"):
        read_npz(tmp_path / "nolabels.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ProbeError, match="cannot read"):
        read_npz(tmp_path / "junk.npz")
    # a header declaring 8 TB is refused before NumPy allocates it (the shared reader, kerasguard.npzfile)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as zf:
        zf.writestr("x.npy", header.getvalue())
        zf.writestr("y.npy", header.getvalue())
    with pytest.raises(ProbeError, match="declare more than"):
        read_npz(tmp_path / "bomb.npz")


def test_probe_policy_table_is_validated() -> None:
    policy = policy_from_mapping({"probe": {"backdoor_anomaly_index": 3, "privacy_max_auc": 0.55}})
    assert policy.probe.backdoor_anomaly_index == 3.0
    assert policy.probe.privacy_max_auc == 0.55
    assert policy.probe.strip_fpr == 0.05
    for bad in (
        {"strip_fpr": 0.7},
        {"privacy_max_auc": 0.3},
        {"min_clean_per_class": 1},
        {"backdoor_anomaly_index": 0},
        {"backdoor_max_norm_ratio": 0},
        {"backdoor_max_norm_ratio": 1.5},
        {"backdoor_min_attack_success": -0.1},
        {"backdoor_min_attack_success": 2},
        {"unknown": 1},
        {"privacy_max_tpr_at_1pct_fpr": "high"},
    ):
        with pytest.raises(PolicyError, match="probe"):
            policy_from_mapping({"probe": bad})


def _png_pixels(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    raw = zlib.decompress(data[start : start + length])
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:]


def test_png_writer_writes_the_pixels(tmp_path: Path) -> None:
    img = np.zeros((4, 4))
    img[3, 3] = 1.0
    img[0, 0] = 0.5
    write_png(tmp_path / "t.png", img, scale=2)
    pixels = _png_pixels(tmp_path / "t.png")
    assert pixels.shape == (8, 8)
    assert pixels[7, 7] == 255 and pixels[6, 6] == 255 and pixels[0, 0] == 128 and pixels[3, 3] == 0


# --- STRIP detector files: plain arrays + JSON, digest-checked --------------------------------------


def _detector() -> object:
    from kerasguard.probe.strip import StripDetector

    rng = np.random.default_rng(0)
    return StripDetector(
        overlay=rng.random((6, 8, 8, 1), dtype=np.float32),
        threshold=0.3,
        fpr=0.05,
        n_perturb=4,
        lo=0.0,
        hi=1.0,
        n_classes=10,
        model_sha256="ab" * 32,
        calibration={"n": 6},
    )


def test_strip_detector_round_trip_and_pinned_digest(tmp_path: Path) -> None:
    from kerasguard.probe.strip import StripDetector

    det = _detector()
    path = tmp_path / "strip.npz"
    digest = det.save(path)  # type: ignore[attr-defined]
    loaded = StripDetector.load(path, digest=digest)
    assert loaded.threshold == 0.3 and loaded.n_perturb == 4 and loaded.model_sha256 == "ab" * 32
    assert np.array_equal(loaded.overlay, det.overlay)  # type: ignore[attr-defined]
    with pytest.raises(ProbeError, match="not the pinned"):
        StripDetector.load(path, digest="sha256:" + "0" * 64)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["meta.npy", "overlay.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    with pytest.raises(ProbeError, match="not bound"):
        loaded.score(np.zeros((1, 8, 8, 1)))


def _rewrite(path: Path, **arrays: np.ndarray) -> None:
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    members.update(arrays)
    np.savez(path, **members)


def test_strip_detector_tampered_threshold_is_refused(tmp_path: Path) -> None:
    from kerasguard.probe.strip import StripDetector

    path = tmp_path / "strip.npz"
    _detector().save(path)  # type: ignore[attr-defined]
    with np.load(path) as npz:
        meta = json.loads(npz["meta"].tobytes())
    meta["threshold"] = -1.0  # an attacker who wants the detector to pass everything
    _rewrite(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(ProbeError, match="digest mismatch"):
        StripDetector.load(path)
    _detector().save(path)  # type: ignore[attr-defined]
    with np.load(path) as npz:
        overlay = npz["overlay"].copy()
    overlay[0, 0, 0, 0] += 0.25
    _rewrite(path, overlay=overlay)
    with pytest.raises(ProbeError, match="digest mismatch"):
        StripDetector.load(path)


def test_strip_detector_hostile_files_are_refused(tmp_path: Path) -> None:
    from kerasguard.probe.strip import StripDetector

    path = tmp_path / "strip.npz"
    _detector().save(path)  # type: ignore[attr-defined]
    _rewrite(path, extra=np.zeros(1))
    with pytest.raises(ProbeError, match=r"exactly overlay\.npy and meta\.npy"):
        StripDetector.load(path)
    np.savez(path, overlay=np.array([object()], dtype=object), meta=np.zeros(1, dtype=np.uint8))
    with pytest.raises(ProbeError, match="pickled objects; refused, never unpickled"):
        StripDetector.load(path)
    np.savez_compressed(path, overlay=np.zeros((2, 3), np.float32), meta=np.zeros(3, np.uint8))
    with pytest.raises(ProbeError, match="compressed"):
        StripDetector.load(path)
    _detector().save(path)  # type: ignore[attr-defined]
    with pytest.raises(ProbeError, match="above the 100-byte limit"):
        StripDetector.load(path, max_bytes=100)
    _rewrite(path, meta=np.frombuffer(b"[1, 2]", dtype=np.uint8))
    with pytest.raises(ProbeError, match="JSON object"):
        StripDetector.load(path)


def test_reports_escape_hostile_model_names() -> None:
    from kerasguard.probe.backdoor import BackdoorReport, ClassResult
    from kerasguard.probe.render import backdoor_markdown, backdoor_text

    report = BackdoorReport(n_classes=2, n_samples=40, anomaly_threshold=2.0, verdict="clean")
    report.model = "evil\x1b[31m](http://x)|\n# owned"
    report.classes = [ClassResult(0, 3.0, 0.5, False, 0.9, True), ClassResult(1, 3.2, -0.5, False, 0.9, True)]
    text = backdoor_text(report)
    assert "\x1b" not in text and "\n# owned" not in text
    markdown = backdoor_markdown(report)
    assert "\\]\\(http://x\\)\\|" in markdown and "\x1b" not in markdown


def test_reports_show_format_characters_escaped() -> None:
    """The probe's own cleaner let zero-width characters and direction marks through, and turned what it
    did catch into '?'; the reports now use the shared escaping."""
    from kerasguard.probe.backdoor import BackdoorReport
    from kerasguard.probe.privacy import PrivacyReport
    from kerasguard.probe.render import backdoor_markdown, backdoor_text, privacy_markdown, privacy_text

    name = "m\x1b[2J\u202egpj.exe\u200b\u200f\u2066"
    backdoor = BackdoorReport(n_classes=2, n_samples=40, anomaly_threshold=2.0, verdict="clean", model=name)
    privacy = PrivacyReport(n_members=20, n_nonmembers=20, max_auc=0.5, max_tpr_at_1pct_fpr=0.0, verdict="ok")
    privacy.model = name
    outputs = [
        backdoor_text(backdoor),
        backdoor_markdown(backdoor),
        privacy_text(privacy),
        privacy_markdown(privacy),
    ]
    for out in outputs:
        assert not set(out) & set("\x1b\u202e\u200b\u200f\u2066"), out
    assert "m\\x1b[2J\\u202egpj.exe\\u200b\\u200f\\u2066" in outputs[0]
    assert "privacy probe: m\\x1b[2J\\u202egpj.exe" in outputs[2]
