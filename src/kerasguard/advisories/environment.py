"""What is installed: distributions found by reading metadata files, never by importing packages.

The running environment is read from ``sys.path``; another interpreter (``--python``) is asked only for its
search path, with ``-I -S`` so that neither site-packages nor ``.pth`` files run; its ``*.dist-info`` and
``*.egg-info`` metadata is then read here. The first distribution of a name on the path wins, as imports do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.utils import canonicalize_name

from kerasguard.advisories.hdf5lib import installed_hdf5
from kerasguard.distmeta import metadata_file, name_from_folder, read_header
from kerasguard.errors import AuditError

PYTHON_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Package:
    """One distribution to audit and where it was found."""

    name: str
    version: str
    source: str  # metadata path, or requirements file
    line: int | None = None
    hdf5_version: str | None = None
    hdf5_source: str | None = None

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Note:
    """Something that could not be audited, and why. Never silent, never fatal."""

    source: str
    message: str
    package: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


@dataclass
class Inventory:
    """Packages to audit, things that could not be audited (notes), and errors that stop the audit."""

    target: str
    packages: list[Package] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    markers: dict[str, str] = field(default_factory=dict)


def read_site_dirs(dirs: Iterable[Path], target: str, *, only: Collection[str] | None = None) -> Inventory:
    """Every distribution in ``dirs`` (in path order); ``only`` limits reading to these canonical names."""
    inv = Inventory(target=target)
    seen: dict[str, Package] = {}
    visited: set[Path] = set()
    for folder in dirs:
        try:
            real = folder.resolve()
            if real in visited or not real.is_dir():
                continue
            visited.add(real)
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        for entry in entries:
            meta = metadata_file(entry)
            if meta is None:
                continue
            guess = canonicalize_name(name_from_folder(entry))
            if only is not None and guess not in only:
                continue
            _read_distribution(entry, meta, folder, guess, inv, seen)
    return inv


def _read_distribution(
    entry: Path, meta: Path, folder: Path, guess: str, inv: Inventory, seen: dict[str, Package]
) -> None:
    try:
        header = read_header(meta)
    except OSError as exc:
        inv.notes.append(Note(str(entry), f"metadata unreadable: {exc.strerror or exc}", guess))
        return
    name, version = header.get("name"), header.get("version")
    if not name or not version:
        missing = "Name" if not name else "Version"
        inv.notes.append(Note(str(meta), f"metadata has no {missing} field: not auditable", name or guess))
        return
    key = canonicalize_name(name)
    if key in seen:
        if seen[key].version != version:
            inv.notes.append(
                Note(
                    str(entry),
                    f"{name} {version} is shadowed by {seen[key].version} earlier on the path",
                    key,
                )
            )
        return
    hdf5_version = hdf5_source = None
    if key == "h5py":
        hdf5_version, hdf5_source = installed_hdf5(folder, version)
    pkg = Package(name, version, str(entry), hdf5_version=hdf5_version, hdf5_source=hdf5_source)
    seen[key] = pkg
    inv.packages.append(pkg)


def marker_environment() -> dict[str, str]:
    """PEP 508 marker values of the running interpreter."""
    return {k: str(v) for k, v in default_environment().items()}


def current_environment(*, only: Collection[str] | None = None) -> Inventory:
    """The running interpreter's distributions, from its ``sys.path``."""
    dirs = [Path(p) if p else Path.cwd() for p in sys.path]
    inv = read_site_dirs(dirs, f"running Python {sys.version.split()[0]} ({sys.executable})", only=only)
    inv.markers = marker_environment()
    return inv


