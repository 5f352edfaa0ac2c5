"""Sealed attachments (probe reports, training records, detectors): each its own encrypted blob, its
digest, size, kind and name in the version's MAC-covered provenance. Attacked for real on SQLite and
PostgreSQL: an edited blob, a blob swapped between versions, an edited entry, a replayed older row,
an oversize file, a non-admin attach, hostile text shown by ``store show``."""

from __future__ import annotations

import ast
import base64
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from conftest import SOURCE, SOURCES, StoreEnv
from kerasguard import attach
from kerasguard.errors import StoreError
from kerasguard.policy import Policy, Store, Trust
from kerasguard.store import AccessDenied, AttachmentError, NewAttachment
from kerasguard.store.db import AuditRow, ModelDetails, ModelRow

HOSTILE = "\x1b]0;pwned\x07[red]boom[/red]<script>x</script>"
MiB = 1 << 20


def backdoor_report(path: Path, verdict: str = "backdoor", model: str = "digits.keras") -> Path:
    """A report in the format ``kerasguard probe backdoor -f json`` writes (schema backdoor/1)."""
    report = {
        "schema": "kerasguard.probe.backdoor/1",
        "model": model,
        "verdict": verdict,
        "flagged_classes": [7],
        "anomaly_threshold": 2.0,
        "n_classes": 10,
        "n_samples": 200,
        "backend": "jax",
        "search_seconds": 1.5,
        "classes": [
            {"class": 7, "mask_l1": 3.0, "anomaly_index": 4.25, "flagged": True, "attack_success": 0.99},
            {"class": 1, "mask_l1": 20.0, "anomaly_index": 0.5, "flagged": False, "attack_success": 0.9},
        ],
        "strip": None,
    }
    path.write_text(json.dumps(report))
    return path


def privacy_report(path: Path) -> Path:
    report = {
        "schema": "kerasguard.probe.privacy/1",
        "model": "m.keras",
        "verdict": "leak",
        "reasons": ["loss attack AUC 0.81 > 0.6"],
        "thresholds": {"max_auc": 0.6, "max_tpr_at_1pct_fpr": 0.05},
        "n_members": 100,
        "n_nonmembers": 100,
        "attacks": [
            {"name": "loss", "auc": 0.81, "tpr_at_fpr": {"0.001": 0.02, "0.01": 0.11}, "per_class_auc": {}},
            {
                "name": "confidence",
                "auc": 0.7,
                "tpr_at_fpr": {"0.001": 0.0, "0.01": 0.04},
                "per_class_auc": {},
            },
        ],
        "notes": [],
    }
    path.write_text(json.dumps(report))
    return path


def training_record(path: Path) -> Path:
    record = {
        "schema": "kerasguard.training-record/v1",
        "data_manifest": "sha256:" + "d" * 64,
        "hyperparameters": {"epochs": 2},
        "metrics": [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}],
        "anomalies": [{"id": "KGT001", "epoch": 1, "batch": 3, "message": "loss spike"}],
        "stopped": False,
        "batches": 20,
        "keras_version": "3.15.1",
        "backend": "jax",
        "padding": "x" * 60_000,  # over the 48 KiB that inline provenance allowed
    }
    path.write_text(json.dumps(record))
    return path


def push(env: StoreEnv, token: str, model: Path, version: str, items: list[NewAttachment]) -> Any:
    return env.store.push(
        token, model, name="digits", version=version, source=SOURCE, namespace="team", attachments=items
    )


def blob_of(env: StoreEnv, version: str, kind: str = "probe_report") -> dict[str, Any]:
    with env.store.transaction() as s:
        row = s.execute(select(ModelRow).where(ModelRow.version == version)).scalar_one()
        details = s.get(ModelDetails, row.id)
        assert details is not None
        entries = json.loads(details.provenance)["attachments"]
    return next(e for e in entries if e["kind"] == kind)


def blob_path(env: StoreEnv, blob_id: str) -> Path:
    return env.root / "blobs" / blob_id


@pytest.fixture
def model(keras_models: dict[str, Path]) -> Path:
    return keras_models["benign"]


