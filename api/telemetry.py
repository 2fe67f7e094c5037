"""Request ids, JSON access lines and Prometheus metrics of the API (SPEC §12).

:class:`RequestTelemetry` is the outermost middleware: it takes the request id from ``X-Request-ID``
(or makes one), returns it in the response header, puts it in the log context, and after the answer
writes one access line and observes the request in ``intake_http_requests_total`` and
``intake_http_request_duration_seconds`` by route template (never the raw path: ids would explode the
series). :func:`metrics_text` renders the registry, with gauges computed from PostgreSQL at scrape time
(outbox by status and provider, escalations by step and level, steps overdue now, reconciler repairs),
cached for a few seconds so a busy scraper costs the database little.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import request_context as context

log = logging.getLogger("intake.access")

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "intake_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "intake_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CASE_PATH = re.compile(r"^/intakes/(\d{1,16})(?:/|$)")


def route_template(scope: Scope) -> str:
    """The matched route's template (`/intakes/{case_id}`), never the raw path; `unmatched` before routing."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestTelemetry:
    """Request id in and out, access line, HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1").strip()
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        info = context.RequestInfo(request_id=rid)
        m = _CASE_PATH.match(scope.get("path", ""))
        if m:
            info.case_id = int(m.group(1))
        token = context.current.set(info)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            if route != "/metrics":
                log.info(
                    "%s %s %s %.1f ms", method, route, status, elapsed * 1000,
                    extra={"http": {"method": method, "route": route, "status": status,
                                    "ms": round(elapsed * 1000, 1)}},
                )
            context.current.reset(token)


# --- gauges from PostgreSQL ------------------------------------------------------------------------

_DB_QUERIES = {
    "outbox": "SELECT channel, provider, status, count(*) AS n FROM outbox GROUP BY 1, 2, 3",
    "escalations": (
        "SELECT coalesce(step, '') AS step, coalesce(data->>'level', '') AS level, count(*) AS n"
        " FROM case_events WHERE kind = 'escalation' GROUP BY 1, 2"
    ),
    "overdue": (
        "SELECT step, count(*) AS n FROM case_steps s JOIN cases c ON c.id = s.case_id"
        " WHERE s.status = 'open' AND c.status = 'open' AND s.due_at < now() GROUP BY 1"
    ),
    "repairs": "SELECT kind, count(*) AS n FROM case_repairs GROUP BY 1",
    "cases": "SELECT status, count(*) AS n FROM cases GROUP BY 1",
}


class DatabaseGauges(Collector):
    """Gauges read from PostgreSQL by :meth:`refresh` (async, at scrape time) and served from its cache."""

    def __init__(self, max_age_seconds: float = 5.0) -> None:
        self.max_age = max_age_seconds
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._at = -1e9
        self.up = 0

    async def refresh(self, pool: asyncpg.Pool, timeout: float) -> None:
        """Read the figures again when the cache is older than `max_age_seconds`."""
        if time.monotonic() - self._at < self.max_age:
            return
        try:
            async with pool.acquire(timeout=timeout) as conn:
                self._rows = {
                    k: [dict(r) for r in await conn.fetch(q, timeout=timeout)] for k, q in _DB_QUERIES.items()
                }
            self.up = 1
        except Exception as exc:  # noqa: BLE001 - a scrape never fails for the database; `up` says so
            log.warning("metrics: database figures unavailable: %r", exc)
            self.up = 0
        self._at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The cached figures as Prometheus gauges."""
        up = GaugeMetricFamily("intake_db_metrics_up", "1 when the last read of the database figures succeeded.")
        up.add_metric([], self.up)
        yield up
        outbox = GaugeMetricFamily(
            "intake_outbox_messages", "Outbox rows by channel, provider and status.",
            labels=["channel", "provider", "status"],
        )
        for r in self._rows.get("outbox", []):
            outbox.add_metric([r["channel"], r["provider"], r["status"]], r["n"])
        yield outbox
        esc = GaugeMetricFamily(
            "intake_escalations", "Escalations recorded so far, by step and level.", labels=["step", "level"]
        )
        for r in self._rows.get("escalations", []):
            esc.add_metric([r["step"], r["level"]], r["n"])
        yield esc
        overdue = GaugeMetricFamily("intake_steps_overdue", "Open steps past their due time now, by step.",
                                    labels=["step"])
        for r in self._rows.get("overdue", []):
            overdue.add_metric([r["step"]], r["n"])
        yield overdue
        repairs = GaugeMetricFamily("intake_reconciler_repairs", "Repairs made by the reconciler so far, by kind.",
                                    labels=["kind"])
        for r in self._rows.get("repairs", []):
            repairs.add_metric([r["kind"]], r["n"])
        yield repairs
        cases = GaugeMetricFamily("intake_cases", "Cases by status.", labels=["status"])
        for r in self._rows.get("cases", []):
            cases.add_metric([r["status"]], r["n"])
        yield cases


DB_GAUGES = DatabaseGauges()
REGISTRY.register(DB_GAUGES)


def metrics_text() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
