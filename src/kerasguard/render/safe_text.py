"""Outside text for the CLI: :func:`printable` (from :mod:`kerasguard.escaping`) and :func:`markup_safe`.

Two things can go wrong when text from a model file, a child process, a policy path or a user argument
reaches a terminal: control and format characters (escaped by :func:`printable`, see
:mod:`kerasguard.escaping`) and rich markup (``[/]`` or ``[link=...]`` in a layer name is read as a tag,
or crashes rich with ``MarkupError``). Every CLI command and text renderer sends outside text through
:func:`printable` (plain printing) or :func:`markup_safe` (inside rich markup).
"""

from __future__ import annotations

from rich.markup import escape as _escape_markup

from kerasguard.escaping import printable


def markup_safe(value: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """:func:`printable`, then escaped so rich markup shows it literally (``[/]`` stays ``[/]``)."""
    return _escape_markup(printable(value, keep_newlines=keep_newlines, limit=limit))


__all__ = ["markup_safe", "printable"]