def test_push_seals_attachments_and_reads_them_back(env: StoreEnv, model: Path, tmp_path: Path) -> None:
    publisher = env.token("publisher")
    report = backdoor_report(tmp_path / "backdoor.json")
    record = training_record(tmp_path / "training.json")
    items = attach.build(
        model=model,
        max_bytes=MiB,
        probe_reports=[report, privacy_report(tmp_path / "privacy.json")],
        training_records=[record],
    )
    info = push(env, publisher, model, "1", items)
    assert info.status == "admitted"
    shown = env.store.show(env.token("reader"), "digits", "1")
    kinds = [(a.kind, a.name) for a in shown.attachments]
    assert kinds == [
        ("training_record", "training.json"),
        ("probe_report", "backdoor.json"),
        ("probe_report", "privacy.json"),
    ]
    backdoor = shown.attachments[1]
    assert backdoor.summary["verdict"] == "backdoor" and backdoor.summary["flagged_classes"] == [7]
    assert backdoor.summary["max_anomaly_index"] == 4.25
    assert shown.attachments[2].summary["max_auc"] == 0.81
    assert shown.attachments[2].summary["max_tpr_at_1pct_fpr"] == 0.11
    # the public record carries neither blob ids nor wrapped keys
    public = json.dumps(shown.to_dict())
    entry = blob_of(env, "1")
    assert entry["blob_id"] not in public and entry["wrapped_key"] not in public
    # the blob is ciphertext; reading decrypts and checks the digest
    assert report.read_bytes() not in blob_path(env, entry["blob_id"]).read_bytes()
    found = env.store.read_attachment(
        env.token("reader"),
        "digits",
        "1",
        kind="probe_report",
        namespace="team",
        attachment_name="backdoor.json",
    )
    assert found is not None and found[1] == report.read_bytes()
    got = env.store.read_attachment(env.admin, "digits", "1", kind="training_record", namespace="team")
    assert got is not None and got[1] == record.read_bytes() and len(got[1]) > 48 * 1024
    assert env.store.read_attachment(env.admin, "digits", "1", kind="detector", namespace="team") is None
    with env.store.transaction() as s:
        details = [r.detail for r in s.execute(select(AuditRow).where(AuditRow.action == "attach")).scalars()]
    assert any(d.startswith("probe_report backdoor.json") for d in details), details


def test_an_edited_attachment_blob_is_refused(env: StoreEnv, model: Path, tmp_path: Path) -> None:
    items = attach.build(model=model, max_bytes=MiB, probe_reports=[backdoor_report(tmp_path / "r.json")])
    push(env, env.token("publisher"), model, "1", items)
    path = blob_path(env, blob_of(env, "1")["blob_id"])
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(AttachmentError, match="damaged or was tampered with"):
        env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")
    with env.store.transaction() as s:
        failed = s.execute(select(AuditRow).where(AuditRow.action == "read-attachment")).scalars().all()
    assert [r.result for r in failed] == ["failed"]
    path.unlink()
    with pytest.raises(AttachmentError, match="missing from the store"):
        env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")


def test_a_blob_swapped_between_versions_is_refused(env: StoreEnv, model: Path, tmp_path: Path) -> None:
    publisher = env.token("publisher")
    clean = attach.build(
        model=model, max_bytes=MiB, probe_reports=[backdoor_report(tmp_path / "r.json", "clean")]
    )
    bad = attach.build(model=model, max_bytes=MiB, probe_reports=[backdoor_report(tmp_path / "r.json")])
    push(env, publisher, model, "1", bad)
    push(env, publisher, model, "2", clean)
    # the attacker copies version 2's (clean) report blob over version 1's
    one, two = blob_of(env, "1"), blob_of(env, "2")
    blob_path(env, one["blob_id"]).write_bytes(blob_path(env, two["blob_id"]).read_bytes())
    with pytest.raises(AttachmentError, match="tampered"):
        env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")
    # ... or points version 1's entry at version 2's blob and key in the database
    with env.store.transaction() as s:
        row = s.execute(select(ModelRow).where(ModelRow.version == "1")).scalar_one()
        details = s.get(ModelDetails, row.id)
        assert details is not None
        provenance = json.loads(details.provenance)
        provenance["attachments"] = [{**one, "blob_id": two["blob_id"], "wrapped_key": two["wrapped_key"]}]
        s.execute(
            update(ModelDetails)
            .where(ModelDetails.model_id == row.id)
            .values(provenance=json.dumps(provenance, sort_keys=True))
        )
    with pytest.raises(StoreError, match="failed their integrity check"):
        env.store.show(env.admin, "digits", "1", namespace="team")
    with pytest.raises(StoreError, match="failed their integrity check"):
        env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")


