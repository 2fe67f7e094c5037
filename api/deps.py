"""Annotated dependencies: settings, policy, PostgreSQL pool, Temporal client, the authenticated staff member.

The pool and the client are created once per process (the lifespan warms them up; see
:class:`Resources`). When PostgreSQL or Temporal is down at start, the API still starts and answers
503 (and `/readyz` says which part is missing) until they come back: each request tries to connect
again, within the request's time bound. Every wait on either service is bounded by
``request_timeout_seconds`` with :func:`api.bounds.within`, which abandons a call that overran
instead of waiting for its clean-up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from temporalio.client import Client

from api.bounds import abandon, within
from api.errors import ApiError, unavailable
from api.ratelimit import client_address
from config import Settings
from domain import permissions
from domain.enums import Role
from domain.models import Actor
from domain.permissions import Refusal
from domain.policy import Policy
from store.recordings import RecordingStore
from store.staff import Staff, StaffRepository, hash_token
from wecom import WeComCorp

log = logging.getLogger("intake.api")


class Resources:
    """The process-wide pool and Temporal client; injected ones are used as given and never closed.

    Connecting is single-flight: one attempt at a time, bounded by the request timeout, which every
    request waiting for it follows for at most its own bound (no lock to queue behind).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        temporal_client: Client | None = None,
        pool: asyncpg.Pool | None = None,
        policy: Policy | None = None,
        recording_store: RecordingStore | None = None,
    ) -> None:
        self.settings = settings
        self._client = temporal_client
        self._pool = pool
        self._policy = policy
        self._recordings = recording_store
        self._owns_client = temporal_client is None
        self._owns_pool = pool is None
        self._client_attempt: asyncio.Task[Client] | None = None
        self._wecom: WeComCorp | None = None
        self._pool_attempt: asyncio.Task[asyncpg.Pool] | None = None
        self._expired_at = -math.inf
        self._closed = False
        from api.ratelimit import FailureLimiter

        # Failed sign-ins and bad tokens per client address, judged before any database work.
        self.auth_failures = FailureLimiter(settings.auth_failures_per_minute)
        self.tokens = TokenCache(TOKEN_CACHE_SECONDS)

    @property
    def timeout(self) -> float:
        """The bound on any one call to PostgreSQL or Temporal, in seconds."""
        return self.settings.request_timeout_seconds

    @property
    def rpc_timeout(self) -> timedelta:
        """The same bound as a Temporal rpc_timeout."""
        return timedelta(seconds=self.timeout)

    def policy(self) -> Policy:
        """The policy new cases start with (injected in tests, else the configured file)."""
        if self._policy is None:
            from connections import load_policy

            self._policy = load_policy(self.settings)
        return self._policy

    def recordings(self) -> RecordingStore:
        """Where recordings are kept (injected in tests, else from the settings)."""
        if self._recordings is None:
            from store.recordings import build_recording_store

            self._recordings = build_recording_store(self.settings)
        return self._recordings

    def wecom(self) -> WeComCorp:
        """The WeCom corp application's client (its token cached for the process); only when configured."""
        if self._wecom is None:
            self._wecom = WeComCorp.from_settings(self.settings)
        return self._wecom

    async def pool(self) -> asyncpg.Pool:
        """The pool, created on first use; 503 when PostgreSQL cannot be reached in time."""
        if self._pool is not None:
            return self._pool
        if self._pool_attempt is None or self._pool_attempt.done():
            self._pool_attempt = asyncio.create_task(self._create_pool())
        try:
            # shield: a request that stops waiting does not stop the attempt the others wait for.
            return await within(asyncio.shield(self._pool_attempt), self.timeout)
        except Exception as exc:
            log.warning("cannot connect to PostgreSQL: %r", exc)
            raise unavailable("database_unavailable", "数据库暂时无法访问，请稍后重试") from exc

    async def _create_pool(self) -> asyncpg.Pool:
        from store.db import create_pool

        # Resolved by `intake dev` / `intake api`; a deployed API never starts a database.
        dsn = self.settings.database_url
        if not dsn:
            raise RuntimeError("INTAKE_DATABASE_URL is not set")
        # The pool's own timeouts (connect, statements, cancellation) are the request bound too:
        # a connection whose server hangs is terminated instead of staying checked out.
        pool = await within(
            create_pool(dsn, min_size=self.settings.db_pool_min, max_size=self.settings.db_pool_max,
                        timeout=self.timeout),
            self.timeout,
        )
        if self._closed:  # the app stopped while this attempt ran
            pool.terminate()
            raise RuntimeError("the API is stopping")
        self._pool = pool
        return pool

    async def client(self) -> Client:
        """The Temporal client, connected on first use; 503 when Temporal cannot be reached in time."""
        if self._client is not None:
            return self._client
        if self._client_attempt is None or self._client_attempt.done():
            self._client_attempt = asyncio.create_task(self._connect_client())
        try:
            return await within(asyncio.shield(self._client_attempt), self.timeout)
        except Exception as exc:
            log.warning("cannot connect to Temporal: %r", exc)
            raise unavailable("temporal_unavailable", "流程引擎暂时无法访问，请稍后重试") from exc

    async def _connect_client(self) -> Client:
        from connections import connect_temporal

        client = await within(connect_temporal(self.settings), self.timeout)
        self._client = client
        return client

    async def database_overran(self) -> None:
        """A database call overran its bound: the pool's other connections may be stuck on the same
        server, so they are replaced on their next use (at most once per time bound)."""
        now = time.monotonic()
        if self._pool is None or now - self._expired_at < self.timeout:
            return
        self._expired_at = now
        log.warning("PostgreSQL did not answer within %.1f s: replacing the pool's connections", self.timeout)
        await self._pool.expire_connections()

    async def warm_up(self) -> None:
        """Load the policy (a broken policy file stops the start) and connect both services when possible."""
        self.policy()
        # Services that are not there yet only log: requests retry and answer 503 meanwhile.
        for connect in (self.pool, self.client):
            try:
                await connect()
            except ApiError as exc:
                log.warning("start without %s: will retry on demand", exc.code)

    async def aclose(self) -> None:
        """Close what this process created (never what was injected)."""
        self._closed = True
        for attempt in (self._pool_attempt, self._client_attempt):
            if attempt is not None:
                abandon(attempt)
        if self._owns_pool and self._pool is not None:
            try:
                await within(self._pool.close(), self.timeout)
            except Exception:  # closing is best effort; the process is going away
                self._pool.terminate()
            self._pool = None
        self._client = None if self._owns_client else self._client
        if self._wecom is not None:
            await self._wecom.aclose()
            self._wecom = None


