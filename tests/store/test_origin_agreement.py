"""One origin check: a source the store admits is one ``load_model`` accepts, and the other way round.

Regression: the two checks had drifted. The store canonicalised (default port dropped, surrounding
whitespace stripped) and compared raw path segments; ``load_model`` compared ports literally, decoded
percent-escapes before matching and allowed queries. So ``https://huggingface.co:443/acme/m`` was
admitted into the store and refused by ``load_model``, while ``https://huggingface.co/acme%2Fevil/m``
passed ``load_model``'s check and was refused by the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import StoreEnv
from kerasguard import load_model
from kerasguard.errors import KerasGuardError, StoreError, UntrustedSourceError
from kerasguard.loading.sources import check_url
from kerasguard.policy import Policy, Store, Trust
from kerasguard.store.sources import approve

PREFIX = "https://huggingface.co/acme"
# The same prefix in both keys: the store's approved sources and load_model's trusted sources.
POLICY = Policy(
    store=Store(sources=(PREFIX,)),
    trust=Trust(sources=(PREFIX,), allow_unsafe_skip_scan=True),  # the scan is not under test here
)

SOURCES = [
    ("https://huggingface.co/acme/digits", True),
    ("https://HuggingFace.co./acme//digits/", True),
    ("https://huggingface.co:443/acme/digits", True),  # the default port: store admitted, load refused
    ("https://huggingface.co/acme/digits\n", False),  # store stripped the newline, load refused
    ("https://huggingface.co/acme/digits?revision=evil", False),  # load allowed the query
    ("https://huggingface.co/acme%2Fevil/digits", False),  # load decoded %2F into a separator
    ("https://huggingface.co/ac%6De/digits", False),  # load decoded %6D before matching
    ("https://huggingface.co/acme/%00.keras", False),
    ("https://huggingface.co/acmecorp/digits", False),
    ("https://huggingface.co:8443/acme/digits", False),
    ("https://huggingface.co.evil.example/acme/digits", False),
    ("https://u@huggingface.co/acme/digits", False),
    ("https://huggingface.co/acme/../evil", False),
]


def load_accepts(source: str) -> bool:
    """Whether ``load_model`` accepts the origin (it then stops, because it does not download)."""
    try:
        load_model(source, policy=POLICY)
    except UntrustedSourceError:
        return False
    except KerasGuardError as exc:
        assert "does not download" in exc.message, exc.message
        return True
    raise AssertionError("load_model returned for a URL")


def store_admits(env: StoreEnv, model: Path, source: str, version: str) -> bool:
    try:
        info = env.store.push(env.token("publisher"), model, name="m", version=version, source=source)
    except (UntrustedSourceError, StoreError):
        return False
    assert info.status == "admitted", info.reason
    return True


def test_store_and_load_model_agree_on_every_origin(
    make_store: Callable[..., StoreEnv], tmp_path: Path
) -> None:
    env = make_store(policy=POLICY)
    model = tmp_path / "m.keras"
    model.write_bytes(b"not scanned in this test")
    verdicts = []
    for i, (source, trusted) in enumerate(SOURCES):
        verdicts.append((source, load_accepts(source), store_admits(env, model, source, f"1.{i}")))
    assert [(s, t, t) for (s, t) in SOURCES] == verdicts


def test_a_bad_prefix_entry_is_an_error_for_both() -> None:
    """A trusted entry that is not a valid URL is a policy error, never a silent no-match."""
    entry = ("https://u:p@hf.co/acme",)
    bad = Policy(store=Store(sources=entry), trust=Trust(sources=entry))
    with pytest.raises(KerasGuardError, match="entry"):
        load_model("https://hf.co/acme/m", policy=bad)
    with pytest.raises(StoreError, match="entry"):
        approve("https://hf.co/acme/m", bad.store.sources)


@settings(max_examples=400, deadline=None)
@given(
    st.from_regex(
        r"https://(huggingface\.co|HuggingFace\.CO\.?|hf\.co)(:443|:8443)?/(acme|ac%6De|acme%2F|acmecorp)"
        r"[a-z0-9/._%?#-]{0,24}",
        fullmatch=True,
    )
)
def test_the_two_checks_agree_on_any_https_url(source: str) -> None:
    """The functions behind both callers: the same verdict and the same canonical form, always."""
    try:
        loaded: str | None = check_url(source, POLICY)
    except UntrustedSourceError:
        loaded = None
    try:
        stored: str | None = approve(source, POLICY.store.sources)
    except (UntrustedSourceError, StoreError):
        stored = None
    assert loaded == stored
