"""Failed sign-ins and bad tokens, rate-limited per client address before any database work (SPEC §13).

Spraying made-up bearer tokens cost a database query each on a small pool, so a flood made every
staff request a 503. Now each failure (an unknown, expired or revoked token, a bad session cookie or
sign-in link, a codec credential that opens nothing) is counted per client address with the `limits`
library (in-memory moving window, per API process); an address over the limit is answered 429 with
Retry-After before its credential is even looked up. Successful requests are never counted.

The client address is the TCP peer, or what the configured proxy forwarded (uvicorn's
``forwarded_allow_ips``, INTAKE_FORWARDED_ALLOW_IPS): a header from anyone else is not believed.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from api.errors import ApiError


class FailureLimiter:
    """Counts authentication failures per client address; refuses the address once over the limit."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, address: str) -> None:
        """429 (with Retry-After) when `address` failed too often lately; nothing is counted here."""
        if self._limiter.test(self.item, "auth", address):
            return
        reset, _ = self._limiter.get_window_stats(self.item, "auth", address)
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, "too_many_failures", f"登录失败次数过多，请 {wait} 秒后再试",
                       headers={"Retry-After": str(wait)})

    def failed(self, address: str) -> None:
        """Count one failure of `address`."""
        self._limiter.hit(self.item, "auth", address)

    def reset(self) -> None:
        """Forget every count (tests, or an operator after a false alarm)."""
        self._limiter.storage.reset()


def client_address(conn: HTTPConnection) -> str:
    """The caller's address as uvicorn resolved it (the proxy's forwarded address only from a trusted proxy)."""
    return conn.client.host if conn.client else "unknown"
