"""Judge one object reference from a Keras config against the allowlist of known modelling names.

One function decides, for every reference, which of the KG2xx rules (if any) owns it, so the rules
never disagree: a reference is safe, foreign (KG201), a non-modelling API (KG202), unknown to the
allowlist (KG204), a custom object to review (KG205) or allowed by the policy (KG205, info).

The allowlist is the authority (keras-vulns.md section 3): anything not known to be a modelling
name is reported. The side-effect lists below only raise known-dangerous names from "unknown" to
"critical"; they are not what makes a name acceptable.
"""

from __future__ import annotations

import builtins
import re
import sys
from dataclasses import dataclass
from typing import Literal

from packaging.version import InvalidVersion, Version

from kerasguard.findings import Severity
from kerasguard.formats.config_walk import ObjRef, is_class_like, top_package
from kerasguard.policy import AllowEntry, Policy
from kerasguard.rules.keras_api import KerasApi, keras_api

Category = Literal["safe", "foreign", "non_modeling", "unknown", "custom", "allowed", "other"]

# Functions with I/O or global side effects, under any Keras-family module spelling
# (keras.utils.get_file, keras.src.utils.file_utils.get_file...). Keras 3.9-3.10 imported them.
SIDE_EFFECT_NAMES = frozenset(
    {
        "get_file",
        "load_model",
        "save_model",
        "load_weights",
        "save_weights",
        "model_from_json",
        "model_from_yaml",
        "model_from_config",
        "clone_model",
        "enable_unsafe_deserialization",
        "set_global_attribute",
        "get_global_attribute",
        "clear_session",
        "register_keras_serializable",
        "deserialize_keras_object",
        "serialize_keras_object",
        "custom_object_scope",
        "load_img",
        "save_img",
        "plot_model",
        "model_to_dot",
        "image_dataset_from_directory",
        "text_dataset_from_directory",
        "audio_dataset_from_directory",
        "set_random_seed",
        "set_floatx",
        "set_epsilon",
        "set_image_data_format",
        "set_backend",
        "set_dtype_policy",
        "set_global_policy",
        "set_distribution",
        "enable_interactive_logging",
        "disable_interactive_logging",
        "enable_traceback_filtering",
        "disable_traceback_filtering",
        "enable_flash_attention",
        "disable_flash_attention",
        "set_max_epochs",
        "set_max_steps_per_epoch",
        "plot_image_gallery",
        "plot_segmentation_mask_gallery",
        "plot_bounding_box_gallery",
        "export_saved_model",
    }
)

# Keras-family namespaces whose functions (and non-allowlisted classes) act outside the model:
# file and network I/O, global configuration, saving/loading, downloads (datasets, applications).
SIDE_EFFECT_MODULES = (
    "keras.config",
    "keras.saving",
    "keras.models",
    "keras.visualization",
    "keras.datasets",
    "keras.applications",
    "keras.preprocessing",
    "keras.callbacks",
    "keras.export",
    "keras.distribution",
    "keras.backend",
    "keras.legacy",
    "keras.utils",
    "keras.src.saving",
    "keras.src.legacy",
    "keras.src.backend.common.global_state",
    "keras.src.utils",
    "keras.src.visualization",
    "keras.src.datasets",
    "keras.src.applications",
    "keras.src.callbacks",
    "keras.src.export",
    "keras.src.distribution",
    "keras.src.models.model",
    "keras.src.models.cloning",
    "keras.src.trainers",
)

FAMILY_EXTENSIONS = frozenset({"keras_hub", "keras_cv", "keras_nlp"})
TF_KERAS = "tf_keras"  # Keras 2 as a package: same names, its own module paths

# tf.keras Lambda(tf.math.add) configs name TensorFlow's implementation modules. Pure tensor-op modules
# are modelling code; I/O, logging, Python-callback and library-loading modules are not.
TF_OP_MODULES = frozenset(
    {
        "math_ops",
        "gen_math_ops",
        "nn_ops",
        "gen_nn_ops",
        "nn_impl",
        "array_ops",
        "gen_array_ops",
        "clip_ops",
        "special_math_ops",
        "linalg_ops",
        "random_ops",
        "image_ops_impl",
        "bitwise_ops",
        "sparse_ops",
        "string_ops",
        "check_ops",
        "control_flow_ops",
    }
)
TF_SIDE_EFFECT_MODULES = frozenset(
    {
        "io_ops",
        "gen_io_ops",
        "script_ops",
        "logging_ops",
        "gen_logging_ops",
        "file_io",
        "load_library",
        "summary_ops_v2",
        "gen_summary_ops",
        "saver",
        "gen_script_ops",
    }
)

