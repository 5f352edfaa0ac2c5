"""Rate limits per key and per tenant, in requests and input elements per second (``limits``).

Counters live in memory for one process or in Redis for several gateway processes (the limit then
holds across all of them). Limits are ``limits`` fixed one-second windows. With Redis, counters are
updated in one round trip: one script that does for each counter what ``limits``' own fixed-window
script does for one (INCRBY, EXPIRE on the first hit), on the keys ``limits`` would use; ``limits``'
asyncio Redis client costs ~0.3 ms of CPU per command. A predict request costs one round trip: its
request and its elements, for the key and the tenant, are counted together once the body is parsed
(``predict``); before that, a per-process counter refuses a key that this process alone has already seen
over its request rate (``precheck``: a lower bound of the shared count, so it never refuses a request
the shared limit would allow). A predict refused before it was counted (bad body, unknown model) is
still counted as a request. If the storage cannot answer, the policy decides: ``deny`` (the default,
fail closed: 503 ``limiter_unavailable``, and ``/readyz`` answers 503 so that a load balancer sends the
traffic elsewhere) or ``allow`` (serve without limits). Either way the change of state is logged once,
when the storage stops answering and when it answers again, not once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from kerasguard.policy import Serve
from kerasguard.serve.errors import ApiError, unavailable

log = logging.getLogger("kerasguard.serve.ratelimit")
STORAGE_TIMEOUT_S = 1.0
CHECK_EVERY_S = 1.0  # how often readiness may ping the storage
MAX_LOCAL_KEYS = 10_000

# For each key: INCRBY its cost, set the window's expiry when this hit created it, return the counts.
INCR_EXPIRE_MANY = """
local out = {}
for i = 1, #KEYS do
  local amount = tonumber(ARGV[2 * i - 1])
  local current = redis.call('incrby', KEYS[i], amount)
  if current == amount then
    redis.call('expire', KEYS[i], ARGV[2 * i])
  end
  out[i] = current
end
return out
"""

Check = tuple[RateLimitItemPerSecond, tuple[str, str], int, str]  # item, identifiers, cost, reason


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
        self._script: Any = None
        if isinstance(self.storage, RedisStorage):
            bridge: Any = self.storage.bridge
            self._prefixed = bridge.prefixed_key
            self._script = bridge.storage.register_script(INCR_EXPIRE_MANY)
        self.key_requests = RateLimitItemPerSecond(policy.key_requests_per_second, namespace=namespace)
        self.tenant_requests = RateLimitItemPerSecond(policy.tenant_requests_per_second, namespace=namespace)
        self.key_elements = RateLimitItemPerSecond(policy.key_elements_per_second, namespace=namespace)
        self.tenant_elements = RateLimitItemPerSecond(policy.tenant_elements_per_second, namespace=namespace)
        self._local: dict[str, tuple[int, int]] = {}  # key id -> (second, requests this process saw)
        self.storage_ok = True  # the storage answered the last time it was asked
        self._checked_at = -CHECK_EVERY_S

    async def available(self) -> bool:
        """Whether the storage answers: the last request's experience, or a ping at most once a
        second when there was none (readiness: a gateway that refuses every predict is not ready)."""
        now = time.monotonic()
        if now - self._checked_at >= CHECK_EVERY_S:
            self._checked_at = now
            try:
                ok = bool(await asyncio.wait_for(self.storage.check(), 2 * STORAGE_TIMEOUT_S))
            except Exception:  # unreachable, timing out, refusing: all the same here
                ok = False
            self._note(ok)
        return self.storage_ok

    def _note(self, ok: bool) -> None:
        """Log the storage going down or coming back, once per change."""
        if ok == self.storage_ok:
            return
        self.storage_ok = ok
        if ok:
            log.warning("rate-limit storage answers again: limits apply")
        elif self.fail_open:
            log.warning("rate-limit storage unreachable: serving without limits (on_storage_error=allow)")
        else:
            log.warning("rate-limit storage unreachable: refusing requests with 503 (on_storage_error=deny)")

    def precheck(self, key_id: str) -> None:
        """429 at once when this process alone saw the key over its request rate this second."""
        now = int(time.time())
        second, count = self._local.get(key_id, (now, 0))
        count = count + 1 if second == now else 1
        if len(self._local) >= MAX_LOCAL_KEYS and key_id not in self._local:
            self._local = {k: v for k, v in self._local.items() if v[0] == now}
        self._local[key_id] = (now, count)
        if count > self.key_requests.amount:
            raise ApiError(429, "rate_limited_key", "rate limit exceeded; retry later", retry_after=1)

    async def predict(self, tenant: str, key_id: str, elements: int) -> None:
        """Count one predict request and its input elements against the key and the tenant, in one
        round trip; 429 when any of the four is over (the key's verdicts first)."""
        await self._hit(
            (self.key_requests, ("key", key_id), 1, "rate_limited_key"),
            (self.key_elements, ("key-elements", key_id), elements, "rate_limited_key"),
            (self.tenant_requests, ("tenant", tenant), 1, "rate_limited_tenant"),
            (self.tenant_elements, ("tenant-elements", tenant), elements, "rate_limited_tenant"),
        )

    async def request(self, tenant: str, key_id: str) -> None:
        """Count one request against the key and the tenant; 429 when either is over."""
        await self._hit(
            (self.key_requests, ("key", key_id), 1, "rate_limited_key"),
            (self.tenant_requests, ("tenant", tenant), 1, "rate_limited_tenant"),
        )

    async def elements(self, tenant: str, key_id: str, count: int) -> None:
        await self._hit(
            (self.key_elements, ("key-elements", key_id), count, "rate_limited_key"),
            (self.tenant_elements, ("tenant-elements", tenant), count, "rate_limited_tenant"),
        )

    async def _hit(self, *checks: Check) -> None:
        for item, _ids, cost, reason in checks:
            if cost > item.amount:
                raise ApiError(429, reason, "the request is larger than the rate limit allows", retry_after=1)
        try:
            allowed = await self._counts(checks)
        except Exception:  # storage down or timing out
            self._note(False)
            if self.fail_open:
                return
            raise unavailable("limiter_unavailable", "rate limiting is unavailable; retry later") from None
        self._note(True)
        for ok, (_item, _ids, _cost, reason) in zip(allowed, checks, strict=True):
            if not ok:  # the key's verdict first, then the tenant's
                raise ApiError(429, reason, "rate limit exceeded; retry later", retry_after=1)

    async def _counts(self, checks: tuple[Check, ...]) -> list[bool]:
        if self._script is None:
            return [await self.limiter.hit(item, *ids, cost=cost) for item, ids, cost, _ in checks]
        keys = [self._prefixed(item.key_for(*ids)) for item, ids, _, _ in checks]
        args: list[int] = []
        for item, _ids, cost, _ in checks:
            args += [cost, item.get_expiry()]
        counts = await self._script(keys=keys, args=args)
        return [int(n) <= item.amount for n, (item, _i, _c, _r) in zip(counts, checks, strict=True)]