async def get_resources(request: Request) -> Resources:
    """The app's resources (set by create_app). Async on purpose: FastAPI runs a plain `def` dependency in
    its thread pool: a hop to another thread and back on every request (0.08 ms each, measured 2026-12-03)."""
    res: Resources = request.app.state.resources
    return res


ResourcesDep = Annotated[Resources, Depends(get_resources)]


# --- authentication -----------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="StaffToken",
    description="每位员工一个令牌（由命令行工具签发，仅保存哈希）。Authorization: Bearer itk_…",
)


@dataclass(frozen=True)
class TokenProof:
    """A bearer token whose owner came from the process's cache: the request's first statement confirms it."""

    token_hash: str
    max_age_days: float | None


@dataclass(eq=False)
class CurrentUser:
    """The authenticated staff member.

    `proof` is set while the person comes from the token cache and is not yet confirmed by the database
    (:func:`get_case_user`); the case read confirms them (api.services.access.open_case) and replaces
    `staff` with what the database holds now, before anything is decided on their behalf.
    """

    staff: Staff
    proof: TokenProof | None = None

    @property
    def id(self) -> int:
        """Staff id."""
        return self.staff.id

    @property
    def role(self) -> Role:
        """Staff role."""
        return self.staff.role

    @property
    def branches(self) -> frozenset[int] | None:
        """The branches this person works in (None: every branch, head office)."""
        return permissions.branch_reach(self.staff.role, self.staff.branch_id, self.staff.extra_branches)

    def actor(self) -> Actor:
        """Who acts, as the workflow's updates take it."""
        return Actor(staff_id=self.staff.id, role=self.staff.role, name=self.staff.name)

    def confirmed(self, staff: Staff) -> None:
        """The database confirmed the token: the person as they stand now (a new role counts at once)."""
        self.staff = staff
        self.proof = None