# Keras resolves these via import before 3.9 (CVE-2025-1550); from 3.9 only registered objects.
FIRST_SAFE_IMPORT = Version("3.9.0")

PYTHON_BUILTINS = frozenset(dir(builtins))
STDLIB = frozenset(sys.stdlib_module_names) | {"builtins", "__builtin__", "posix", "nt"}

_REGISTERED = re.compile(r"^[A-Za-z0-9_.\-]+>[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Judgement:
    category: Category
    message: str
    severity: Severity | None = None
    allow: AllowEntry | None = None  # "allowed": the policy entry that allowed it
    cleared: Judgement | None = None  # "allowed": the judgement without the allowlist
    refused_allow: AllowEntry | None = None  # an entry matched but the policy may not clear this


def in_module(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_stdlib(module: str) -> bool:
    return top_package(module) in STDLIB


def is_registered_name(name: str | None) -> bool:
    """``package>Name``: how Keras writes objects registered with register_keras_serializable."""
    return bool(name) and bool(_REGISTERED.match(name or ""))


def keras_before(version: str | None, threshold: Version) -> bool | None:
    """Whether the Keras that will load the file is older than ``threshold`` (None: unknown)."""
    if not version:
        return None
    try:
        return Version(version) < threshold
    except InvalidVersion:
        return None


def _policy_allow(ref: ObjRef, policy: Policy, name: str) -> AllowEntry | None:
    """The policy entry allowing ``ref``: by ``module.name``, by registered name, or (only when the
    config names no module, as Keras 2 configs do) by bare name, so an allowlisted class name cannot
    be borrowed by another module."""
    allow = policy.allow
    module = ref.module or ""
    qualified = f"{module}.{name}" if module else name
    kind = "functions" if ref.kind == "function" else "custom_objects"
    hit = allow.allows(kind, qualified) or (
        allow.allows(kind, ref.registered_name) if ref.registered_name else None
    )
    if hit is None and module and not is_stdlib(module):
        hit = allow.allows("modules", module)
    return hit


def judge(ref: ObjRef, policy: Policy, keras_version: str | None, api: KerasApi | None = None) -> Judgement:
    """Which KG2xx category ``ref`` falls in; ``safe``/``other`` produce no finding."""
    api = api or keras_api()
    if ref.kind == "function":
        return _judge_function(ref, policy, keras_version, api)
    if ref.kind == "class" and ref.class_name not in api.gated_classes:
        return _judge_class(ref, policy, api)
    if ref.class_name == "__typespec__":
        return _judge_typespec(ref)
    return Judgement("other", "")


def _judge_typespec(ref: ObjRef) -> Judgement:
    """``__typespec__`` resolves ``module.spec_name`` like a class (Keras < 3.9 imported any module)."""
    spec = ref.node.get("spec_name")
    module = ref.module
    if not isinstance(spec, str) or not module or top_package(module) in ("keras", "tensorflow"):
        return Judgement("other", "")
    if is_stdlib(module) or not is_class_like(spec):
        return Judgement("foreign", f"__typespec__ names {module}.{spec}, which is not a TensorFlow TypeSpec")
    return Judgement("other", "")


def judge_function_name(
    module: str | None,
    name: str,
    policy: Policy,
    keras_version: str | None,
    registered_name: str | None = None,
    api: KerasApi | None = None,
) -> Judgement:
    """Judge a function named by module and name (Keras 2 Lambda ``function_type: function``)."""
    ref = ObjRef(
        pointer="",
        node={},
        class_name="function",
        module=module,
        registered_name=registered_name,
        config=name,
        kind="function",
        in_layers=False,
    )
    return _judge_function(ref, policy, keras_version, api or keras_api())


def _judge_function(ref: ObjRef, policy: Policy, keras_version: str | None, api: KerasApi) -> Judgement:
    name = ref.function_name
    if not name:
        return Judgement("other", "")
    module = ref.module or ""
    qualified = f"{module}.{name}" if module else name
    short = name.rsplit(">", 1)[-1]
    if module and api.in_family(module):
        if qualified in api.non_modeling or short in SIDE_EFFECT_NAMES:
            return Judgement("non_modeling", f"function {qualified} has side effects outside the model")
        if qualified in api.functions:
            return Judgement("safe", "")
        if in_module(module, SIDE_EFFECT_MODULES):
            return Judgement(
                "non_modeling", f"function {qualified} is in {module}, which acts outside the model"
            )
        allowed = policy.allow.allows("functions", qualified)
        if allowed:
            return Judgement("allowed", f"function {qualified} is allowed by the policy", allow=allowed)
        if top_package(module) in FAMILY_EXTENSIONS and is_registered_name(ref.registered_name or name):
            return Judgement(
                "custom",
                f"function {qualified} is registered by {top_package(module)}; "
                "Keras >= 3.11 resolves it only when that package is imported",
            )
        return Judgement("unknown", f"function {qualified} is not a known Keras modelling function")
    if top_package(module) == TF_KERAS:
        if short in SIDE_EFFECT_NAMES:
            return Judgement("non_modeling", f"function {qualified} has side effects outside the model")
        if short in api.function_names:
            return Judgement("safe", "")
    if top_package(module) == "tensorflow":
        tail = module.rsplit(".", 1)[-1]
        if tail in TF_SIDE_EFFECT_MODULES:
            return Judgement("non_modeling", f"function {qualified} is a TensorFlow I/O or callback op")
        if tail in TF_OP_MODULES:
            return Judgement("safe", "")
    if module == "builtins":
        if name in api.builtin_functions:
            return Judgement("safe", "")
        if name in PYTHON_BUILTINS:
            return Judgement(
                "foreign",
                f"builtins.{name} is a Python built-in, not a Keras function: Keras < 3.9 imports "
                "builtins and returns it",
            )
    allowed = _policy_allow(ref, policy, name)
    if allowed:
        return Judgement("allowed", f"function {qualified} is allowed by the policy", allow=allowed)
    if not module or module == "builtins":
        return Judgement(
            "custom", f"function {name!r} resolves only to a custom object the application registers"
        )
    if is_stdlib(module):
        return Judgement("foreign", f"function {qualified} comes from the Python standard library")
    # Keras >= 3.9 resolves a function from another package only through the registry or the
    # application's custom_objects (so it is the application's code); older Keras imports the module.
    old = keras_before(keras_version, FIRST_SAFE_IMPORT)
    if old is False:
        label = ref.registered_name if is_registered_name(ref.registered_name) else name
        return Judgement("custom", f"custom function {label} from module {module}")
    reason = (
        f"Keras {keras_version} imports module {module!r} and returns the function"
        if old
        else "the policy does not pin keras_version, so the file is judged for the worst Keras it could "
        "meet: Keras < 3.9 and tf-keras import the module and return the function"
    )
    return Judgement("foreign", f"function {qualified} from outside Keras: {reason}")


def _judge_class(ref: ObjRef, policy: Policy, api: KerasApi) -> Judgement:
    name = ref.class_name
    module = ref.module
    if not module:
        if name in api.class_names:
            return Judgement("safe", "")
        allowed = _policy_allow(ref, policy, name)
        if allowed:
            return Judgement("allowed", f"custom object {name} is allowed by the policy", allow=allowed)
        return Judgement("custom", f"custom object {name!r} (not a Keras class)")
    qualified = f"{module}.{name}"
    if api.in_family(module):
        if qualified in api.classes:
            return Judgement("safe", "")
        if in_module(module, SIDE_EFFECT_MODULES) or name in SIDE_EFFECT_NAMES:
            return Judgement("non_modeling", f"{qualified} acts outside the model")
        allowed = _policy_allow(ref, policy, name)
        if allowed:
            return Judgement("allowed", f"{qualified} is allowed by the policy", allow=allowed)
        if not is_class_like(name):
            return Judgement("unknown", f"{qualified} names a function where Keras expects a class")
        if top_package(module) in FAMILY_EXTENSIONS:
            return Judgement("safe", "")  # Keras requires a KerasSaveable subclass there
        if top_package(module) == "keras" and name in api.class_names:
            return Judgement("safe", "")  # a known class under another Keras version's module path
        return Judgement(
            "unknown",
            f"{qualified} is not a Keras class known to this scanner (keras {api.keras_version})",
            severity=Severity.MEDIUM,
        )
    if module == "builtins" or is_stdlib(module):
        return Judgement("foreign", f"{qualified} comes from the Python standard library")
    if top_package(module) == TF_KERAS and name in api.class_names:
        return Judgement("safe", "")  # tf-keras writes its own module paths for Keras classes
    if not is_class_like(name):
        return Judgement("foreign", f"{qualified} is a function from outside Keras, used as a class")
    allowed = _policy_allow(ref, policy, name)
    if allowed:
        return Judgement("allowed", f"custom object {qualified} is allowed by the policy", allow=allowed)
    registered = ref.registered_name if is_registered_name(ref.registered_name) else None
    label = f"registered custom object {registered}" if registered else f"custom object {name}"
    return Judgement("custom", f"{label} from module {module}")
