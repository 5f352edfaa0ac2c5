"""Package exports resolved on first use (PEP 562): importing a package costs only what it runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str,
    table: dict[str, str],
    namespace: dict[str, Any],
    on_import_error: Callable[[str, ImportError], Exception] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``table`` maps each lazy name to the module
    defining it. A resolved name is stored in ``namespace`` so the next lookup is a plain global."""

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            if on_import_error is None:
                raise
            raise on_import_error(name, exc) from None
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *table})

    return getattr_, dir_
