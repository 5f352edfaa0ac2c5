"""The origin check: is a source URL under one of the policy's trusted prefixes?

One check for both callers, so a policy cannot admit a model into the store that ``load_model`` then
refuses, or the other way round: ``load_model`` (``[trust] sources``, https only, because a load
source is something a client would fetch) and store admission (``[store] sources``, any URL scheme,
because it records where a model came from). Both match the same canonical form on whole path
segments; what stays theirs is documented in docs/decisions.md (entry 33): which policy key, which
schemes, and what an empty list means for local files (``load_model`` only).

Canonical form: lowercase scheme and host, trailing dot and default port dropped, no credentials,
query or fragment, no ``.``/``..``, backslash, control character or percent-encoded separator in any
segment (also percent-encoded), empty segments dropped. Matching compares segments as written, so
``https://hf.co/org`` covers ``https://hf.co/org/model`` but not ``https://hf.co/organisation``,
``https://hf.co.evil.example/org`` or ``https://hf.co/o%72g/model``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from urllib.parse import unquote, urlsplit

from kerasguard.errors import PolicyError, UntrustedSourceError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEME_NAME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$")
_DEFAULT_PORTS = {"https": 443, "http": 80, "git+https": 443, "ssh": 22}
MAX_SOURCE_CHARS = 2048


class MalformedSourceError(UntrustedSourceError):
    """A source that is not a URL in a form that can be matched unambiguously."""


def is_url(text: str) -> bool:
    """``scheme://...``: a URL source rather than a local path."""
    return bool(_SCHEME.match(text))


def canonical_url(text: str, *, schemes: Collection[str] | None = None) -> str:
    """The canonical form of a source URL; MalformedSourceError when it has none.

    ``schemes``: the only schemes accepted (lowercase), or None for any but ``file``.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_SOURCE_CHARS:
        raise MalformedSourceError(f"a source URL must be text of 1..{MAX_SOURCE_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise MalformedSourceError(f"source {text!r} contains control characters or spaces")
    if "\\" in text:
        raise MalformedSourceError(f"source {text!r}: backslashes are not accepted")
    if not is_url(text):
        raise MalformedSourceError(f"source {text!r} is not a URL (scheme://host/path)")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if schemes is not None and scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise MalformedSourceError(f"source {text!r}: only {allowed} URLs can be trusted, not {scheme!r}")
    if not _SCHEME_NAME.match(scheme) or scheme == "file":
        raise MalformedSourceError(f"source {text!r} has an unsupported scheme {scheme!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise MalformedSourceError(f"source {text!r}: URLs with user info (credentials) are not accepted")
    if parts.fragment or text.endswith("#"):
        raise MalformedSourceError(f"source {text!r}: URLs with a fragment are not accepted")
    if parts.query or text.endswith("?"):
        raise MalformedSourceError(f"source {text!r}: URLs with a query are not accepted")
    host = (parts.hostname or "").rstrip(".")
    if not _HOST.match(host):
        raise MalformedSourceError(f"source {text!r} has no valid host")
    try:
        port = parts.port
    except ValueError:
        raise MalformedSourceError(f"source {text!r} has an invalid port") from None
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    segments = []
    for segment in parts.path.split("/"):
        if segment == "":
            continue
        decoded = unquote(segment)
        if decoded in (".", "..") or any(c in decoded for c in "/\\%") or not decoded.isprintable():
            raise MalformedSourceError(
                f"source {text!r}: dot segments or encoded separators and control characters "
                "in the path are not accepted"
            )
        segments.append(segment)
    path = "/" + "/".join(segments) if segments else ""
    return f"{scheme}://{netloc}{path}"


def check_origin(
    source: str,
    trusted: Iterable[str],
    *,
    setting: str,
    schemes: Collection[str] | None = None,
) -> str:
    """The canonical ``source`` if a ``trusted`` prefix covers it on whole segments; raise otherwise.

    Deny by default: no trusted prefix, no origin. ``setting`` names the policy key in messages
    (``[trust] sources``); a prefix entry that is not a valid URL is a PolicyError naming it.
    MalformedSourceError (an UntrustedSourceError) for a source with no canonical form,
    UntrustedSourceError for one under no prefix.
    """
    canonical = canonical_url(source, schemes=schemes)
    prefixes = []
    for entry in trusted:
        try:
            prefixes.append(canonical_url(entry))
        except MalformedSourceError as exc:
            raise PolicyError(f"{setting} entry {entry!r} is not a valid source URL: {exc.message}") from None
    if not prefixes:
        raise UntrustedSourceError(
            f"source {canonical} is not approved: {setting} lists no approved sources",
            hint=f"add the repository or host to {setting} in the policy if it is trusted",
        )
    for prefix in prefixes:
        if canonical == prefix or canonical.startswith(prefix + "/"):
            return canonical
    raise UntrustedSourceError(
        f"source {canonical} is not under any trusted prefix of {setting}",
        hint=f"trusted: {', '.join(prefixes)}",
    )
