"""load_model: trusted source -> private copy -> verify -> scan -> sandboxed load of those same bytes.

The call shape follows ``keras.saving.load_model``. Each step either passes or raises, and the
next step only ever sees the private copy made in step two, so nothing is loaded that was not
verified and scanned. Unsafe switches (``safe_mode=False``, skipping the scan, loading in process)
need the policy to name them and are logged as warnings every time they take effect. Every call
emits one load event (:mod:`kerasguard.loading.events`).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasguard.errors import (
    IntegrityError,
    KerasGuardError,
    ModelError,
    PolicyError,
    SandboxError,
    UnsafeModelError,
    UntrustedSourceError,
)
from kerasguard.findings import Finding, ScanReport
from kerasguard.loading.events import LoadEvent, emit, summarize_findings
from kerasguard.loading.private_copy import PrivateCopy, make_private_copy
from kerasguard.loading.sources import OpenedSource, open_source
from kerasguard.policy import Policy
from kerasguard.scanning.gate import gate

if TYPE_CHECKING:
    from kerasguard.integrity.verifying import VerifiedModel
    from kerasguard.sandbox.model import SandboxedModel

log = logging.getLogger("kerasguard.loader")
PathLike = str | os.PathLike[str]


def load_model(
    filepath: PathLike,
    *,
    policy: Policy | None = None,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
    sandbox: bool | None = None,
    key: PathLike | None = None,
    cert_chain: PathLike | None = None,
    digest: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> SandboxedModel | Any:
    """Load a Keras model only if it is trusted, verified and clean; by default in a sandbox.

    Returns a :class:`~kerasguard.sandbox.SandboxedModel` (or, in the in-process mode the policy
    must allow, the real Keras model). Raises UntrustedSourceError, IntegrityError,
    UnsafeModelError or PolicyError when the model is refused, SandboxError when the child breaks
    a limit or dies, and ModelError when Keras itself rejects the model.
    """
    policy = policy or Policy()
    event = LoadEvent(source=os.fspath(filepath), policy=policy.source)
    copy: PrivateCopy | None = None
    model: Any = None
    handed_over = False
    try:
        in_process = _stage("policy", event, lambda: _decide_mode(policy, sandbox, event))
        effective_safe_mode = _stage("policy", event, lambda: _decide_safe_mode(policy, safe_mode, event))
        copy = _stage("source", event, lambda: _copy_trusted(filepath, policy, event))
        _stage(
            "verify",
            event,
            lambda: _verify(copy, policy, event, key, cert_chain, digest, model_name, model_version),
        )
        _stage("scan", event, lambda: _scan(copy, policy, event))
        if in_process:
            model = _stage(
                "load", event, lambda: _load_in_process(copy, custom_objects, compile, effective_safe_mode)
            )
        else:
            model = _stage(
                "sandbox",
                event,
                lambda: _load_sandboxed(copy, policy, event, custom_objects, compile, effective_safe_mode),
            )
            handed_over = True
        event.verdict = "loaded"
        event.failure = None
        return model
    finally:
        if copy is not None and not handed_over:
            copy.remove()
        data = emit(event)
        if handed_over and event.verdict == "loaded":
            model.event = data


def _stage(stage: str, event: LoadEvent, step: Any) -> Any:
    """Run one pipeline step, recording in the event why it refused or failed."""
    try:
        return step()
    except UntrustedSourceError as exc:
        event.fail("refused", stage, "untrusted-source", exc.message)
        raise
    except IntegrityError as exc:
        event.fail("refused", stage, "integrity", exc.message)
        raise
    except UnsafeModelError as exc:
        event.fail(
            "refused", stage, "findings" if event.scan == "refused" else "incomplete-scan", exc.message
        )
        raise
    except PolicyError as exc:
        event.fail("refused", stage, "policy", exc.message)
        raise
    except SandboxError as exc:
        event.fail("failed", stage, exc.limit or "crash", exc.message)
        raise
    except ModelError as exc:
        event.fail("failed", stage, "model-error", exc.message)
        raise
    except KerasGuardError as exc:
        event.fail("failed", stage, "error", exc.message)
        raise
    except Exception as exc:  # anything else is still recorded, then propagates unchanged
        event.fail("failed", stage, "error", f"{type(exc).__name__}: {exc}")
        raise


def _decide_mode(policy: Policy, sandbox: bool | None, event: LoadEvent) -> bool:
    """True for in-process loading, which the policy must allow; warned about every time."""
    wants_sandbox = policy.sandbox.enabled if sandbox is None else sandbox
    if wants_sandbox:
        return False
    if policy.sandbox.enabled and not policy.sandbox.allow_unsafe_in_process:
        raise PolicyError(
            "in-process loading (sandbox=False) is not allowed by the policy",
            hint="set [sandbox] allow_unsafe_in_process = true only for models you trust",
        )
    switch = "sandbox.enabled=false" if not policy.sandbox.enabled else "sandbox.allow_unsafe_in_process"
    event.mode = "in-process"
    event.unsafe_switches.append(switch)
    log.warning("UNSAFE: loading %s in process without a sandbox (%s)", event.source, switch)
    return True


def _decide_safe_mode(policy: Policy, safe_mode: bool, event: LoadEvent) -> bool:
    if safe_mode:
        return True
    if not policy.trust.allow_unsafe_deserialization:
        raise PolicyError(
            "safe_mode=False is not allowed by the policy",
            hint="set [trust] allow_unsafe_deserialization = true only for models you trust",
        )
    event.safe_mode = False
    event.unsafe_switches.append("trust.allow_unsafe_deserialization")
    log.warning("UNSAFE: loading %s with safe_mode=False (trust.allow_unsafe_deserialization)", event.source)
    return False


def _copy_trusted(filepath: PathLike, policy: Policy, event: LoadEvent) -> PrivateCopy:
    opened: OpenedSource = open_source(filepath, policy)
    try:
        event.canonical = str(opened.canonical)
        copy = make_private_copy(opened, max_bytes=policy.limits.max_file_bytes)
    finally:
        opened.close()
    event.sha256, event.size = copy.sha256, copy.size
    return copy


def _verify(
    copy: PrivateCopy,
    policy: Policy,
    event: LoadEvent,
    key: PathLike | None,
    cert_chain: PathLike | None,
    digest: str | None,
    model_name: str | None,
    model_version: str | None,
) -> None:
    """Check the digest and/or signature of the private copy when the policy or the caller asks."""
    trust = policy.trust
    wants_signature = (
        key is not None
        or cert_chain is not None
        or trust.require == "signature"
        or bool(trust.keys)
        or bool(trust.cert_chains)
        or bool(trust.models)  # pinned models: every load must show a pinned name, signer and version
    )
    if trust.require == "digest" and digest is None and not wants_signature:
        raise IntegrityError(
            f"{policy.source} requires a pinned digest, and none was given",
            hint="pass digest='sha256:<hex>' (kerasguard load --digest)",
        )
    methods: list[str] = []
    if digest is not None:
        algorithm, _, want = digest.partition(":") if ":" in digest else ("sha256", "", digest)
        if algorithm.lower() == "sha256":
            want = want.strip().lower()
            if not hmac.compare_digest(want, copy.sha256):
                raise IntegrityError(f"{event.source}: sha256 mismatch: expected {want}, got {copy.sha256}")
        else:
            _integrity_verify(copy.path, digest=digest, policy=policy)
        methods.append("digest")
    if wants_signature:
        verified = _integrity_verify(
            copy.path,
            signature_beside=Path(event.canonical or event.source),
            key=key,
            cert_chain=cert_chain,
            policy=policy,
            model_name=model_name,
            model_version=model_version,
        )
        event.signer = verified.signer_name
        methods.append("signature")
    event.verification = "+".join(methods) or None


def _integrity_verify(path: Path, *, signature_beside: Path | None = None, **kwargs: Any) -> VerifiedModel:
    """The one call into ``kerasguard.integrity`` (signature bundles, other digest algorithms).

    The signature bundle is read from beside the original file: it authenticates digests that are
    then compared with the private copy, so reading it from the source is safe.
    """
    try:
        from kerasguard.integrity.signing import default_signature_path
        from kerasguard.integrity.verifying import verify
    except ImportError as exc:
        raise IntegrityError(
            f"signature verification needs the 'sign' extra ({exc.name} is not installed)",
            hint="pip install 'kerasguard[sign]', or pin a sha256 digest instead",
        ) from None
    if signature_beside is not None:
        kwargs["signature"] = default_signature_path(signature_beside)
    return verify(path, **kwargs)


def _scan(copy: PrivateCopy, policy: Policy, event: LoadEvent) -> None:
    """Scan the private copy; refuse on findings at or above the threshold or an incomplete scan."""
    if policy.trust.allow_unsafe_skip_scan:
        event.scan = "skipped"
        event.unsafe_switches.append("trust.allow_unsafe_skip_scan")
        log.warning(
            "UNSAFE: scan of %s skipped (trust.allow_unsafe_skip_scan, a test-only switch)", event.source
        )
        return
    from kerasguard.scanning.engine import scan

    report = _relabel(scan(copy.path, policy), str(copy.path), event.source)
    event.findings = summarize_findings(report)
    verdict = gate(report, policy)
    if verdict.blocking:
        event.scan = "refused"
        raise UnsafeModelError(
            f"{event.source}: {len(verdict.blocking)} finding(s) at or above {policy.fail_on}:\n"
            + _finding_lines(verdict.blocking)
            + ("\n  and the scan is incomplete" if verdict.incomplete else ""),
            report=report,
            hint="run `kerasguard scan` on the file for the full report",
        )
    if verdict.incomplete:
        event.scan = "incomplete"
        raise UnsafeModelError(
            f"{event.source}: the scan could not check everything, so the model is not trusted:\n"
            + "\n".join([*verdict.problems[:10]] or ["a reader could not finish"]),
            report=report,
        )
    event.scan = "findings-below-threshold" if report.findings else "clean"


def _finding_lines(findings: tuple[Finding, ...], limit: int = 10) -> str:
    lines = [
        f"  {f.severity!s:8} {f.rule_id} {f.title}: {f.message} (at {f.location})" for f in findings[:limit]
    ]
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more")
    return "\n".join(lines)


def _relabel(report: ScanReport, private: str, shown: str) -> ScanReport:
    """Show the caller's path, not the private copy's, in findings."""

    def fix(f: Finding) -> Finding:
        if f.location.file != private:
            return f
        return dataclasses.replace(f, location=dataclasses.replace(f.location, file=shown))

    files = tuple(
        dataclasses.replace(
            r, path=shown if r.path == private else r.path, findings=tuple(fix(f) for f in r.findings)
        )
        for r in report.files
    )
    return dataclasses.replace(report, files=files)


def _custom_references(custom_objects: Mapping[str, Any] | None) -> tuple[dict[str, str], list[str]]:
    """Custom objects as ``module:qualname`` plus their import roots, for the child to import."""
    refs: dict[str, str] = {}
    roots: list[str] = []
    for name, obj in (custom_objects or {}).items():
        module_name = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        module = sys.modules.get(module_name or "")
        file = getattr(module, "__file__", None)
        if not module_name or not qualname or module_name == "__main__" or "<locals>" in qualname or not file:
            raise KerasGuardError(
                f"custom object {name!r} cannot be sent to the sandbox: it is not importable by name",
                hint="define it at module level in an importable module (not __main__ or a function body)",
            )
        depth = module_name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
        root = Path(file).resolve().parent
        for _ in range(depth):
            root = root.parent
        refs[str(name)] = f"{module_name}:{qualname}"
        roots.append(str(root))
    return refs, list(dict.fromkeys(roots))


def _load_sandboxed(
    copy: PrivateCopy,
    policy: Policy,
    event: LoadEvent,
    custom_objects: Mapping[str, Any] | None,
    compile: bool,
    safe_mode: bool,
) -> SandboxedModel:
    from kerasguard.sandbox.capabilities import check_required, default_required, probe
    from kerasguard.sandbox.config import ChildLimits
    from kerasguard.sandbox.launcher import choose_layers, spawn
    from kerasguard.sandbox.model import SandboxedModel

    info = probe()
    event.sandbox = info.to_dict()
    sandbox_log = logging.getLogger("kerasguard.sandbox")
    sandbox_log.info("sandbox layers active: %s", ", ".join(info.active))
    defaults = default_required()
    required = defaults if policy.sandbox.require is None else policy.sandbox.require
    event.sandbox["required"] = list(required)
    not_required = [name for name in defaults if name not in required]
    if not_required:
        event.sandbox["not_required"] = not_required
        event.unsafe_switches.append("sandbox.require")
        sandbox_log.warning(
            "UNSAFE: the policy does not require the sandbox layer(s) %s (sandbox.require)",
            ", ".join(not_required),
        )
    check_required(info, tuple(required), allow_network=policy.sandbox.network)
    if info.missing:
        sandbox_log.warning("sandbox layers MISSING on this machine: %s", ", ".join(info.missing))
    if policy.sandbox.network:
        sandbox_log.warning("UNSAFE: the policy allows the sandboxed child to use the network")
        event.unsafe_switches.append("sandbox.network")
    refs, roots = _custom_references(custom_objects)
    child = spawn(
        copy.path,
        ChildLimits.from_policy(policy.sandbox),
        layers=choose_layers(info, allow_network=policy.sandbox.network),
        info=info,
        safe_mode=safe_mode,
        compile=compile,
        custom_objects=refs,
        sys_path=roots,
    )
    try:
        child.record_memory(True)
        reply, _ = child.request("load")
        child.record_memory(False)
        model = SandboxedModel(child, reply, on_close=copy.remove)
    except BaseException:
        child.close()
        event.child = child.stats.to_dict(samples=policy.sandbox.memory_samples)
        raise
    event.child = child.refresh_stats().to_dict(samples=policy.sandbox.memory_samples)
    return model


def _load_in_process(
    copy: PrivateCopy, custom_objects: Mapping[str, Any] | None, compile: bool, safe_mode: bool
) -> Any:
    import keras

    try:
        return keras.saving.load_model(
            copy.path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except MemoryError as exc:
        raise SandboxError(f"out of memory while loading in process: {exc}", limit="memory") from None
    except Exception as exc:
        raise ModelError(
            f"Keras raised {type(exc).__name__} while loading: {exc}", error_type=type(exc).__name__
        ) from None
