"""Store URLs (database, blob bucket, witness) as they may appear in messages and the audit log.

A URL can carry a secret in two places: the password of ``user:password@`` and a query parameter
(``?password=``, an S3 ``secret_key``, a token). Both are replaced by ``***``; everything else is kept,
so the message still says where the store looked.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

# a query parameter whose name contains one of these holds (or may hold) a secret
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|credential|key|signature|auth", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even parseable: show nothing of it that could be a secret
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://***" if scheme else "***"
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            netloc = f"{creds.split(':', 1)[0]}:***@{host}"
    query = "&".join(_redacted_param(piece) for piece in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redacted_param(piece: str) -> str:
    name, sep, value = piece.partition("=")
    if sep and value and _SECRET_PARAM.search(unquote(name)):
        return f"{name}=***"
    return piece
