"""Test data shared by the suites."""

from __future__ import annotations

import uuid


def unique_phone(prefix: str = "13") -> str:
    """A valid, practically unique Chinese mobile number (the database is shared by a test session)."""
    return f"{prefix}{uuid.uuid4().int % 10**9:09d}"
