"""Policy: limits, allowlists (each entry with a reason), severity overrides and ignores.

Loaded from ``kerasguard.toml``, ``[tool.kerasguard]`` in ``pyproject.toml`` or an explicit file.
Every key is validated; a bad file raises :class:`PolicyError` naming the key. Other parts of
kerasguard (trust, sandbox, store) add their own sections as dataclasses here, so one loader
validates them all.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kerasguard.errors import PolicyError
from kerasguard.findings import Severity

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    """Resource limits of the scanner. Defaults are explained in docs/rules (KG3xx, KG4xx, KG9xx)."""

    max_file_bytes: int = 64 * GiB  # largest file scanned or copied by load_model; larger is KG902
    max_members: int = 10_000  # zip members read per artifact (nested archives included); more is KG902
    # archives, HDF5, pickles or JSON inside each other deeper than this are not opened (KG902)
    max_nesting: int = 3
    max_json_bytes: int = 16 * MiB  # largest JSON document (config.json, metadata) parsed
    max_json_depth: int = 128  # deepest JSON nesting parsed (Keras configs nest about 10 levels)
    max_member_bytes: int = 16 * GiB  # largest declared uncompressed size of one zip member
    max_total_uncompressed: int = 32 * GiB  # declared uncompressed bytes of all members of one artifact
    # uncompressed/compressed ratio above which a member is a zip bomb (KG308)
    max_compression_ratio: int = 100
    crc_check_max_bytes: int = 64 * MiB  # members up to this size are CRC-checked as zipfile would
    # members smaller than this uncompressed are never judged by their ratio
    compression_ratio_floor: int = 16 * MiB
    max_pickle_bytes: int = 256 * MiB  # largest pickle stream whose opcodes are walked
    h5_max_dims: int = 64  # HDF5 dataset rank above this is KG403 (Keras weights have rank <= 5)
    # declared/stored bytes of an HDF5 dataset above which it is a shape bomb (KG405)
    h5_bomb_ratio: int = 100
    # datasets declaring less than this are never shape bombs (alert threshold, below the advisory's 1 GB)
    h5_bomb_floor: int = 64 * MiB
    # one dataset declaring more than this is reported (KG406), even when stored
    h5_large_dataset: int = 1 * GiB
    # declared bytes of all datasets of one file above this are reported (KG407)
    h5_total_declared: int = 16 * GiB
    h5_max_objects: int = 100_000  # HDF5 groups, datasets and links visited per file; more is KG902
    # a size-carrying config key (units, filters, input_dim...) above this is KG501
    max_config_units: int = 1 << 22
    max_config_elements: int = 1 << 31  # elements one layer's weights may have, from its config (KG501)
    max_config_nodes: int = 1_000_000  # JSON nodes of a config walked for references and payloads
    # wall-clock budget to read one file; over it is KG902 and the file is incomplete
    file_timeout_s: float = 60.0
    parser_memory_mb: int = 1024  # address-space limit of the h5py child that reads unusual HDF5 layouts
    npy_bomb_ratio: int = 100  # declared/stored bytes of an .npy above which it is an array bomb
    npy_bomb_floor: int = 64 * MiB  # .npy arrays declaring less than this are never array bombs
    max_npy_header_bytes: int = 1 * MiB  # largest .npy header parsed
    max_protobuf_bytes: int = 1 * GiB  # largest SavedModel protobuf (saved_model.pb, keras_metadata.pb) read
    max_pbtxt_bytes: int = 128 * MiB  # largest text-format protobuf read
    max_graph_nodes: int = 1_000_000  # TensorFlow graph nodes and functions walked per SavedModel
    # Memory a model's config may make Keras allocate for its variables at load (KG505).
    max_load_bytes: int = 2 * GiB

    def __post_init__(self) -> None:
        if self.max_load_bytes < MiB:
            raise PolicyError(
                f"limits.max_load_bytes must be at least 1 MiB ({MiB}), got {self.max_load_bytes}"
            )


@dataclass(frozen=True)
class AllowEntry:
    """One allowlisted name. ``reason`` is mandatory: an allowlist without reasons is a hole."""

    name: str  # glob of the dotted name allowed (`module.function`, `package>Class` for registered objects)
    reason: str  # why it is safe (mandatory; shown in every report that relies on it)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise PolicyError("allowlist entry has an empty 'name'")
        if not self.reason.strip():
            raise PolicyError(f"allowlist entry {self.name!r} needs a non-empty 'reason'")


@dataclass(frozen=True)
class Allow:
    """Names a model may reference beyond the built-in safe set."""

    custom_objects: tuple[AllowEntry, ...] = ()
    modules: tuple[AllowEntry, ...] = ()
    functions: tuple[AllowEntry, ...] = ()
    pickle_globals: tuple[AllowEntry, ...] = ()

    def allows(self, kind: str, name: str) -> AllowEntry | None:
        entries: tuple[AllowEntry, ...] = getattr(self, kind)
        for entry in entries:
            if fnmatch.fnmatchcase(name, entry.name):
                return entry
        return None


@dataclass(frozen=True)
class Ignore:
    """Suppress one rule (or ``*``) on paths matching a glob; needs a reason."""

    rule: str  # rule id (`KG306`) or `*`
    reason: str  # why (mandatory; every suppression is shown in the report)
    path: str = "*"  # glob of the scanned paths it applies to

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise PolicyError(f"ignore entry for rule {self.rule!r} needs a non-empty 'reason'")

    def matches(self, rule_id: str, path: str) -> bool:
        return (self.rule in ("*", rule_id)) and fnmatch.fnmatch(path, self.path)


@dataclass(frozen=True)
class TrustedKey:
    """A public key whose signatures are accepted, under a name that is pinned as the signer."""

    name: str  # the signer name pinned in `[[trust.models]] signers` and shown in load events
    public_key: str  # path to a PEM file (relative to the policy file's folder or absolute)
    reason: str = ""  # why this key is trusted (recorded for reviewers)


@dataclass(frozen=True)
class PinnedModel:
    """A model name (glob) and version (glob) that only ``signers`` may sign, from ``min_version`` on.

    Pins are a closed list: once the policy has any, a signature for a model no pin names is refused,
    so a validly signed *other* model cannot stand in for a pinned one, and a pinned model signed for
    a version older than ``min_version`` (PEP 440) cannot be rolled back to.
    """

    name: str  # glob of the model name the signature must be bound to
    signers: tuple[str, ...]  # trusted key names or certificate identities allowed to sign it
    version: str = "*"  # glob of the model versions accepted
    min_version: str | None = None  # lowest version accepted (PEP 440), e.g. `2.0`

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise PolicyError("'name' must not be empty")
        if any(not s.strip() for s in self.signers):
            raise PolicyError(f"pin {self.name!r}: 'signers' has an empty name")
        if self.min_version is not None:
            from packaging.version import InvalidVersion, Version  # only policies that pin versions pay

            try:
                Version(self.min_version)
            except InvalidVersion:
                raise PolicyError(
                    f"pin {self.name!r}: 'min_version' {self.min_version!r} is not a PEP 440 version"
                ) from None


@dataclass(frozen=True)
class Trust:
    """Where models may come from and what proof of origin they need before loading."""

    require: str = "none"  # "none" | "digest" | "signature"
    sources: tuple[str, ...] = ()  # allowed path prefixes and URL prefixes; empty = any local path
    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[str, ...] = ()  # certificate identities (SAN email / URI) accepted as signers
    cert_chains: tuple[str, ...] = ()  # PEM files of trusted root certificates (relative to the policy file)
    models: tuple[PinnedModel, ...] = ()
    allow_unsafe_deserialization: bool = False  # loads with safe_mode=False; logged every time
    allow_unsafe_skip_scan: bool = False  # test-only switch; logged every time

    def __post_init__(self) -> None:
        if self.require not in ("none", "digest", "signature"):
            raise PolicyError(f"trust.require must be none, digest or signature, not {self.require!r}")


@dataclass(frozen=True)
class Sandbox:
    """Limits of the child process that loads and runs a model."""

    # load in a sandboxed child; false loads in process and needs `allow_unsafe_in_process`
    enabled: bool = True
    memory_mb: int = 4096  # memory of the child (cgroup limit, RSS monitor; address space is this + 2 GiB)
    cpu_seconds: int = 120  # per request (predict, summary)
    wall_seconds: float = 120.0  # per request
    startup_cpu_seconds: int = 300  # start-up (interpreter, Keras, backend) and the model load together
    startup_wall_seconds: float = 300.0  # start-up and the model load together
    max_file_mb: int = 256  # largest single file the child may write (RLIMIT_FSIZE)
    scratch_mb: int = 512  # total size of the child's scratch (a tmpfs in its mount namespace)
    max_open_files: int = 256  # file descriptors the child may hold
    network: bool = False  # give the child a network (AF_INET/AF_INET6 only); unsafe, logged at every load
    # permit loading in the caller's process (after verify and scan); logged at every load
    allow_unsafe_in_process: bool = False
    memory_samples: bool = False  # the child's whole memory curve in the load event (else peak and count)
    # Layers a load refuses to go without; unset: all the machine offers this user; fewer: a logged opt-out
    require: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.require is not None:
            unknown = sorted(set(self.require) - set(SANDBOX_LAYERS))
            if unknown:
                known = ", ".join(SANDBOX_LAYERS)
                raise PolicyError(f"sandbox.require: unknown layer(s) {', '.join(unknown)} (known: {known})")


# The layers ``sandbox.require`` can name (kerasguard.sandbox.capabilities measures them).
SANDBOX_LAYERS = (
    "memory-cgroup",
    "network-namespace",
    "mount-namespace",
    "capabilities",
    "landlock",
    "seccomp",
)


@dataclass(frozen=True)
class AuditIgnore:
    """An advisory (id or alias) accepted for a reason, e.g. a mitigation the audit cannot see."""

    id: str  # advisory id or alias (CVE-..., GHSA-...)
    reason: str  # why it does not apply (mandatory; shown as accepted by policy)

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise PolicyError("audit ignore entry has an empty 'id'")
        if not self.reason.strip():
            raise PolicyError(f"audit ignore entry {self.id!r} needs a non-empty 'reason'")


@dataclass(frozen=True)
class Audit:
    """How the stack audit judges: ``require_safe_stack`` raises or warns; threshold; accepted advisories."""

    on_vulnerable: str = "raise"  # "raise" | "warn"
    fail_on: Severity | None = None  # None: the policy's fail_on
    ignore: tuple[AuditIgnore, ...] = ()

    def __post_init__(self) -> None:
        if self.on_vulnerable not in ("raise", "warn"):
            raise PolicyError(f"audit.on_vulnerable must be raise or warn, not {self.on_vulnerable!r}")

    def ignored(self, names: frozenset[str]) -> AuditIgnore | None:
        for entry in self.ignore:
            if entry.id.strip().upper() in names:
                return entry
        return None


@dataclass(frozen=True)
class Store:
    """Admission rules of the model store (``kerasguard store``)."""

    sources: tuple[str, ...] = ()  # approved source URL prefixes (repositories or hosts); empty = none
    stages: tuple[str, ...] = ("staging", "production", "archived")  # stages a version can be promoted to
    default_stage: str = "staging"  # stage of a newly admitted version
    max_attachment_bytes: int = 32 * MiB  # largest attachment (detector, training record, probe report)

    def __post_init__(self) -> None:
        if self.max_attachment_bytes < 1:
            raise PolicyError("store.max_attachment_bytes must be at least 1")
        if not self.stages:
            raise PolicyError("store.stages must list at least one stage")
        if self.default_stage not in self.stages:
            raise PolicyError(f"store.default_stage {self.default_stage!r} is not one of store.stages")


@dataclass(frozen=True)
class Serve:
    """The inference gateway (``kerasguard serve``, docs/serve.md): what it serves and its abuse limits."""

    stage: str = "production"  # only admitted versions at this store stage are served
    namespaces: tuple[str, ...] = ()  # tenants to serve; empty: every namespace with invoker keys
    max_body_bytes: int = 8 * MiB  # request body cap, enforced while the body streams in (413)
    max_instances: int = 256  # per request
    max_batch: int = 64  # per predict call (dynamic batching)
    batch_wait_ms: float = 2.0  # longest a request waits for others to join its batch
    queue_size: int = 256  # requests waiting per worker before 503
    max_concurrent_per_key: int = 64  # requests in flight per key before 429
    request_timeout_s: float = 10.0  # deadline of one request, body included (504)
    header_timeout_s: float = 10.0  # request line + headers, from connect or last response, else closed
    keep_alive_timeout_s: int = 5  # seconds: an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections per process (own included) before requests get 503
    key_requests_per_second: int = 200  # requests per second per API key (429 with Retry-After)
    tenant_requests_per_second: int = 1000  # requests per second per tenant, all its keys together
    key_elements_per_second: int = 5_000_000  # input elements per second per API key
    tenant_elements_per_second: int = 20_000_000  # input elements per second per tenant
    rate_limit_storage: str = "memory://"  # or redis://host:port/db for several gateway processes
    on_storage_error: str = "deny"  # "deny" (fail closed: 503) or "allow"
    poll_seconds: float = 5.0  # how often the store is polled for promotions and quarantines
    # how long a checked API key is trusted before the store is asked again (revocation delay)
    key_cache_seconds: float = 5.0
    # first delay before restarting a crashed or killed worker (doubles each time)
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0  # longest delay between worker restarts
    console: bool = True  # the review console under /console/ (docs/console.md)
    # "model/input" -> [min, max]: values outside are refused with 422
    ranges: Mapping[str, Any] = field(default_factory=dict)
    ood_header: bool = False  # send X-KerasGuard-OOD-Score(-<Kind>) when the version has a detector attached
    drift_window: int = 200  # predictions per drift window (per model version, per gateway process)
    drift_confidence_drop: float = 0.15  # alarm when a window's mean confidence falls this far
    drift_p_value: float = 0.001  # class-mix alarm when the chi-square test's p-value is below this
    # an instance below the attached STRIP detector's entropy threshold: "flag" (serve it, counted and
    # logged) or "reject" (the whole request gets 422 with reason "strip")
    strip_action: str = "flag"
    strip_header: bool = False  # send X-KerasGuard-STRIP-Entropy when the version has a STRIP detector
    # withdraw every served version after this many store polls failed in a row (0: keep serving what
    # was last admitted for as long as the store is unreachable)
    stale_after_failed_polls: int = 0

    def __post_init__(self) -> None:
        if self.strip_action not in ("flag", "reject"):
            raise PolicyError(f"serve.strip_action must be flag or reject, not {self.strip_action!r}")
        if self.stale_after_failed_polls < 0:
            raise PolicyError("serve.stale_after_failed_polls must be 0 (never) or more")
        if self.on_storage_error not in ("deny", "allow"):
            raise PolicyError(f"serve.on_storage_error must be deny or allow, not {self.on_storage_error!r}")
        if not self.rate_limit_storage.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise PolicyError("serve.rate_limit_storage must be memory://, redis://, rediss:// or unix://")
        for name in ("max_body_bytes", "max_instances", "max_batch", "queue_size", "max_concurrent_per_key"):
            if getattr(self, name) < 1:
                raise PolicyError(f"serve.{name} must be at least 1")
        if self.max_connections < 2:  # a request's own connection counts: 1 would refuse every request
            raise PolicyError("serve.max_connections must be at least 2")
        if self.request_timeout_s <= 0 or self.poll_seconds <= 0:
            raise PolicyError("serve.request_timeout_s and serve.poll_seconds must be positive")
        if not 0 < self.header_timeout_s <= 3600:
            raise PolicyError("serve.header_timeout_s must be in (0, 3600]")
        if not 1 <= self.keep_alive_timeout_s <= 3600:
            raise PolicyError("serve.keep_alive_timeout_s must be in [1, 3600]")
        if self.drift_window < 20:
            raise PolicyError("serve.drift_window must be at least 20")
        if not 0 < self.drift_confidence_drop < 1 or not 0 < self.drift_p_value < 0.5:
            raise PolicyError(
                "serve.drift_confidence_drop must be in (0, 1), serve.drift_p_value in (0, 0.5)"
            )
        for key, bounds in self.ranges.items():
            if not isinstance(key, str) or key.count("/") != 1:
                raise PolicyError(f"serve.ranges key {key!r} must be 'model/input'")
            ok = (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
                and math.isfinite(bounds[0])
                and math.isfinite(bounds[1])
                and bounds[0] <= bounds[1]
            )
            if not ok:
                raise PolicyError(f"serve.ranges.{key!r} must be [min, max] with finite min <= max")


@dataclass(frozen=True)
class Probe:
    """Thresholds of ``kerasguard probe`` (docs/probe.md): when a backdoor or a privacy leak is reported."""

    backdoor_anomaly_index: float = 2.0  # a class whose trigger is this many MADs below the median
    # ... and whose mask norm is at most this share of the median norm (decision 59) ...
    backdoor_max_norm_ratio: float = 0.6
    # ... and whose recovered trigger sends at least this share of held-out clean inputs to it
    backdoor_min_attack_success: float = 0.75
    min_clean_per_class: int = 10  # clean samples per class the trigger search and STRIP need
    strip_fpr: float = 0.05  # false-positive rate the STRIP detector is fitted at
    privacy_max_auc: float = 0.6  # membership-inference AUC above this is a leak
    privacy_max_tpr_at_1pct_fpr: float = 0.05  # members found at 1% false positives above this is a leak

    def __post_init__(self) -> None:
        if not self.backdoor_anomaly_index > 0:
            raise PolicyError("probe.backdoor_anomaly_index must be above 0")
        if not 0 < self.backdoor_max_norm_ratio <= 1:
            raise PolicyError("probe.backdoor_max_norm_ratio must be above 0 and at most 1")
        if not 0 <= self.backdoor_min_attack_success <= 1:
            raise PolicyError("probe.backdoor_min_attack_success must be between 0 and 1")
        if self.min_clean_per_class < 2:
            raise PolicyError("probe.min_clean_per_class must be at least 2")
        if not 0 < self.strip_fpr < 0.5:
            raise PolicyError("probe.strip_fpr must be between 0 and 0.5")
        if not 0.5 <= self.privacy_max_auc <= 1:
            raise PolicyError("probe.privacy_max_auc must be between 0.5 and 1")
        if not 0 < self.privacy_max_tpr_at_1pct_fpr <= 1:
            raise PolicyError("probe.privacy_max_tpr_at_1pct_fpr must be above 0 and at most 1")


@dataclass(frozen=True)
class Policy:
    """The whole policy. ``Policy()`` is the safe default."""

    fail_on: Severity = Severity.HIGH  # lowest severity that fails a scan, a load or an admission (exit 1)
    # the Keras version that will load the files; unset judges for the worst version a file could meet
    keras_version: str | None = None
    limits: Limits = field(default_factory=Limits)
    allow: Allow = field(default_factory=Allow)
    # rule id -> severity overrides; a found policy cannot lower high or critical code-execution findings
    severity: Mapping[str, Severity] = field(default_factory=dict)
    ignore: tuple[Ignore, ...] = ()
    trust: Trust = field(default_factory=Trust)
    sandbox: Sandbox = field(default_factory=Sandbox)
    audit: Audit = field(default_factory=Audit)
    store: Store = field(default_factory=Store)
    serve: Serve = field(default_factory=Serve)
    probe: Probe = field(default_factory=Probe)
    source: str = "<default>"
    # True for a policy found upwards from the working directory rather than given: it cannot suppress
    # code-execution findings (kerasguard.suppressions). Never read from a file.
    found_implicitly: bool = False

    def __post_init__(self) -> None:
        if self.keras_version is not None:
            from packaging.version import InvalidVersion, Version

            try:
                Version(self.keras_version)
            except InvalidVersion:
                raise PolicyError(
                    f"policy key 'keras_version': {self.keras_version!r} is not a version (e.g. \"3.15.1\")"
                ) from None

    def severity_for(self, rule_id: str, default: Severity) -> Severity:
        return self.severity.get(rule_id, default)

    def ignored(self, rule_id: str, path: str) -> Ignore | None:
        for entry in self.ignore:
            if entry.matches(rule_id, path):
                return entry
        return None


T = TypeVar("T")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Convert a TOML value to the annotated type, raising PolicyError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if annotation is Severity:
        if not isinstance(value, str):
            raise PolicyError(f"policy key {key!r} must be a severity name, got {value!r}")
        try:
            return Severity.parse(value)
        except ValueError as exc:
            raise PolicyError(f"policy key {key!r}: {exc}") from None
    if annotation is bool:
        if not isinstance(value, bool):
            raise PolicyError(f"policy key {key!r} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"policy key {key!r} must be a non-negative integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PolicyError(f"policy key {key!r} must be a non-negative number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise PolicyError(f"policy key {key!r} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise PolicyError(f"policy key {key!r} must be a list, got {type(value).__name__}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or annotation is dict:
        if not isinstance(value, dict):
            raise PolicyError(f"policy key {key!r} must be a table")
        value_type = args[1] if args else Any
        return {str(k): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, dict):
            raise PolicyError(f"policy key {key!r} must be a table")
        return from_mapping(annotation, value, key)
    if annotation is Any:
        return value
    raise PolicyError(f"policy key {key!r}: unsupported type {annotation!r}")


NOT_FROM_FILES = frozenset({"source", "found_implicitly"})  # set by load_policy, never by a file


def from_mapping(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        name = raw_key.replace("-", "_")
        key = f"{prefix}.{raw_key}" if prefix else raw_key
        if name not in fields or name in NOT_FROM_FILES:
            known = ", ".join(sorted(f for f in fields if f not in NOT_FROM_FILES))
            raise PolicyError(f"unknown policy key {key!r} (known keys here: {known})")
        kwargs[name] = _convert(value, hints[name], key)
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in kwargs
    ]
    if missing:
        where = prefix or "policy"
        raise PolicyError(f"{where} is missing required key(s): {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except PolicyError as exc:
        raise PolicyError(f"{prefix or 'policy'}: {exc.message}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None


def load_policy(path: str | Path | None = None, *, search_from: str | Path | None = None) -> Policy:
    """Load a policy from ``path``, or find ``kerasguard.toml`` / ``pyproject.toml`` upwards.

    ``pyproject.toml`` counts only when it has a ``[tool.kerasguard]`` table; ``kerasguard.toml`` holds the
    keys bare or, as pasted from a pyproject.toml, under ``[tool.kerasguard]``. No file: defaults. A policy
    found upwards is marked ``found_implicitly`` (it cannot suppress code-execution findings).
    """
    if path is not None:
        p = Path(path)
        data = _read_toml(p)
        if p.name == "pyproject.toml":
            data = data.get("tool", {}).get("kerasguard", {})
        else:
            data = _policy_table(data, p)
        return policy_from_mapping(data, source=str(p))
    start = Path(search_from or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / "kerasguard.toml"
        if candidate.is_file():
            data = _policy_table(_read_toml(candidate), candidate)
            return _found(policy_from_mapping(data, source=str(candidate)))
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            tool = _read_toml(pyproject).get("tool", {})
            if "kerasguard" in tool:
                return _found(policy_from_mapping(tool["kerasguard"], source=str(pyproject)))
    return Policy()


def _found(policy: Policy) -> Policy:
    return dataclasses.replace(policy, found_implicitly=True)


def _policy_table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The policy keys of a kerasguard.toml: bare, or under ``[tool.kerasguard]`` as in pyproject.toml."""
    tool = data.get("tool")
    if tool is None:
        return data
    if not isinstance(tool, dict) or set(tool) != {"kerasguard"} or not isinstance(tool["kerasguard"], dict):
        raise PolicyError(
            f"{path}: unknown policy key 'tool'",
            hint="in kerasguard.toml write the keys bare, or all of them under [tool.kerasguard]",
        )
    if len(data) > 1:
        others = ", ".join(sorted(k for k in data if k != "tool"))
        raise PolicyError(
            f"{path}: policy keys both bare ({others}) and under [tool.kerasguard]",
            hint="use one form: bare keys, or all of them under [tool.kerasguard]",
        )
    table: dict[str, Any] = tool["kerasguard"]
    return table


def policy_from_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> Policy:
    """Validate a mapping (the content of ``[tool.kerasguard]``) into a Policy."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy in {source} must be a table")
    try:
        policy = from_mapping(Policy, data)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc.message}") from None
    return dataclasses.replace(policy, source=source)
