"""Rate limits per key and per tenant, in requests and input elements per second (``limits``).

Counters live in memory for one process or in Redis for several gateway processes (the limit then
holds across all of them). If the storage cannot answer, the policy decides: ``deny`` (the default,
fail closed: 503 ``limiter_unavailable``) or ``allow`` (serve without limits, logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from kerasguard.policy import Serve
from kerasguard.serve.errors import ApiError, unavailable

log = logging.getLogger("kerasguard.serve.ratelimit")
STORAGE_TIMEOUT_S = 1.0


def make_storage(uri: str) -> Storage:
    """An asyncio storage for ``memory://`` or ``redis://`` (redis-py, with short timeouts)."""
    if uri.startswith("memory://"):
        storage = storage_from_string("async+memory://")
    else:
        storage = storage_from_string(
            "async+" + uri,
            implementation="redispy",
            socket_timeout=STORAGE_TIMEOUT_S,
            socket_connect_timeout=STORAGE_TIMEOUT_S,
        )
    assert isinstance(storage, Storage)
    return storage


class RateLimits:
    def __init__(self, policy: Serve, namespace: str = "kgserve") -> None:
        self.fail_open = policy.on_storage_error == "allow"
        self.storage = make_storage(policy.rate_limit_storage)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.prefix = namespace
        self.key_requests = RateLimitItemPerSecond(policy.key_requests_per_second, namespace=namespace)
        self.tenant_requests = RateLimitItemPerSecond(policy.tenant_requests_per_second, namespace=namespace)
        self.key_elements = RateLimitItemPerSecond(policy.key_elements_per_second, namespace=namespace)
        self.tenant_elements = RateLimitItemPerSecond(policy.tenant_elements_per_second, namespace=namespace)

    async def request(self, tenant: str, key_id: str) -> None:
        """Count one request against the key and the tenant (one round trip to Redis); 429 when over."""
        await self._both(
            self._hit(self.key_requests, ("key", key_id), 1, "rate_limited_key"),
            self._hit(self.tenant_requests, ("tenant", tenant), 1, "rate_limited_tenant"),
        )

    async def elements(self, tenant: str, key_id: str, count: int) -> None:
        await self._both(
            self._hit(self.key_elements, ("key-elements", key_id), count, "rate_limited_key"),
            self._hit(self.tenant_elements, ("tenant-elements", tenant), count, "rate_limited_tenant"),
        )

    @staticmethod
    async def _both(first: Awaitable[None], second: Awaitable[None]) -> None:
        results = await asyncio.gather(first, second, return_exceptions=True)
        for result in results:  # the key's verdict first, then the tenant's
            if isinstance(result, BaseException):
                raise result

    async def _hit(self, item: RateLimitItemPerSecond, ids: tuple[str, str], cost: int, reason: str) -> None:
        if cost > item.amount:
            raise ApiError(429, reason, "the request is larger than the rate limit allows", retry_after=1)
        try:
            ok = await self.limiter.hit(item, *ids, cost=cost)
        except Exception as exc:  # storage down or timing out
            if self.fail_open:
                log.warning(
                    "rate-limit storage unavailable (%s): allowing (on_storage_error=allow)",
                    type(exc).__name__,
                )
                return
            raise unavailable("limiter_unavailable", "rate limiting is unavailable; retry later") from None
        if not ok:
            raise ApiError(429, reason, "rate limit exceeded; retry later", retry_after=1)