def test_attach_is_for_admins_audited_and_a_replayed_older_row_is_refused(
    env: StoreEnv, model: Path, tmp_path: Path
) -> None:
    publisher = env.token("publisher")
    push(env, publisher, model, "1", [])
    items = attach.build(model=None, max_bytes=MiB, probe_reports=[backdoor_report(tmp_path / "r.json")])
    with pytest.raises(AccessDenied):
        env.store.attach(publisher, "digits", "1", items)
    tenant_admin = env.token("admin")
    with pytest.raises(AccessDenied):  # an admin of another namespace
        env.store.attach(env.token("admin", "other"), "digits", "1", items, namespace="team")
    with env.store.transaction() as s:
        denied = s.execute(select(AuditRow).where(AuditRow.action == "attach")).scalars().all()
        assert [r.result for r in denied] == ["denied", "denied"]
        old_row = {
            c.name: getattr(r, c.name)
            for r in [s.execute(select(ModelRow)).scalar_one()]
            for c in ModelRow.__table__.columns
        }
        old_details = s.execute(select(ModelDetails.provenance)).scalar_one()
    info = env.store.attach(tenant_admin, "digits", "1", items)
    assert [a.kind for a in info.attachments] == ["probe_report"]
    assert (
        env.store.show(env.admin, "digits", "1", namespace="team").attachments[0].summary["verdict"]
        == "backdoor"
    )
    with env.store.transaction() as s:
        ok = s.execute(
            select(AuditRow).where(AuditRow.action == "attach", AuditRow.result == "ok")
        ).scalar_one()
        assert ok.revision == 2 and ok.subject == "model:team/digits:1" and "probe_report r.json" in ok.detail
    # someone with database access puts back the row and details from before the attach
    with env.store.transaction() as s:
        s.execute(update(ModelRow).where(ModelRow.id == old_row["id"]).values(**old_row))
        s.execute(
            update(ModelDetails).where(ModelDetails.model_id == old_row["id"]).values(provenance=old_details)
        )
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.show(env.admin, "digits", "1", namespace="team")
    with pytest.raises(StoreError, match="not its latest state"):
        env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")


def test_oversize_attachments_are_refused_before_anything_is_stored(
    make_store: Callable[..., StoreEnv], model: Path, tmp_path: Path
) -> None:
    policy = Policy(
        store=Store(sources=SOURCES.sources, max_attachment_bytes=2000),
        trust=Trust(allow_unsafe_skip_scan=True),
    )
    env = make_store(policy=policy)
    record = training_record(tmp_path / "training.json")
    with pytest.raises(StoreError, match="over the store's limit of 2000 bytes"):
        attach.build(model=model, max_bytes=2000, training_records=[record])
    # a caller who builds the attachment by hand is refused by the store itself
    big = NewAttachment("training_record", "training.json", record.read_bytes(), {})
    publisher = env.token("publisher")
    with pytest.raises(StoreError, match="over the store's limit of 2000 bytes"):
        push(env, publisher, model, "1", [big])
    assert not any((env.root / "blobs").iterdir())
    push(env, publisher, model, "1", [])  # the version was not claimed by the refused push
    with pytest.raises(StoreError, match="over the store's limit"):
        env.store.attach(env.admin, "digits", "1", [big], namespace="team")
    assert len(list((env.root / "blobs").iterdir())) == 1


def test_rotation_rewraps_attachment_keys_and_delete_removes_their_blobs(
    sqlite_env: StoreEnv, model: Path, tmp_path: Path
) -> None:
    from kerasguard.store import MasterKey

    env = sqlite_env
    report = backdoor_report(tmp_path / "r.json")
    push(
        env,
        env.token("publisher"),
        model,
        "1",
        attach.build(model=model, max_bytes=MiB, probe_reports=[report]),
    )
    new = MasterKey.generate()
    env.store.rotate_key(env.admin, new)
    store = env.reopen(new)
    found = store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")
    assert found is not None and found[1] == report.read_bytes()
    blob_id = blob_of(env, "1")["blob_id"]
    store.delete(env.admin, "digits", "1", "test", namespace="team")
    assert not blob_path(env, blob_id).exists()


