"""Logs as JSON lines (SPEC §12), shared by the API, the worker and the dev stack.

One JSON object per line: time, level, logger, message, and the request id, staff id and case id
when a request is being served (request_context.py). Client names and phones are never logged on purpose;
as a second line of defence, any mobile number that still reaches a log line (an exception text
quoting a row, say) is masked to 138****5678 here.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from domain.phone import mask_phones_in


def scrub(text: str) -> str:
    """Mask any mainland mobile number in `text` (+86, spaces and dashes included)."""
    return mask_phones_in(text)


class ScrubbingFormatter(logging.Formatter):
    """Plain-text log lines, with the same masking as the JSON ones."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line with the request context."""

    def format(self, record: logging.LogRecord) -> str:
        import request_context as context

        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        info = context.current.get()
        if info is not None:
            out["request_id"] = info.request_id
            if info.staff_id is not None:
                out["staff_id"] = info.staff_id
            if info.case_id is not None:
                out["case_id"] = info.case_id
        for key in ("http", "case_id", "staff_id", "workflow_id"):
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, ensure_ascii=False, default=str))


def configure_logging(level: int = logging.INFO, *, fmt: str = "json") -> None:
    """Send every log record to stderr, as JSON lines (or plain text for `fmt="text"`)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own access lines would duplicate (in plain text) the API's JSON access lines.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