class TokenCache:
    """Who a bearer token belongs to, kept briefly in this process (SPEC §10: no lookup of its own on a step).

    Only routes that read their case first take a person from here (:func:`get_case_user`); that read
    confirms the token in the same statement (store.queries.case_row_as), so a revoked or expired token,
    someone who left or whose role changed is refused by the very next request, in every API process alike.
    """

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self._seconds = seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, Staff]] = {}

    def get(self, token_hash: str) -> Staff | None:
        """The person last confirmed for this token, if not older than the cache's time."""
        hit = self._entries.get(token_hash)
        if hit is None or time.monotonic() - hit[0] > self._seconds:
            return None
        return hit[1]

    def put(self, token_hash: str, staff: Staff) -> None:
        """Remember a confirmed person (the oldest entries go first when full)."""
        if len(self._entries) >= self._max:
            for key in list(self._entries)[: self._max // 10 or 1]:
                del self._entries[key]
        self._entries[token_hash] = (time.monotonic(), staff)

    def drop(self, token_hash: str) -> None:
        """Forget a token the database refused."""
        self._entries.pop(token_hash, None)


# How long a confirmed token is kept in the process; each use is still confirmed by the case read.
TOKEN_CACHE_SECONDS = 60.0

_UNAUTH_HEADERS = {"WWW-Authenticate": "Bearer"}


def invalid_token() -> ApiError:
    """401 invalid_token: revoked, expired, unknown, or its owner has left."""
    return ApiError(401, "invalid_token", "令牌无效、已过期或已吊销", headers=_UNAUTH_HEADERS)


def _bearer_token(
    request: HTTPConnection, res: Resources, credentials: HTTPAuthorizationCredentials | None
) -> tuple[str, str]:
    """The presented token and the caller's address (401 without one; 429 for an address that failed too
    often, before any database work)."""
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthenticated", "需要登录：Authorization: Bearer <令牌>", headers=_UNAUTH_HEADERS)
    address = client_address(request)
    res.auth_failures.check(address)
    token = credentials.credentials.strip()
    if len(token) > 512:
        res.auth_failures.failed(address)
        raise ApiError(401, "invalid_token", "令牌无效或已吊销", headers=_UNAUTH_HEADERS)
    return token, address


async def get_current_user(
    request: HTTPConnection,
    res: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CurrentUser:
    """Resolve the bearer token to an active staff member (401 otherwise; 429 for an address that failed
    too often, before any database work)."""
    token, address = _bearer_token(request, res, credentials)
    pool = await res.pool()
    # Revoked, expired, or its owner has left (inactive): None.
    ttl = res.settings.token_ttl_days
    staff = await bounded(res, StaffRepository(pool).by_token(token=token, max_age_days=ttl))
    if staff is None:
        res.auth_failures.failed(address)
        raise invalid_token()
    res.tokens.put(hash_token(token), staff)
    import request_context as context

    context.set_staff(staff.id)
    return CurrentUser(staff)


async def get_case_user(
    request: HTTPConnection,
    res: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CurrentUser:
    """:func:`get_current_user` for routes whose first database statement reads their case: a token seen a
    moment ago costs no lookup of its own, the case read confirms it (api.services.access.open_case)."""
    token, _ = _bearer_token(request, res, credentials)
    hashed = hash_token(token)
    staff = res.tokens.get(hashed)
    if staff is None:
        return await get_current_user(request, res, credentials)
    import request_context as context

    context.set_staff(staff.id)
    return CurrentUser(staff, proof=TokenProof(hashed, res.settings.token_ttl_days))


CurrentStaff = Annotated[CurrentUser, Depends(get_current_user)]
# The same person, for routes that read their case before anything else (the token confirmed by that read).
CaseStaff = Annotated[CurrentUser, Depends(get_case_user)]


def refuse(refusal: Refusal | None) -> None:
    """403 with the refusal's code and message (nothing when allowed): domain/permissions.py decides."""
    if refusal is not None:
        raise ApiError(403, refusal.code, refusal.message, details=refusal.details or None)


def permitted(check: Callable[[CurrentUser], Refusal | None]) -> Callable[[CurrentUser], Awaitable[CurrentUser]]:
    """A dependency admitting whoever `check` (a domain.permissions rule) lets through; 403 otherwise."""

    async def dep(user: CurrentStaff) -> CurrentUser:
        refuse(check(user))
        return user

    return dep


async def bounded(res: Resources, aw: Awaitable[Any]) -> Any:
    """Await a database call within the request time bound (503 database_unavailable when exceeded).

    A call that overruns is abandoned, not awaited: its clean-up may wait on the hung server.
    """
    try:
        return await within(aw, res.timeout)
    except TimeoutError as exc:
        await res.database_overran()
        raise unavailable("database_unavailable", "数据库响应超时，请稍后重试") from exc