# Runs in the audited interpreter with -I -S: stdlib only, nothing from site-packages, no .pth files.
_PROBE = r"""
import json, os, platform, site, sys, sysconfig
# -S skips site.venv(), so find pyvenv.cfg the way site.py does: next to or above the executable
exe_dir = os.path.dirname(os.path.abspath(sys.executable))
venv_prefix = None
system = False
for cfg in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
    if os.path.isfile(cfg):
        venv_prefix = os.path.dirname(cfg)
        with open(cfg) as fh:
            for line in fh:
                k, _, v = line.partition("=")
                if k.strip().lower() == "include-system-site-packages" and v.strip().lower() == "true":
                    system = True
        break
prefixes = [venv_prefix] if venv_prefix else [sys.prefix]
if venv_prefix is None or system:
    prefixes.append(sys.base_prefix)
sites = site.getsitepackages(prefixes) if hasattr(site, "getsitepackages") else []
venv = venv_prefix is not None
user = site.getusersitepackages() if (not venv or system) and hasattr(site, "getusersitepackages") else None
paths = sysconfig.get_paths() if not venv else {}
impl = sys.implementation
iv = impl.version
impl_version = "%d.%d.%d" % (iv.major, iv.minor, iv.micro)
if iv.releaselevel != "final":
    impl_version += iv.releaselevel[0] + str(iv.serial)
print(json.dumps({
    "executable": sys.executable, "version": platform.python_version(), "sys_path": sys.path,
    "site": sites + [paths.get("purelib"), paths.get("platlib")], "user_site": user, "venv": venv_prefix,
    "markers": {
        "implementation_name": impl.name, "implementation_version": impl_version, "os_name": os.name,
        "platform_machine": platform.machine(), "platform_release": platform.release(),
        "platform_system": platform.system(), "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
    },
}))
"""


@dataclass(frozen=True)
class Interpreter:
    """What another interpreter says about itself (it never imports a third-party package to say it)."""

    executable: str
    version: str
    search_path: tuple[Path, ...]
    markers: dict[str, str]


def probe_interpreter(python: str | os.PathLike[str], timeout: float = PYTHON_TIMEOUT_S) -> Interpreter:
    """Ask ``python`` for its search path. Raises AuditError with a clear message when it cannot."""
    path = Path(python)
    shown = str(python)
    if not path.exists():
        raise AuditError(f"--python {shown}: no such file", hint="give the path of a python executable")
    if path.is_dir():
        raise AuditError(f"--python {shown}: is a directory", hint="give e.g. .venv/bin/python")
    if not os.access(path, os.X_OK):
        raise AuditError(f"--python {shown}: not executable")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(
            [str(path), "-I", "-S", "-c", _PROBE],
            capture_output=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AuditError(f"--python {shown}: no answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise AuditError(f"--python {shown}: cannot run it: {exc.strerror or exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise AuditError(
            f"--python {shown}: exited with status {done.returncode}: {tail[0][:200]}",
            hint="is it a Python 3 interpreter?",
        )
    return _parse_probe(done.stdout, shown)


def _parse_probe(output: bytes, shown: str) -> Interpreter:
    try:
        data = json.loads(output.decode("utf-8"))
        search = [p for p in data["sys_path"] if isinstance(p, str) and p]
        sites = [p for p in data["site"] if isinstance(p, str) and p]
        user = data.get("user_site")
        markers = {str(k): str(v) for k, v in data["markers"].items()}
        executable, version = str(data["executable"]), str(data["version"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AuditError(f"--python {shown}: did not answer like a Python interpreter") from None
    dirs = [Path(p) for p in search]
    extra = [*sites, user] if isinstance(user, str) else sites
    for site_dir in extra:
        for folder in (Path(site_dir), *_pth_dirs(Path(site_dir))):
            if folder not in dirs:
                dirs.append(folder)
    return Interpreter(executable, version, tuple(dirs), markers)


def _pth_dirs(site_dir: Path) -> list[Path]:
    """Directories that static ``.pth`` lines add (``import`` lines are code and are not run)."""
    out: list[Path] = []
    try:
        pth_files = sorted(site_dir.glob("*.pth"))
    except OSError:
        return out
    for pth in pth_files:
        try:
            lines = pth.read_text("utf-8", errors="replace").splitlines()[:1000]
        except OSError:
            continue
        for line in lines:
            text = line.strip()
            if not text or text.startswith(("#", "import ", "import\t")):
                continue
            folder = (site_dir / text).resolve() if not os.path.isabs(text) else Path(text)
            if folder.is_dir():
                out.append(folder)
    return out


def interpreter_environment(python: str | os.PathLike[str]) -> Inventory:
    """The distributions another interpreter would see."""
    info = probe_interpreter(python)
    inv = read_site_dirs(info.search_path, f"Python {info.version} ({info.executable})")
    inv.markers = info.markers
    return inv


def site_environment(dirs: Sequence[Path]) -> Inventory:
    """Distributions in explicit site-packages folders (``--site-packages``)."""
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise AuditError(f"--site-packages: not a directory: {', '.join(missing)}")
    inv = read_site_dirs(dirs, "site-packages " + ", ".join(str(d) for d in dirs))
    inv.markers = marker_environment()
    return inv
