"""Test data shared by the suites."""

from __future__ import annotations

import uuid
from typing import Any


def unique_phone(prefix: str = "13") -> str:
    """A valid, practically unique Chinese mobile number (the database is shared by a test session)."""
    return f"{prefix}{uuid.uuid4().int % 10**9:09d}"


def musts(true_needs: str = "三室两厅，现代简约", **over: Any) -> dict[str, Any]:
    """A first meeting payload (seed 二f): the four musts answered yes, the client seen off."""
    return {"true_needs": true_needs, "measure_agreed": True, "visited_site": True, "visited_material_store": True,
            "seen_off": True, **over}
