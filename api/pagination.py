"""Keyset pagination of GET /intakes: an opaque cursor naming the last row seen."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from api.errors import ApiError

# The deepest `offset` a list takes: an offset makes the database walk every row before it, so deeper
# pages go by `cursor` (GET /intakes) or a narrower filter.
MAX_OFFSET = 10_000


def encode_cursor(created_at: datetime, case_id: int) -> str:
    """An opaque keyset cursor: the last row's (created_at, id)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{case_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Inverse of :func:`encode_cursor`; 422 invalid_cursor when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, cid = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, int(cid)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ApiError(422, "invalid_cursor", "分页游标无效：请使用上一页返回的 next_cursor") from exc
