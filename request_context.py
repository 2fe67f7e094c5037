"""What the current request is about, for logs and records: request id, staff id, case id.

The request middleware (api.telemetry) puts a mutable :class:`RequestInfo` in a context
variable before the app runs; the authentication dependency adds the staff id and the case routes'
path gives the case id. The JSON log formatter reads it, so every log line written while serving a
request names the request, and the access line written after it also knows who asked.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestInfo:
    """The current request: its id, and who and which case once known."""

    request_id: str
    staff_id: int | None = None
    case_id: int | None = None
    # Cases already read for this request, by (staff id, case id): a route's dependency and its service
    # ask for the same case once (api.services.access.open_case).
    cases: dict[tuple[int, int], Any] = field(default_factory=dict)
    # What the API's write of a case's change brings along, by case id (store.writes.write_change):
    # the case row read before the update, the answer's timeline, a full-phone read to record.
    writing: dict[int, dict[str, Any]] = field(default_factory=dict)


current: ContextVar[RequestInfo | None] = ContextVar("intake_request", default=None)


def request_id() -> str | None:
    """The current request's id, if serving one."""
    info = current.get()
    return info.request_id if info else None


def set_staff(staff_id: int) -> None:
    """Note who is asking (after authentication)."""
    info = current.get()
    if info is not None:
        info.staff_id = staff_id


def set_case(case_id: int) -> None:
    """Note which case the request is about (when the path does not say: a creation)."""
    info = current.get()
    if info is not None:
        info.case_id = case_id
