"""Where a model came from: canonical source URLs matched against the policy's approved sources.

A source is a URL (``https://huggingface.co/org/repo``, ``s3://bucket/models``, ``git+https://...``),
never a filesystem path: client-supplied paths are not stored as artifact locations (MLflow's artifact
URI traversals started that way). Matching is on the canonical form (lowercase scheme and host,
default port dropped, no credentials, no ``.``/``..`` or encoded separators, no query or fragment)
and on whole path segments, so ``https://hf.co/org`` approves ``https://hf.co/org/model`` but not
``https://hf.co/organisation`` or ``https://hf.co.evil.example/org``.
"""

from __future__ import annotations

from kerasguard.errors import PolicyError, StoreError
from kerasguard.loading.origin import MalformedSourceError, canonical_url, check_origin

SETTING = "[store] sources"


def canonical_source(text: str) -> str:
    """The canonical form of a source URL (:func:`kerasguard.loading.origin.canonical_url`); StoreError if
    none."""
    try:
        return canonical_url(text)
    except MalformedSourceError as exc:
        raise StoreError(f"model source: {exc.message}") from None


def approve(source: str, approved: tuple[str, ...]) -> str:
    """The canonical source if an approved prefix covers it; else UntrustedSourceError (deny by default).

    The match is :func:`kerasguard.loading.origin.check_origin`, the one ``load_model`` uses too; a malformed
    source is a StoreError here, as the store has always reported it.
    """
    try:
        return check_origin(source, approved, setting=SETTING)
    except MalformedSourceError as exc:
        raise StoreError(
            f"model source: {exc.message}; the store records where a model came from as a URL "
            "(e.g. https://huggingface.co/org/repo), never a local path"
        ) from None
    except PolicyError as exc:  # a bad [store] sources entry: refused (and audited) like any bad push
        raise StoreError(exc.message) from None
