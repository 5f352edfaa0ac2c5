"""The typer application shared by every command module, and the one place errors are printed."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from kerasguard.errors import KerasGuardError
from kerasguard.render.safe_text import markup_safe, printable

if TYPE_CHECKING:
    from typer._click import Context  # typer < 0.29 vendors click (decision 30)

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

# Piped output (CI logs) is never hard-wrapped: log parsers read one message per line.
PIPED_WIDTH = 1 << 16

# A missing optional module names the extra that installs it.
EXTRA_FOR_MODULE = {
    "cryptography": "sign",
    "blake3": "sign",
    "sqlalchemy": "store",
    "alembic": "store",
    "psycopg": "store",
    "fsspec": "store",
    "s3fs": "s3",
    "keras": "keras",
    "jax": "keras",
    "seccomp": "sandbox",
    "pyseccomp": "sandbox",
    "sklearn": "ml",
    "PIL": "ml",
    "pyarrow": "ml",
    "matplotlib": "ml",
    "cleanlab": "cleanlab",
    "redis": "witness",
    "fastapi": "serve",
    "uvicorn": "serve",
    "jinja2": "serve",
    "prometheus_client": "serve",
    "orjson": "serve",
    "torch": "torch",
}


def _console(*, stderr: bool) -> Console:
    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:
        con.width = PIPED_WIDTH
    return con


# A store API token is ``kgs_<id>_<secret>`` (kerasguard.store.rbac.TOKEN_RE; the store is not imported
# here: a plain install has no store extra). The secret must never reach a terminal or a log, whatever put
# the token in a message (an argument given in the wrong place or to the wrong option, a typo).
_TOKEN_LIKE = re.compile(r"kgs_[A-Za-z0-9_-]+")
_TOKEN_ID = re.compile(r"kgs_([0-9a-f]{16})(?:_|$)")


def _hidden(match: re.Match[str]) -> str:
    text = match.group(0)
    known = _TOKEN_ID.match(text)
    if known is None:
        return "kgs_<hidden>"
    return text if len(text) == len("kgs_") + 16 else f"kgs_{known.group(1)}_<secret hidden>"


def hide_token_secrets(text: str) -> str:
    """``text`` with the secret of anything token-shaped replaced: the public id (16 hex characters) is
    kept, so the token can still be named (``kgs_0123456789abcdef_<secret hidden>``)."""
    return _TOKEN_LIKE.sub(_hidden, text)


def error_text(exc: BaseException) -> str:
    """One clear message for any exception: a KerasGuardError's diagnostics, a missing extra, or the type.

    Token secrets in it are hidden (:func:`hide_token_secrets`)."""
    return hide_token_secrets(_error_text(exc))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KerasGuardError):
        text = printable(exc.message, keep_newlines=True)
        return f"{text}\nhint: {printable(exc.hint)}" if exc.hint else text
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        extra = EXTRA_FOR_MODULE.get(top)
        if extra:
            return (
                f"this command needs the '{extra}' extra ({printable(top)} is not installed)\n"
                f"hint: pip install 'kerasguard[{extra}]'"
            )
        return f"a required module is missing: {printable(exc.name)}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{printable(exc.filename)}: " if exc.filename else ""
        return f"{where}{printable(exc.strerror)}"
    detail = printable(str(exc))  # one line, whatever the exception says
    return (
        f"unexpected {type(exc).__name__}: {detail} (a kerasguard bug: please report it; "
        "KERASGUARD_TRACEBACK=1 shows the traceback)"
    )


def print_error(message: str | BaseException, *, label: str = "error", style: str = "bold red") -> None:
    """Print ``label: message`` on stderr; the message is escaped (never read as markup)."""
    text = (
        error_text(message)
        if isinstance(message, BaseException)
        else hide_token_secrets(printable(message, keep_newlines=True))
    )
    console.print(f"[{style}]{markup_safe(label)}:[/] {markup_safe(text, keep_newlines=True)}")


def _is_cli_control(exc: BaseException) -> bool:
    """typer/click's own exceptions (Exit, Abort, usage errors), from whichever click typer uses."""
    return isinstance(exc, typer.Exit | typer.Abort) or type(exc).__module__.split(".")[0] in (
        "click",
        "typer",
    )


class GuardedGroup(TyperGroup):
    """The root command group: any exception a command lets through is one clean line and exit 2.

    Set ``KERASGUARD_TRACEBACK=1`` to see the traceback of an unexpected error.
    """

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:
            if _is_cli_control(exc):  # exits, aborts and usage errors: typer prints and exits
                if isinstance(getattr(exc, "message", None), str):  # "unexpected extra argument (kgs_...)"
                    exc.message = hide_token_secrets(exc.message)  # type: ignore[attr-defined]
                raise
            if os.environ.get("KERASGUARD_TRACEBACK") and not isinstance(exc, KerasGuardError):
                raise
            print_error(exc)
            raise typer.Exit(EXIT_ERROR) from None


def _piped_options() -> dict[str, Any]:
    """Usage errors and help as plain click text when stderr is not a terminal (typer's boxes wrap at 80)."""
    try:
        piped = not os.isatty(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):
        piped = True
    return {"rich_markup_mode": None} if piped else {}


app = typer.Typer(
    name="kerasguard",
    cls=GuardedGroup,
    help="Security gate for Keras models: scan, verify, load safely, audit the stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    **_piped_options(),
)

console = _console(stderr=True)
stdout = _console(stderr=False)


def _version(value: bool) -> None:
    if value:
        from kerasguard._version import __version__

        sys.stdout.write(f"kerasguard {__version__}\n")
        raise typer.Exit(EXIT_CLEAN)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Security gate for Keras models: scan, verify, load safely, audit the stack."""


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class TextOrJson(StrEnum):
    """For commands whose output has no SARIF form (typer rejects ``-f sarif`` with exit 2)."""

    text = "text"
    json = "json"


class FailOn(StrEnum):
    """A severity threshold, listed in ``--help``."""

    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a KerasGuardError into a clear message and exit code 2 (never a traceback).

    The root group does the same for anything else (:class:`GuardedGroup`).
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except KerasGuardError as exc:
            print_error(exc)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def say(text: object, *, err: bool = True) -> None:
    """Print outside-derived text as is (escaped, never read as markup): stderr by default."""
    (console if err else stdout).print(printable(text, keep_newlines=True), markup=False, highlight=False)


def write_output(text: str, output: str | os.PathLike[str] | None, *, styled: bool = False) -> None:
    """Write a rendered report to a file or to stdout.

    Control characters are escaped unless ``styled`` (the renderer escaped its content and added the
    colours itself). A file that cannot be written is a KerasGuardError (exit 2).
    """
    if not styled:
        text = printable(text, keep_newlines=True)
    if not text.endswith("\n"):
        text += "\n"
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise KerasGuardError(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
