"""Small helpers shared by the benchmarks: percentiles, timed phases, verdicts, stack discovery.

Nothing here starts any part of the stack: the benchmarks measure a stack someone else started.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import platform
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client

# SPEC §10: what a complete 情况一 case may leave in Temporal (its whole chain of runs).
HISTORY_EVENTS_MAX = 60
HISTORY_BYTES_MAX = 25_000  # 25 KB, serialized events


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank percentile `p` (0..100) of `samples`; NaN when there are none."""
    if not samples:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Phase:
    """One measured phase: `n` operations at `concurrency` callers, their latencies and the wall time."""

    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> int:
        """Operations that succeeded."""
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Successful operations per second of wall time."""
        return self.ok / self.wall_s if self.wall_s > 0 else math.nan

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds over every call, failed ones too (a 503 took that long)."""
        return percentile(self.latencies_ms + self.error_latencies_ms, q)


async def run_phase(
    name: str, count: int, concurrency: int, op: Callable[[int], Awaitable[object]]
) -> Phase:
    """Run `op(0)` … `op(count - 1)` with `concurrency` callers; each call is timed on its own.

    A call that raises counts as an error (its message is kept): not in the throughput, but its time
    is in the percentiles.
    """
    phase = Phase(name=name, concurrency=concurrency)
    next_index = 0

    async def caller() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                await op(i)
            except Exception as exc:  # noqa: BLE001 - a report: count it and go on
                phase.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                phase.error_latencies_ms.append((time.perf_counter() - t0) * 1000)
                continue
            phase.latencies_ms.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(max(1, min(concurrency, count)))))
    phase.wall_s = time.perf_counter() - t0
    return phase


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either is NaN."""
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def at_least(value: float, target: float) -> bool:
    """value >= target (NaN never passes)."""
    return not math.isnan(value) and value >= target


def at_most(value: float, target: float) -> bool:
    """value <= target (NaN never passes)."""
    return not (math.isnan(value) or math.isnan(target)) and value <= target


def machine_line() -> str:
    """Date, host, CPU count and load: the label every figure needs on a shared machine."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}  host {platform.node()}  {os.cpu_count()} cores  load {load}  Python {platform.python_version()}"


@dataclass(frozen=True)
class StaffToken:
    """A staff member the benchmark can act as."""

    staff_id: int
    role: str
    name: str
    token: str


def read_tokens(path: Path) -> list[StaffToken]:
    """Tokens in the format of `intake dev`'s demo-tokens.txt (id, role, level, name, token; tab-separated)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 5:
            raise ValueError(f"{path}: expected 5 tab-separated fields, got {line!r}")
        staff_id, role, _level, name, token = parts
        out.append(StaffToken(int(staff_id), role, name, token))
    return out


def parse_token_arg(text: str) -> StaffToken:
    """`ID:ROLE:TOKEN` from the command line or the environment."""
    staff_id, role, token = text.split(":", 2)
    return StaffToken(int(staff_id), role, f"#{staff_id}", token)


def collect_tokens(tokens_file: Path | None, extra: Sequence[str]) -> list[StaffToken]:
    """Tokens from the file (when it exists) and from `ID:ROLE:TOKEN` items; the items win for an id."""
    by_id: dict[int, StaffToken] = {}
    if tokens_file is not None and tokens_file.exists():
        for t in read_tokens(tokens_file):
            by_id[t.staff_id] = t
    for item in extra:
        for part in item.split(","):
            if part.strip():
                t = parse_token_arg(part.strip())
                by_id[t.staff_id] = t
    return list(by_id.values())


def first_of(tokens: Sequence[StaffToken], role: str) -> StaffToken | None:
    """The first staff member with `role` (lowest id)."""
    found = sorted((t for t in tokens if t.role == role), key=lambda t: t.staff_id)
    return found[0] if found else None


class PhoneMaker:
    """Distinct valid Chinese mobile numbers 1[3-9]XXXXXXXXX, unique per run: prefix, 4-digit run, counter."""

    def __init__(self, prefix: str, run: int) -> None:
        if len(prefix) != 2 or prefix[0] != "1" or prefix[1] not in "3456789":
            raise ValueError(f"bad mobile prefix {prefix!r}")
        self.prefix = prefix
        self.run = run % 10_000
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        if self.n >= 100_000:
            raise ValueError("more than 99,999 phones in one run")
        return f"{self.prefix}{self.run:04d}{self.n:05d}"


def fmt(value: float, unit: str = "", digits: int = 1) -> str:
    """A number for the tables ("-" for NaN)."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def width(text: str) -> int:
    """Columns a string takes in a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    """`text` left-aligned in `columns` terminal columns."""
    return text + " " * max(0, columns - width(text))


async def close_case(
    http: httpx.AsyncClient, case_id: int, token: str, reason: str, key: str, attempts: int = 6
) -> None:
    """Close a benchmark case as a duplicate (manager's token); already closed is fine.

    A 503 (the API's request timeout: the update may or may not have happened) is retried with the
    same Idempotency-Key, which makes the retry the same action (SPEC §7).
    """
    for attempt in range(attempts):
        r = await http.post(
            f"/intakes/{case_id}/close",
            json={"outcome": "duplicate", "reason": reason},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )
        if r.status_code == 200:
            return
        if r.status_code == 409 and r.json().get("code") == "case_closed":
            return
        if r.status_code != 503 or attempt == attempts - 1:
            raise RuntimeError(f"close #{case_id}: {r.status_code} {r.text[:300]}")
        await asyncio.sleep(min(float(r.headers.get("Retry-After", "1") or 1), 5.0))


async def history_of(client: Client, workflow_id: str) -> tuple[int, int, int, collections.Counter[str]]:
    """Events, serialized bytes and runs of a workflow's whole chain (continue-as-new followed back)."""
    events = size = runs = 0
    kinds: collections.Counter[str] = collections.Counter()
    run_id: str | None = None
    while True:
        hist = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs += 1
        events += len(hist.events)
        size += History(events=hist.events).ByteSize()
        kinds.update(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in hist.events)
        first = hist.events[0].workflow_execution_started_event_attributes if hist.events else None
        run_id = first.continued_execution_run_id if first is not None else ""
        if not run_id:
            return events, size, runs, kinds
