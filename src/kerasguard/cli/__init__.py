"""Command-line interface: thin wrappers that parse, call the library, render, exit.

Every run builds the whole command tree (typer reads every command's signature), so command modules keep
their module level light and import what a command needs inside it. They also do without
``from __future__ import annotations``: typer evaluates the annotations of all the commands on every run,
and string annotations would be compiled and evaluated there (twice each) instead of once at import.
"""

from __future__ import annotations

# Command modules register themselves on the shared app when imported.
from kerasguard.cli import audit as _audit  # noqa: F401
from kerasguard.cli import data as _data  # noqa: F401
from kerasguard.cli import golden as _golden  # noqa: F401
from kerasguard.cli import inspect as _inspect  # noqa: F401
from kerasguard.cli import integrity as _integrity  # noqa: F401
from kerasguard.cli import load as _load  # noqa: F401
from kerasguard.cli import probe as _probe  # noqa: F401
from kerasguard.cli import robustness as _robustness  # noqa: F401
from kerasguard.cli import scan as _scan  # noqa: F401
from kerasguard.cli import serve as _serve  # noqa: F401
from kerasguard.cli import store as _store  # noqa: F401
from kerasguard.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