def test_inline_training_records_of_older_versions_are_still_shown(
    sqlite_env: StoreEnv, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Versions pushed before sealed attachments kept records inline in the provenance."""
    from kerasguard.cli.store import _print_info

    env = sqlite_env
    record = {
        "schema": "kerasguard.training-record/v1",
        "metrics": [{}, {}, {}],
        "anomalies": [],
        "batches": 9,
    }
    env.store.push(
        env.token("publisher"),
        model,
        name="old",
        version="1",
        source=SOURCE,
        provenance={"training_record": record, "training_record_digest": "sha256:" + "a" * 64},
    )
    _print_info(env.store.show(env.admin, "old", "1", namespace="team"), False)
    out = capsys.readouterr().out
    assert "sha256:" + "a" * 64 in out and "3 epoch(s), 9 batches" in out


def test_store_show_escapes_hostile_text_from_a_probe_report(
    sqlite_env: StoreEnv, model: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from kerasguard.cli.app import app

    env = sqlite_env
    report = backdoor_report(tmp_path / "hostile.json", verdict=HOSTILE, model=HOSTILE)
    doc = json.loads(report.read_text())
    doc["flagged_classes"] = [HOSTILE]
    report.write_text(json.dumps(doc))
    policy_file = tmp_path / "kerasguard.toml"
    policy_file.write_text(
        '[tool.kerasguard.store]\nsources = ["https://huggingface.co/acme"]\n'
        "[tool.kerasguard.trust]\nallow_unsafe_skip_scan = true\n"
    )
    runner = CliRunner()
    base = ["--store", str(env.root), "--policy", str(policy_file), "--namespace", "team"]
    environ = {
        "KERASGUARD_STORE_TOKEN": env.admin,
        "KERASGUARD_MASTER_KEY_FILE": "",
        "KERASGUARD_MASTER_KEY": base64.b64encode(env.master.material).decode(),
    }
    pushed = runner.invoke(
        app,
        [
            "store",
            "push",
            str(model),
            "--name",
            "digits",
            "--version",
            "1",
            "--source",
            SOURCE,
            "--probe-report",
            str(report),
            "--probe-report",
            str(privacy_report(tmp_path / "p.json")),
            *base,
        ],
        env=environ,
    )
    assert pushed.exit_code == 0, pushed.output
    shown = runner.invoke(app, ["store", "show", "digits", "1", *base], env=environ)
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output
    assert "\\x1b]0;pwned\\x07[red]boom[/red]" in shown.output  # markup shown as typed, escapes as text
    assert "backdoor probe: verdict" in shown.output and "privacy probe: verdict leak" in shown.output
    as_json = runner.invoke(app, ["store", "show", "digits", "1", "-f", "json", *base], env=environ)
    listed = json.loads(as_json.output)["attachments"]
    assert [a["summary"]["probe"] for a in listed] == ["backdoor", "privacy"]
    assert listed[0]["digest"].startswith("sha256:") and "blob_id" not in listed[0]
    # attach after the push: admins only (exit 2 for a publisher), audited
    publisher = env.token("publisher")
    again = backdoor_report(tmp_path / "later.json", verdict="clean")
    denied = runner.invoke(
        app,
        ["store", "attach", "digits", "1", "--probe-report", str(again), *base],
        env={**environ, "KERASGUARD_STORE_TOKEN": publisher},
    )
    assert denied.exit_code == 2 and "access denied" in denied.output
    attached = runner.invoke(
        app, ["store", "attach", "digits", "1", "--probe-report", str(again), *base], env=environ
    )
    assert attached.exit_code == 0 and "later.json" in attached.output, attached.output
    # `store show` reads every attachment back: an edited blob is named and the exit code is 1
    path = blob_path(env, blob_of(env, "1")["blob_id"])
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    tampered = runner.invoke(app, ["store", "show", "digits", "1", *base], env=environ)
    assert tampered.exit_code == 1, tampered.output
    assert "REFUSED: the probe_report attachment hostile.json" in tampered.output
    assert "damaged or was tampered with" in tampered.output
    as_json = runner.invoke(app, ["store", "show", "digits", "1", "-f", "json", *base], env=environ)
    checks = [a["check"] for a in json.loads(as_json.stdout)["attachments"]]
    assert checks[0].startswith("REFUSED") and checks[1:] == ["ok", "ok"], checks


def test_store_push_and_show_print_text_not_python_reprs(
    sqlite_env: StoreEnv, model: Path, tmp_path: Path
) -> None:
    import re

    from typer.testing import CliRunner

    from kerasguard.cli.app import app

    env = sqlite_env
    policy_file = tmp_path / "kerasguard.toml"
    policy_file.write_text(
        '[store]\nsources = ["https://huggingface.co/acme"]\n[trust]\nallow_unsafe_skip_scan = true\n'
    )
    base = ["--store", str(env.root), "--policy", str(policy_file), "--namespace", "team"]
    environ = {
        "KERASGUARD_STORE_TOKEN": env.admin,
        "KERASGUARD_MASTER_KEY_FILE": "",
        "KERASGUARD_MASTER_KEY": base64.b64encode(env.master.material).decode(),
    }
    runner = CliRunner()
    report = backdoor_report(tmp_path / "backdoor.json")
    push = ["store", "push", str(model), "--name", "digits", "--version", "1", "--source", SOURCE]
    pushed = runner.invoke(app, [*push, "--probe-report", str(report), *base], env=environ)
    assert pushed.exit_code == 0, pushed.output
    shown = runner.invoke(app, ["store", "show", "digits", "1", *base], env=environ)
    assert shown.exit_code == 0, shown.output
    as_json = json.loads(
        runner.invoke(app, ["store", "show", "digits", "1", "-f", "json", *base], env=environ).stdout
    )
    digest = as_json["attachments"][0]["digest"]
    for out in (pushed.stdout, shown.stdout):
        assert "{" not in out and "None" not in out and "[]" not in out, out
        assert re.search(r"^signer +\(none\)$", out, re.M), out
        assert re.search(r"^checks +scan skipped \(allow_unsafe_skip_scan\)$", out, re.M), out
        (line,) = [line for line in out.splitlines() if line.startswith("attachment")]
        assert line.startswith("attachment     probe_report backdoor.json: backdoor probe: verdict backdoor")
        assert f"[{digest[:19]}..., {report.stat().st_size} bytes, by token:" in line and digest not in line
    # JSON keeps the full record: checks as an object, attachments as a list, null for no signer
    assert as_json["admission"]["checks"] == {"scan": "skipped (allow_unsafe_skip_scan)"}
    assert as_json["signer"] is None and as_json["attachments"][0]["size"] == report.stat().st_size
    # every value is escaped on its own line: a reason cannot forge another field
    env.store.quarantine(env.admin, "digits", "1", "INC-1\nstatus         admitted", namespace="team")
    shown = runner.invoke(app, ["store", "show", "digits", "1", *base], env=environ)
    assert [line for line in shown.stdout.splitlines() if line.startswith("status")] == [
        "status         quarantined"
    ]
    assert "reason         INC-1\\x0astatus" in shown.stdout


def test_the_store_modules_below_the_service_never_import_it() -> None:
    """ingest, egress, attachments and upgrade get a StoreParts: no import of service (no circle)."""
    folder = Path(__import__("kerasguard.store", fromlist=["x"]).__file__).parent
    for name in ("ingest", "egress", "attachments", "upgrade", "parts", "records"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        assert "kerasguard.store.service" not in imported, name


def test_sqlite_blob_ids_are_never_shown(sqlite_env: StoreEnv, model: Path, tmp_path: Path) -> None:
    """The entry (blob id, wrapped key) is in the database only, never in `show` or the audit log."""
    env = sqlite_env
    items = attach.build(model=model, max_bytes=MiB, probe_reports=[backdoor_report(tmp_path / "r.json")])
    push(env, env.token("publisher"), model, "1", items)
    entry = blob_of(env, "1")
    with sqlite3.connect(env.root / "store.db") as db:
        audit = json.dumps(db.execute("select * from audit").fetchall())
    assert entry["blob_id"] not in audit and entry["wrapped_key"] not in audit


def test_a_strip_detector_is_checked_then_sealed(sqlite_env: StoreEnv, model: Path, tmp_path: Path) -> None:
    """``--detector FILE.npz``: a STRIP detector fitted on this very model, its digest checked first."""
    import hashlib

    import keras
    import numpy as np

    from kerasguard.errors import KerasGuardError
    from kerasguard.probe.strip import fit_strip

    env = sqlite_env
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    clean = np.random.default_rng(0).normal(size=(120, 8)).astype("float32")
    strip = fit_strip(keras.saving.load_model(model), clean, model_sha256="sha256:" + sha)
    path = tmp_path / "strip.npz"
    strip.save(path)
    (item,) = attach.build(model=model, max_bytes=MiB, detectors=[path])
    assert item.kind == "strip" and item.summary["detector_digest"] == strip.digest
    push(env, env.token("publisher"), model, "1", [item])
    found = env.store.read_attachment(env.admin, "digits", "1", kind="strip", namespace="team")
    assert found is not None and found[1] == path.read_bytes()
    assert found[0].summary["threshold"] == strip.threshold
    # fitted on another model: refused before anything is stored
    with pytest.raises(StoreError, match="fitted on another model"):
        attach.detector(path, model_sha256="0" * 64, max_bytes=MiB)
    # fitted without naming its model (the digest is unkeyed, so no binding): refused where one is named
    unbound = tmp_path / "unbound.npz"
    fit_strip(keras.saving.load_model(model), clean).save(unbound)
    with pytest.raises(StoreError, match="does not record the model"):
        attach.detector(unbound, model_sha256=sha, max_bytes=MiB)

    # edited after it was saved (the threshold in its header): its own digest refuses it
    edited = tmp_path / "edited.npz"
    with np.load(path, allow_pickle=False) as npz:
        overlay, meta = npz["overlay"], json.loads(npz["meta"].tobytes())
    meta["threshold"] = -1.0  # nothing would ever be flagged; the stored digest is kept
    np.savez(edited, overlay=overlay, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(KerasGuardError, match="digest mismatch"):
        attach.detector(edited, model_sha256=sha, max_bytes=MiB)


def test_a_push_whose_witness_write_fails_keeps_its_committed_blobs(
    sqlite_env: StoreEnv, model: Path, tmp_path: Path
) -> None:
    """Regression: the witness is written after the commit; its failure must not delete the blobs of
    the version that was just stored (the model's and its attachments')."""
    from kerasguard.store.witness import WitnessError

    env = sqlite_env
    publisher = env.token("publisher")
    report = backdoor_report(tmp_path / "r.json")
    items = attach.build(model=model, max_bytes=MiB, probe_reports=[report])
    witness = env.root / "audit-witness.jsonl"
    witness.rename(tmp_path / "witness.keep")
    witness.mkdir()  # cannot be opened for appending
    try:
        with pytest.raises(WitnessError, match="the change was committed"):
            push(env, publisher, model, "1", items)
    finally:
        witness.rmdir()
        (tmp_path / "witness.keep").rename(witness)
    assert env.store.pull(
        env.admin, "digits", "1", tmp_path / "out.keras", namespace="team"
    ).read_bytes() == (model.read_bytes())
    found = env.store.read_attachment(env.admin, "digits", "1", kind="probe_report", namespace="team")
    assert found is not None and found[1] == report.read_bytes()


def test_a_detector_path_that_is_neither_kind_is_named_as_such(tmp_path: Path) -> None:
    """A missing path, or one file of an input-detector folder, is not read as a STRIP detector."""
    with pytest.raises(StoreError, match="no detector at") as missing:
        attach.detector(tmp_path / "nope.detector", model_sha256=None, max_bytes=MiB)
    assert "STRIP detector nope" not in missing.value.message and "--out DIR" in (missing.value.hint or "")
    folder = tmp_path / "model.detector"
    folder.mkdir()
    (folder / "detector.json").write_text("{}")
    (folder / "detector.npz").write_bytes(b"PK")
    for part in ("detector.json", "detector.npz"):
        with pytest.raises(StoreError, match="one file of an input detector") as one:
            attach.detector(folder / part, model_sha256=None, max_bytes=MiB)
        assert f"--detector {folder}" in (one.value.hint or "")
