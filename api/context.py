"""What the current request is about, for logs and records: request id, staff id, case id.

Context variables set by the request middleware (request id), the authentication dependency (staff
id) and the case routes (case id); the JSON log formatter reads them.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
staff_id: ContextVar[int | None] = ContextVar("staff_id", default=None)
case_id: ContextVar[int | None] = ContextVar("case_id", default=None)
