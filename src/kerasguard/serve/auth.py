"""Bearer API keys -> tenant, through the store's invoker keys, with a short cache.

A key is checked against the store at most once per ``key_cache_seconds`` (results, good and bad, are
cached under the key's SHA-256, never the key itself), so a revoked key stops working within that time
and a flood of requests does not become a flood of database reads. The cache is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kerasguard.serve.errors import ApiError, unavailable
from kerasguard.store.rbac import Principal

MAX_CACHED = 10_000


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str


class KeyCache:
    def __init__(self, check: Callable[[str], Principal | None], ttl_s: float) -> None:
        self._check = check
        self._ttl = ttl_s
        self._cache: OrderedDict[bytes, tuple[float, Caller | None]] = OrderedDict()

    async def caller(self, authorization: str | None) -> Caller:
        key = bearer(authorization)
        digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            caller = hit[1]
        else:
            try:
                principal = await asyncio.get_running_loop().run_in_executor(None, self._check, key)
            except Exception:  # the store cannot answer: fail closed, nothing cached
                raise unavailable("auth_unavailable", "authentication is unavailable; retry later") from None
            caller = None if principal is None else Caller(principal.namespace, principal.token_id)
            self._cache[digest] = (now + self._ttl, caller)
            self._cache.move_to_end(digest)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        if caller is None:
            raise ApiError(401, "unauthenticated", "invalid, unknown or revoked API key")
        return caller


def bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "unauthenticated", "an API key is required (Authorization: Bearer <key>)")
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 200:
        raise ApiError(401, "unauthenticated", "an API key is required (Authorization: Bearer <key>)")
    return value
