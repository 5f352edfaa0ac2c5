"""`kerasguard store ...`: the model store from the command line (thin: parse, call ModelStore, print).

The store library (SQLAlchemy, cryptography) is imported inside the commands, so the plain install's
CLI works without the ``store`` extra. Exit codes: 0 ok (push: admitted; audit verify: intact),
1 push quarantined or audit chain broken, 2 refused, denied or failed.
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kerasguard.cli.app import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    TextOrJson,
    app,
    handle_errors,
    print_error,
    say,
    stdout,
    write_output,
)
from kerasguard.cli.scan import resolve_policy
from kerasguard.errors import StoreError
from kerasguard.render.safe_text import printable

if TYPE_CHECKING:
    from kerasguard.store import ModelInfo, ModelStore

store_app = typer.Typer(
    name="store",
    help="Model store: admission (scan + signature), encryption at rest, RBAC, keyed witnessed audit log.",
    no_args_is_help=True,
)
token_app = typer.Typer(name="token", help="Create, list and revoke API tokens.", no_args_is_help=True)
audit_app = typer.Typer(
    name="audit", help="Verify (against its witness) or export the keyed audit log.", no_args_is_help=True
)
store_app.add_typer(token_app)
store_app.add_typer(audit_app)
app.add_typer(store_app)

StoreDir = Annotated[Path, typer.Option("--store", envvar="KERASGUARD_STORE", help="Store folder.")]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        envvar="KERASGUARD_MASTER_KEY_FILE",
        help="Master key file (or set KERASGUARD_MASTER_KEY to base64 key material).",
    ),
]
Token = Annotated[
    str,
    typer.Option("--token", envvar="KERASGUARD_STORE_TOKEN", help="API token (kgs_...).", show_default=False),
]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (tenant).")]
PolicyFile = Annotated[
    Path | None, typer.Option("--policy", help="Policy file (kerasguard.toml or pyproject.toml).")
]
Format = Annotated[TextOrJson, typer.Option("--format", "-f")]
# Before --format, store commands took --json; it still works (hidden, deprecated).
AsJson = Annotated[bool, typer.Option("--json", hidden=True, help="Deprecated: use --format json.")]


def _json_wanted(fmt: TextOrJson, as_json: bool) -> bool:
    if as_json:
        print_error("--json is deprecated; use --format json", label="warning", style="yellow")
    return as_json or fmt is TextOrJson.json


def _store() -> ModuleType:
    """``kerasguard.store``, or a clear error when the ``store`` extra is not installed."""
    try:
        import kerasguard.store as store
    except ImportError as exc:
        raise StoreError(
            f"the model store needs the 'store' extra ({exc.name} is not installed)",
            hint="pip install 'kerasguard[store]'",
        ) from None
    return store


@contextmanager
def _opened(store: Path, key_file: Path | None, policy_file: Path | None) -> Iterator["ModelStore"]:
    lib = _store()
    policy = resolve_policy(policy_file)
    with lib.ModelStore.open(store, lib.load_master_key(key_file), policy=policy) as opened:
        yield opened


def _print_json(data: Any) -> None:
    write_output(json.dumps(data, indent=2, sort_keys=True), None)


def _print_info(info: "ModelInfo", as_json: bool, checks: dict[str, str] | None = None) -> None:
    """The record; ``checks`` maps "kind/name" of each sealed attachment to "ok" or why it was refused."""
    if as_json:
        data = info.to_dict()
        for entry in data.get("attachments") or []:
            if checks is not None:
                entry["check"] = checks.get(f"{entry['kind']}/{entry['name']}", "not checked")
        _print_json(data)
        return
    lines = []
    for key, value in info.to_dict().items():
        if key in ("scan_report", "provenance", "admission", "attachments"):  # attachments: below
            continue
        lines.append(_field(key, value))
    if info.admission is not None:
        lines.append(_field("checks", _checks_text(info.admission.get("checks"))))
        lines += [_field("reason", reason) for reason in info.admission.get("reasons") or []]
    lines += _training_record_lines(info)
    lines += _detector_lines(info)
    lines += _attachment_lines(info, checks)
    say("\n".join(lines), err=False)


def _field(key: str, value: object) -> str:
    """One ``key  value`` line of the text record: a missing value is ``(none)``, the value escaped (a
    newline in a reason or source cannot start a line of its own)."""
    return f"{key:14} {'(none)' if value is None else printable(value)}"


def _checks_text(checks: object) -> str:
    """The admission checks as ``scan ok, signature ok`` (``(none)`` when there are none)."""
    if not isinstance(checks, dict):
        return "(none)" if checks is None else str(checks)
    return ", ".join(f"{name} {result}" for name, result in checks.items()) or "(none)"


def _short_digest(digest: object) -> str:
    """``sha256:`` and the first 12 hex digits, as ``store list`` shows a digest."""
    text = str(digest)
    return text[:19] + "..." if text.startswith("sha256:") and len(text) > 19 else text


def _check_attachments(opened: "ModelStore", token: str, info: "ModelInfo") -> dict[str, str]:
    """Read every sealed attachment back (decrypted, digest and size checked; a detector or STRIP
    detector also through every check the gateway runs): "ok" or the reason it is refused."""
    from kerasguard.errors import KerasGuardError

    checks: dict[str, str] = {}
    for a in info.attachments:
        key = f"{a.kind}/{a.name}"
        try:
            found = opened.read_attachment(
                token, info.name, info.version, kind=a.kind, attachment_name=a.name, namespace=info.namespace
            )
            if found is None:
                raise StoreError("the attachment disappeared")
            if a.kind == "detector":
                from kerasguard.robustness.detector_files import from_sealed

                from_sealed(found[1], model_sha256=info.digest, where=f"{info.ref} ({a.name})")
            elif a.kind == "strip":
                from kerasguard.probe.strip import from_sealed as strip_from_sealed

                strip_from_sealed(found[1], model_sha256=str(info.digest), where=f"{info.ref} ({a.name})")
        except KerasGuardError as exc:
            checks[key] = f"REFUSED: {exc.message}"
        else:
            checks[key] = "ok"
    return checks


def _attachment_lines(info: "ModelInfo", checks: dict[str, str] | None = None) -> list[str]:
    """One line per sealed attachment: kind, name, what it says (escaped), digest, size, check."""
    from kerasguard.data.report import shown

    out = []
    for a in info.attachments:
        s = a.summary
        if a.kind == "probe_report" and s.get("probe") == "backdoor":
            said = (
                f"backdoor probe: verdict {s.get('verdict')}, flagged {s.get('flagged_classes')}, "
                f"max anomaly index {s.get('max_anomaly_index')} (threshold {s.get('anomaly_threshold')})"
            )
        elif a.kind == "probe_report":
            said = (
                f"privacy probe: verdict {s.get('verdict')}, max AUC {s.get('max_auc')}, "
                f"max TPR at 1% FPR {s.get('max_tpr_at_1pct_fpr')}"
            )
        elif a.kind == "detector":
            said = (
                f"{s.get('detector') or 'mahalanobis'} on {s.get('head')} ({s.get('features')} features, "
                f"threshold {s.get('threshold')})"
            )
        elif a.kind == "strip":
            said = f"STRIP (threshold {s.get('threshold')}, FPR {s.get('fpr')})"
        else:
            said = f"training record, {s.get('epochs')} epoch(s), {s.get('anomaly_count')} anomalies"
        line = (
            f"{'attachment':14} {shown(a.kind, 20)} {shown(a.name, 128)}: {shown(said, 300)} "
            f"[{shown(_short_digest(a.digest), 80)}, {a.size} bytes, by {shown(a.attached_by, 60)}]"
        )
        check = (checks or {}).get(f"{a.kind}/{a.name}")
        if check is not None and check != "ok":
            line += f" {shown(check, 300)}"
        out.append(line)
    return out


def _detector_lines(info: "ModelInfo") -> list[str]:
    """A detector stored inline by older versions (``--detector`` before sealed attachments): checked
    as the gateway checks it, then named."""
    from kerasguard.data.report import shown
    from kerasguard.robustness.detector_files import from_attachment
    from kerasguard.robustness.errors import DetectorFileError

    client = (info.provenance or {}).get("client") or {}
    value = client.get("detector") if isinstance(client, dict) else None
    if value is None:
        return []
    try:
        detector = from_attachment(value, model_sha256=info.digest, where="this version")
    except DetectorFileError as exc:
        return [f"{'detector':14} REFUSED: {shown(exc.message, 200)}"]
    served, threshold = detector.kinds, detector.thresholds[detector.primary]
    return [f"{'detector':14} {'+'.join(served)} on {shown(detector.head)} (threshold {threshold:.4g})"]


def _training_record_lines(info: "ModelInfo") -> list[str]:
    """The training record (a sealed attachment's summary, or a record stored inline by versions before
    sealed attachments), summarised for `store show`."""
    from kerasguard.attach import training_summary
    from kerasguard.data.report import shown

    sealed = info.attachment("training_record")
    digest: Any
    if sealed is not None:
        summary, digest = sealed.summary, sealed.digest
    else:
        client = (info.provenance or {}).get("client") or {}
        record = client.get("training_record") if isinstance(client, dict) else None
        if not isinstance(record, dict):
            return []
        summary, digest = training_summary(record), client.get("training_record_digest")
    anomalies = summary.get("anomalies") if isinstance(summary.get("anomalies"), list) else []
    rows = [
        ("training", f"{shown(digest)} ({shown(summary.get('schema'))})"),
        ("data", shown(summary.get("data_manifest"), 120)),
        (
            "trained",
            f"{shown(summary.get('epochs'))} epoch(s), {shown(summary.get('batches'))} batches, "
            f"keras {shown(summary.get('keras_version'))} on {shown(summary.get('backend'))}",
        ),
        ("anomalies", shown(summary.get("anomaly_count"))),
    ]
    if summary.get("stopped"):
        rows.append(("stopped", shown(summary.get("stopped"), 200)))
    for entry in (anomalies or [])[:10]:
        if isinstance(entry, dict):
            rows.append(
                (
                    "anomaly",
                    shown(
                        f"{entry.get('id')} epoch {entry.get('epoch')} batch "
                        f"{entry.get('batch')}: {entry.get('message')}",
                        200,
                    ),
                )
            )
    return [f"{key:14} {value}" for key, value in rows]


@store_app.command("keygen")
@handle_errors
def keygen(path: Annotated[Path, typer.Argument(help="Key file to create (0600).")]) -> None:
    """Create a new master key file."""
    key = _store().write_key_file(path)
    say(f"wrote master key {key.key_id} to {path} (mode 0600); keep a backup: without it, no model opens")


@store_app.command("init")
@handle_errors
def init(
    store: StoreDir,
    key_file: KeyFile = None,
    db_url: Annotated[
        str | None, typer.Option(help="postgresql+psycopg://... (default: SQLite in the store).")
    ] = None,
    blob_url: Annotated[
        str | None, typer.Option(help="fsspec URL for blobs, e.g. s3://bucket/prefix.")
    ] = None,
    reader_group: Annotated[
        str | None, typer.Option(help="Group allowed to read the store (files 0640).")
    ] = None,
    witness: Annotated[
        str | None,
        typer.Option(
            help="Where every audit head is also written: file:/path (appended) or redis://host:port/db"
            "?stream=NAME (default: file audit-witness.jsonl in the store folder)."
        ),
    ] = None,
) -> None:
    """Create a store and print its first admin token (shown once)."""
    lib = _store()
    opened, token = lib.ModelStore.init(
        store,
        lib.load_master_key(key_file),
        db_url=db_url,
        blob_url=blob_url,
        reader_group=reader_group,
        witness=witness,
    )
    opened.close()
    say(f"initialised store at {opened.root}; admin token for every namespace (shown once):")
    sys.stdout.write(token + "\n")


TrainingRecordOption = Annotated[
    Path | None,
    typer.Option(help="Training record (TrainingGuard JSON) to attach (sealed, digest in the row MAC)."),
]
DetectorOption = Annotated[
    Path | None,
    typer.Option(
        help="Detector to attach (sealed): an input-detector folder (robustness detectors --out), every"
        " fitted kind of which serve scores OOD with, or a STRIP detector .npz (probe backdoor --strip-out)."
    ),
]
ProbeReportOption = Annotated[
    list[Path] | None,
    typer.Option(help="Probe report (probe backdoor|privacy -f json -o) to attach (sealed); repeatable."),
]


@store_app.command("push")
@handle_errors
def push(
    path: Annotated[Path, typer.Argument(help="Model file to admit.")],
    name: Annotated[str, typer.Option(help="Model name.")],
    version: Annotated[str, typer.Option(help="Version (immutable once pushed).")],
    source: Annotated[str, typer.Option(help="Where the model came from (an approved URL).")],
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    signature: Annotated[
        Path | None, typer.Option(help="Signature bundle (default: model.sig beside it).")
    ] = None,
    expect_digest: Annotated[str | None, typer.Option(help="sha256:... the model must have.")] = None,
    stage: Annotated[str | None, typer.Option(help="Initial stage (default: policy's).")] = None,
    provenance: Annotated[str | None, typer.Option(help="Extra provenance as a JSON object.")] = None,
    training_record: TrainingRecordOption = None,
    detector: DetectorOption = None,
    probe_report: ProbeReportOption = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
    fmt: Format = TextOrJson.text,
    as_json: AsJson = False,
) -> None:
    """Admit a model: hash, signature per policy, scan, encrypt. Exit 1 if it was quarantined.

    Attachments (--detector, --training-record, --probe-report) are checked, then sealed as their
    own encrypted blobs, recorded (digest, size, summary) in the version's MAC-covered provenance."""
    extra: dict[str, Any] | None = None
    if provenance:
        try:
            extra = json.loads(provenance)
        except json.JSONDecodeError as exc:
            raise StoreError(f"--provenance is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise StoreError("--provenance must be a JSON object")
    with _opened(store, key_file, policy_file) as opened:
        from kerasguard import attach

        items = attach.build(
            model=path,
            max_bytes=opened.policy.store.max_attachment_bytes,
            detectors=[detector] if detector is not None else None,
            training_records=[training_record] if training_record is not None else None,
            probe_reports=probe_report,
        )
        info = opened.push(
            token,
            path,
            name=name,
            version=version,
            source=source,
            namespace=namespace,
            signature=signature,
            expect_digest=expect_digest,
            provenance=extra,
            stage=stage,
            attachments=items,
        )
    _print_info(info, _json_wanted(fmt, as_json))
    if info.status != "admitted":
        print_error(str(info.reason), label="quarantined", style="bold yellow")
        raise typer.Exit(EXIT_FINDINGS)


@store_app.command("pull")
@handle_errors
def pull(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    dest: Annotated[
        str,
        typer.Argument(help="File to write, or a folder to write into (existing, or ending with '/')."),
    ],
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    expect_digest: Annotated[str | None, typer.Option(help="Refuse unless the model is sha256:...")] = None,
    allow_quarantined: Annotated[
        bool, typer.Option(help="Admins: pull a quarantined model to inspect it.")
    ] = False,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Decrypt and verify a model, then write it atomically."""
    with _opened(store, key_file, policy_file) as opened:
        target = opened.pull(
            token,
            name,
            version,
            dest,
            namespace=namespace,
            expect_digest=expect_digest,
            allow_quarantined=allow_quarantined,
        )
    say(f"wrote {target}")


@store_app.command("list")
@handle_errors
def list_models(
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    name: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    quarantined: Annotated[bool, typer.Option(help="Admins: include quarantined models.")] = False,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
    fmt: Format = TextOrJson.text,
    as_json: AsJson = False,
) -> None:
    """List servable models (and quarantined ones with --quarantined)."""
    with _opened(store, key_file, policy_file) as opened:
        infos = opened.list(
            token, namespace=namespace, name=name, stage=stage, include_quarantined=quarantined
        )
    if _json_wanted(fmt, as_json):
        _print_json([i.to_dict() for i in infos])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("name", "version", "stage", "status", "digest", "size", "source")
    for i in infos:
        cells = (i.name, i.version, i.stage, i.status, (i.digest or "")[:19], str(i.size), i.source)
        table.add_row(*(Text(printable(c)) for c in cells))
    stdout.print(table)


@store_app.command("show")
@handle_errors
def show(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
    fmt: Format = TextOrJson.text,
    as_json: AsJson = False,
) -> None:
    """Show a model's metadata, admission checks and (with --format json) its scan report.

    Each sealed attachment is read back and checked; exit 1 when one is refused (tampered)."""
    with _opened(store, key_file, policy_file) as opened:
        info = opened.show(token, name, version, namespace=namespace)
        checks = _check_attachments(opened, token, info)
    _print_info(info, _json_wanted(fmt, as_json), checks)
    refused = sorted(k for k, v in checks.items() if v != "ok")
    if any("REFUSED" in line for line in _detector_lines(info)):  # an inline detector of an older version
        refused.append("detector (inline)")
    if refused:
        print_error(
            f"attachment(s) refused: {printable(', '.join(refused))}", label="tampered", style="bold red"
        )
        raise typer.Exit(EXIT_FINDINGS)


@store_app.command("attach")
@handle_errors
def attach_files(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    training_record: TrainingRecordOption = None,
    detector: DetectorOption = None,
    probe_report: ProbeReportOption = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
    fmt: Format = TextOrJson.text,
) -> None:
    """Admins: attach files to a pushed version (sealed, audited; the version's revision goes up)."""
    with _opened(store, key_file, policy_file) as opened:
        from kerasguard import attach

        model_sha = None
        if detector is not None:  # a detector must have been fitted on this version's model
            model_sha = opened.show(token, name, version, namespace=namespace).digest
        items = attach.build(
            model=None,
            model_sha256=model_sha,
            max_bytes=opened.policy.store.max_attachment_bytes,
            detectors=[detector] if detector is not None else None,
            training_records=[training_record] if training_record is not None else None,
            probe_reports=probe_report,
        )
        info = opened.attach(token, name, version, items, namespace=namespace)
    _print_info(info, fmt is TextOrJson.json)


Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]


@store_app.command("promote")
@handle_errors
def promote(
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    stage: Annotated[str, typer.Argument(help="Target stage, e.g. production.")],
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Move an admitted model to another stage."""
    with _opened(store, key_file, policy_file) as opened:
        info = opened.promote(token, name, version, stage, namespace=namespace)
    say(f"{info.ref} is now in stage {info.stage}")


def _state_command(verb: str, doc: str) -> None:
    def command(
        name: Annotated[str, typer.Argument()],
        version: Annotated[str, typer.Argument()],
        reason: Reason,
        store: StoreDir,
        token: Token,
        namespace: Namespace = None,
        key_file: KeyFile = None,
        policy_file: PolicyFile = None,
    ) -> None:
        with _opened(store, key_file, policy_file) as opened:
            info = getattr(opened, verb)(token, name, version, reason, namespace=namespace)
        say(f"{info.ref}: {info.status}")

    command.__doc__ = doc
    store_app.command(verb)(handle_errors(command))


_state_command("quarantine", "Stop serving a model; it is kept for investigation (admin).")
_state_command("release", "Serve a quarantined model after review (admin; the reason is audited).")
_state_command("delete", "Delete a model: destroys its data key and blob; the version stays taken (admin).")


@store_app.command("rotate-key")
@handle_errors
def rotate_key(
    new_key_file: Annotated[Path, typer.Option(help="The new master key file.")],
    store: StoreDir,
    token: Token,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Rewrap every data key under a new master key (blobs are not rewritten)."""
    new_key = _store().load_master_key(new_key_file)
    with _opened(store, key_file, policy_file) as opened:
        count = opened.rotate_key(token, new_key)
    say(f"rewrapped {count} data keys; the store now needs key {new_key.key_id}")


@token_app.command("create")
@handle_errors
def token_create(
    role: Annotated[
        str, typer.Option(help="reader, publisher, invoker (calls served models only) or admin.")
    ],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace ('*' = all, admin only).")],
    store: StoreDir,
    token: Token,
    label: Annotated[str, typer.Option(help="Who or what uses the token.")] = "",
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    try:
        parsed = _store().Role(role)
    except ValueError:
        raise StoreError(f"unknown role {role!r} (reader, publisher, invoker, admin)") from None
    with _opened(store, key_file, policy_file) as opened:
        secret = opened.create_token(token, parsed, namespace, label)
    sys.stdout.write(secret + "\n")


@token_app.command("revoke")
@handle_errors
def token_revoke(
    token_id: Annotated[
        str,
        typer.Argument(
            help="The token's id (the 16 hex characters between kgs_ and the second _, as `token list` "
            "shows it), or the whole token.",
            show_default=False,
        ),
    ],
    store: StoreDir,
    token: Token,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Revoke a token, named by its id or given whole (messages name only its id, never the secret)."""
    with _opened(store, key_file, policy_file) as opened:
        revoked = opened.revoke_token(token, token_id)
    say(f"revoked token {revoked}")


@token_app.command("list")
@handle_errors
def token_list(
    store: StoreDir,
    token: Token,
    namespace: Namespace = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """List tokens (never their secrets)."""
    with _opened(store, key_file, policy_file) as opened:
        rows = opened.list_tokens(token, namespace)
    _print_json(rows)


def _is_tampered(exc: Exception) -> bool:
    try:
        from kerasguard.store.audit import AuditTampered
    except ImportError:  # no store extra: the error is about that
        return False
    return isinstance(exc, AuditTampered)


@audit_app.command("verify")
def audit_verify(
    store: StoreDir,
    token: Token,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
    witness: Annotated[
        str | None,
        typer.Option(help="Compare with this witness instead of the store's (file:/path or redis://...)."),
    ] = None,
) -> None:
    """Verify the keyed audit chain against its witness.

    Exit 1 names the first edited, deleted or reordered entry, or the entries cut off the end that
    the witness saw; exit 2 when the witness cannot be read (the log is then not vouched for).
    """
    from kerasguard.errors import KerasGuardError

    try:
        with _opened(store, key_file, policy_file) as opened:
            result = opened.audit_verify(token, witness=witness)
    except KerasGuardError as exc:
        if _is_tampered(exc):
            print_error(exc, label="audit log tampered")
            raise typer.Exit(EXIT_FINDINGS) from None
        print_error(exc)
        raise typer.Exit(EXIT_ERROR) from None
    head = f"head #{result.head_seq} {result.head_hash}"
    sys.stdout.write(
        f"audit log intact: {result.entries} entries, {head}; "
        f"witness {printable(result.witness)} confirms #{result.witnessed_seq}\n"
    )


@audit_app.command("export")
@handle_errors
def audit_export(
    store: StoreDir,
    token: Token,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    namespace: Namespace = None,
    key_file: KeyFile = None,
    policy_file: PolicyFile = None,
) -> None:
    """Export audit entries as JSON lines."""
    with _opened(store, key_file, policy_file) as opened:
        if output is None:
            opened.audit_export(token, sys.stdout, namespace=namespace)
            return
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            count = opened.audit_export(token, fh, namespace=namespace)
    say(f"wrote {count} entries to {output}")
