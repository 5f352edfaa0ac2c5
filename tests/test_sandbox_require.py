"""Fail closed: a layer the policy requires and the machine lacks refuses the load.

The real environments are built for real: a process whose seccomp filter makes the Landlock
system calls answer ENOSYS (as a common container profile does), and a real non-root user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kerasguard.errors import PolicyError
from kerasguard.policy import SANDBOX_LAYERS, policy_from_mapping
from kerasguard.sandbox.capabilities import Layer, SandboxInfo, check_required, default_required

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
SCRIPT = TESTS / "support" / "sandbox_loadscript.py"
TEST_USER = "kgsandbox"
SKIP_SCAN = {"allow_unsafe_skip_scan": True, "allow_unsafe_deserialization": True}


def info_without(*missing: str) -> SandboxInfo:
    return SandboxInfo(
        tuple(Layer(name, name not in missing, "no" if name in missing else "yes") for name in SANDBOX_LAYERS)
    )


def test_defaults_require_every_layer_for_root_and_all_but_the_cgroup_otherwise() -> None:
    assert default_required(0) == SANDBOX_LAYERS
    assert default_required(1000) == tuple(n for n in SANDBOX_LAYERS if n != "memory-cgroup")


def test_a_missing_required_layer_is_named_with_its_fix() -> None:
    with pytest.raises(PolicyError) as err:
        check_required(info_without("landlock"), default_required(0))
    assert "landlock" in err.value.message and "seccomp" not in err.value.message
    assert err.value.hint is not None and "CONFIG_SECURITY_LANDLOCK" in err.value.hint
    check_required(info_without("landlock"), ("seccomp",))  # an explicit opt-out passes
    check_required(info_without("network-namespace"), ("network-namespace",), allow_network=True)


def test_unknown_layer_names_in_the_policy_are_refused() -> None:
    with pytest.raises(PolicyError, match="unknown layer"):
        policy_from_mapping({"sandbox": {"require": ["landlock", "selinux"]}})


@pytest.fixture(scope="module")
def shared_model() -> Iterator[Path]:
    """An MLP in a folder every user can read (pytest's tmp_path is private to root)."""
    from support import kmodels

    folder = Path(tempfile.mkdtemp(prefix="kerasguard-test-shared-"))
    folder.chmod(0o755)
    path = folder / "mlp.keras"
    kmodels.mlp().save(path)
    path.chmod(0o644)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def user_env() -> dict[str, str]:
    """The environment of the scripts run as another user: nothing of root's but the source tree."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": f"{SRC}:{TESTS}",
        "KERAS_BACKEND": "jax",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }


def run_python(prefix: list[str], args: list[str], timeout: float) -> str:
    """Run this interpreter with ``args`` behind ``prefix`` (e.g. as the non-root user); its stdout."""
    done = subprocess.run(
        [*prefix, sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=user_env(),
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_script(prefix: list[str], model: Path, policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stdout = run_python(prefix, [str(SCRIPT), str(model), json.dumps(policies)], timeout=600)
    result: list[dict[str, Any]] = json.loads(stdout.strip().splitlines()[-1])
    return result


ENOSYS_WRAPPER = """\
import errno, os, sys
import pyseccomp as sc
f = sc.SyscallFilter(sc.ALLOW)
for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"):
    f.add_rule(sc.ERRNO(errno.ENOSYS), name)
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root: the ENOSYS case is about the root child")
def test_landlock_answering_enosys_refuses_the_load_unless_the_policy_opts_out(shared_model: Path) -> None:
    without_landlock = [n for n in SANDBOX_LAYERS if n != "landlock"]
    default, opted_out = run_script(
        [sys.executable, "-c", ENOSYS_WRAPPER],
        shared_model,
        [{"trust": SKIP_SCAN}, {"trust": SKIP_SCAN, "sandbox": {"require": without_landlock}}],
    )
    assert default["ok"] is False and default["type"] == "PolicyError", default
    assert "landlock" in default["message"] and "CONFIG_SECURITY_LANDLOCK" in default["hint"]
    event = default["event"]
    assert event["verdict"] == "refused" and event["failure"]["reason"] == "policy"
    assert "landlock" in event["sandbox"]["missing"]  # the ENOSYS environment is real
    assert event["child"] == {}  # refused before a child was started

    assert opted_out["ok"] is True, opted_out
    assert "landlock" not in opted_out["layers"] and "mount-namespace" in opted_out["layers"]
    event = opted_out["event"]
    assert event["verdict"] == "loaded"
    assert "sandbox.require" in event["unsafe_switches"]
    assert event["sandbox"]["not_required"] == ["landlock"]


@pytest.fixture(scope="module")
def test_user() -> str:
    """A real unprivileged account (created once on this machine when missing)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create and switch to a test user")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        # another test process may create it at the same moment: what counts is that it exists after
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=False,
        )
        pwd.getpwnam(TEST_USER)
    return TEST_USER


def as_user(user: str, stash: Path) -> list[str]:
    """Run as ``user`` in a private mount namespace where the interpreter under /root is reachable.

    The venv's interpreter lives under /root (mode 0700); the wrapper binds it into a tmpfs /root
    in its own mount namespace, so nothing changes on the host.
    """
    base = sys.base_prefix
    if not base.startswith("/root/"):
        return ["runuser", "-u", user, "--"]
    stash.mkdir(exist_ok=True)
    script = (
        f"mount --bind {base} {stash} && mount -t tmpfs -o mode=0755,size=1m kg-root /root && "
        f'mkdir -p {base} && mount --bind {stash} {base} && exec runuser -u {user} -- "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


@pytest.fixture(scope="module")
def non_root_load(shared_model: Path, test_user: str) -> dict[str, Any]:
    """One default-policy load (and predict) by the test user, as ``sandbox_loadscript`` reports it."""
    (result,) = run_script(
        as_user(test_user, shared_model.parent / "prefix"), shared_model, [{"trust": SKIP_SCAN}]
    )
    return result


@pytest.mark.slow
@pytest.mark.keras
def test_non_root_user_gets_every_layer_but_the_cgroup_or_is_refused(
    non_root_load: dict[str, Any], test_user: str
) -> None:
    result = non_root_load
    event = result["event"]
    assert event["sandbox"]["required"] == [n for n in SANDBOX_LAYERS if n != "memory-cgroup"]
    if not result["ok"]:
        # A kernel without unprivileged user namespaces: the load must be refused, never weakened.
        assert result["type"] == "PolicyError" and "namespace" in result["message"], result
        warnings.warn(f"this kernel gives a non-root user no namespaces: {result['message']}", stacklevel=1)
        return
    assert result["uid"] == pwd.getpwnam(test_user).pw_uid != 0
    assert result["shape"] == [2, 3]
    layers = result["layers"]
    for name in (
        "user-namespace",
        "network-namespace",
        "mount-namespace",
        "capabilities",
        "landlock",
        "seccomp",
    ):
        assert name in layers, (name, layers)
    assert "rss-monitor" in layers and "memory-cgroup" not in layers
    # In its own user namespace the child started with every capability; it must hold none.
    assert result["own_user_namespace"] is True
    assert int(result["cap_eff"], 16) == 0 and int(result["cap_bnd"], 16) == 0
    assert (
        "memory-cgroup" in event["sandbox"]["missing"] and "sandbox.require" not in event["unsafe_switches"]
    )


@pytest.mark.slow
@pytest.mark.keras
def test_sandbox_info_tells_a_non_root_user_what_a_load_does(
    non_root_load: dict[str, Any], shared_model: Path, test_user: str
) -> None:
    """What `kerasguard sandbox-info` says to that user is what the load above did."""
    prefix = as_user(test_user, shared_model.parent / "prefix")
    outputs = [
        run_python(prefix, ["-m", "kerasguard", "sandbox-info", "-f", fmt], timeout=120)
        for fmt in ("text", "json")
    ]
    text, doc = outputs[0], json.loads(outputs[1])
    layers = {layer["name"]: layer for layer in doc["layers"]}
    event = non_root_load["event"]["sandbox"]
    # What is required by default, and what is missing, are the load's own answers.
    required = [n for n in SANDBOX_LAYERS if n != "memory-cgroup"]
    assert doc["required"] == event["required"] == required
    assert doc["missing"] == event["missing"]
    assert f"required by default for this user: {', '.join(required)}\n" in text
    if not non_root_load["ok"]:  # no unprivileged user namespaces: both say the load is refused
        assert doc["refused_for"] and "REFUSED" in text
        return
    assert doc["refused_for"] == [] and "REFUSED" not in text
    # No memory cgroup for this user: the load's RSS monitor stands in, and sandbox-info says so.
    assert "memory-cgroup" in doc["missing"] and not layers["memory-cgroup"]["active"]
    assert doc["memory_limit"] == "rss-monitor" and "rss-monitor" in non_root_load["layers"]
    assert "MISSING  memory-cgroup" in text
    assert "memory-cgroup is not required for this user: the parent's RSS monitor" in text
    # Capabilities: the child's own user namespace gives it all of them; it drops them (CapEff 0).
    caps = layers["capabilities"]
    assert caps["active"] and "user namespace gives it every capability" in caps["detail"]
    assert "drops and locks them all" in caps["detail"] and caps["detail"] in text
    assert non_root_load["own_user_namespace"] is True and int(non_root_load["cap_eff"], 16) == 0
    # The parent-death signal is kept by seccomp, which this user's load applies.
    assert "seccomp keeps it set" in layers["parent-death"]["detail"] and "seccomp" in non_root_load["layers"]
