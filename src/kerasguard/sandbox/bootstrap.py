"""How a sandbox child process starts: ``python -I -c BOOTSTRAP ROOT PARENT_PID ...``.

The very first thing the child does is ask the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), then check that its parent is still the process that started it: if the
parent died before that call, the child was already re-parented and exits at once.

The child must confine itself before anything starts threads (NumPy, the backend), and importing
``kerasguard`` normally runs the package ``__init__``, which pulls in the scanner and NumPy. So
the bootstrap registers bare package objects for ``kerasguard`` and ``kerasguard.sandbox``: only
the submodules the child actually imports are executed, in the order it chooses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BOOTSTRAP = """\
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0) != 0 or os.getppid() != int(sys.argv[2]):
    os._exit(4)
import types
root = sys.argv[1]
sys.path.insert(0, root)
for name in ("kerasguard", "kerasguard.sandbox"):
    package = types.ModuleType(name)
    package.__path__ = [root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from kerasguard.sandbox.%s import main
sys.exit(main(sys.argv[3:]))
"""


def package_root() -> str:
    """The sys.path entry that holds the ``kerasguard`` package."""
    return str(Path(__file__).resolve().parents[2])


def command(module: str, *args: str, python: str | None = None, site: bool = True) -> list[str]:
    """The argv that runs ``kerasguard.sandbox.<module>.main(args)`` in an isolated interpreter."""
    flags = ["-I"] if site else ["-I", "-S"]
    interpreter = python or sys.executable
    return [interpreter, *flags, "-c", BOOTSTRAP % module, package_root(), str(os.getpid()), *args]
