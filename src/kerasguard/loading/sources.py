"""Trusted sources: is this model path or URL one the policy lets us load from?

A path is opened first and judged by what was opened (``/proc/self/fd`` names the real file), so
a symlink or a ``..`` cannot lead the check one way and the load another. URLs must be ``https``
on an allowlisted host and path prefix, without user info, fragments or dot segments; downloading
itself is not implemented, so an allowed URL still ends in a clear error.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kerasguard.errors import KerasGuardError, UntrustedSourceError
from kerasguard.loading.origin import check_origin, is_url
from kerasguard.policy import Policy

LOAD_SCHEMES = frozenset({"https"})  # a load source is fetched: only https (docs/decisions.md 36)
# What load_model loads (a path source must end in one); the scanner reads more formats, see
# formats.sniff.SCANNED_BY_NAME_SUFFIXES.
LOADABLE_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class OpenedSource:
    """A model file opened once; ``fd`` is the only handle the loader reads it through."""

    display: str
    canonical: Path
    fd: int
    size: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _prefixes(policy: Policy) -> tuple[list[Path], list[str]]:
    """Policy source entries split into resolved path prefixes and URL prefixes."""
    base = Path(policy.source).parent if Path(policy.source).is_file() else Path.cwd()
    paths: list[Path] = []
    urls: list[str] = []
    for entry in policy.trust.sources:
        if is_url(entry):
            urls.append(entry)
        else:
            p = Path(entry).expanduser()
            paths.append(Path(os.path.realpath(p if p.is_absolute() else base / p)))
    return paths, urls


def check_url(url: str, policy: Policy) -> str:
    """Check a URL source against the policy's https prefixes; returns it canonical, raises if not allowed.

    The match is :func:`kerasguard.loading.origin.check_origin`, the one store admission uses too.
    """
    _, allowed = _prefixes(policy)
    return check_origin(url, allowed, setting="[trust] sources", schemes=LOAD_SCHEMES)


def open_source(source: str | os.PathLike[str], policy: Policy) -> OpenedSource:
    """Open a local model file the policy trusts; raise UntrustedSourceError otherwise.

    URLs are checked (so the error says whether the policy would allow them) and then refused,
    because kerasguard does not download models.
    """
    raw = os.fspath(source)
    if not isinstance(raw, str):
        raise UntrustedSourceError("model source must be a text path")
    if is_url(raw):
        normal = check_url(raw, policy)
        raise KerasGuardError(
            f"source {normal!r} is an allowed URL, but kerasguard does not download models",
            hint="download it yourself, then load the local file with a digest or signature check",
        )
    if "\x00" in raw:
        raise UntrustedSourceError("model path contains a NUL byte")
    path_prefixes, _ = _prefixes(policy)
    if path_prefixes and ".." in Path(raw).parts:
        raise UntrustedSourceError(f"source {raw!r} contains a '..' component; give a canonical path")
    try:
        fd = os.open(raw, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise KerasGuardError(f"cannot open model {raw!r}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise KerasGuardError(
                f"model source {raw!r} is {kind}; load_model takes a .keras or .h5 file",
            )
        try:
            canonical = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError as exc:  # no /proc: we cannot tell what was opened, so trust nothing
            raise UntrustedSourceError(f"cannot resolve the opened file {raw!r}: {exc.strerror}") from None
        if path_prefixes and not any(canonical.is_relative_to(p) for p in path_prefixes):
            via = " (through a symlink)" if os.path.realpath(raw) != os.path.abspath(raw) else ""
            raise UntrustedSourceError(
                f"source {raw!r} resolves to {str(canonical)!r}{via}, outside the trusted prefixes "
                f"({', '.join(str(p) for p in path_prefixes)})",
            )
        if canonical.suffix.lower() not in LOADABLE_SUFFIXES:
            raise KerasGuardError(
                f"model source {raw!r} is not a .keras, .h5 or .hdf5 file",
                hint="sandboxed loading supports Keras v3 archives and legacy HDF5 models",
            )
    except BaseException:
        os.close(fd)
        raise
    return OpenedSource(display=raw, canonical=canonical, fd=fd, size=info.st_size)
