"""Payload keys for tests only (never used outside the test suite): the suite runs with encryption on,
as production does. `OLD` is a retired key some saved histories were recorded with (rotation)."""

from __future__ import annotations

from temporalio.converter import DataConverter

from codec import data_converter, parse_keys

# Test-only keys, deliberately public: they protect nothing but test data.
ACTIVE = "t2:dGVzdC1vbmx5LWtleS10d28tLS0tLS0tLS0tLS0tLS0="
OLD = "t1:dGVzdC1vbmx5LWtleS1vbmUtLS0tLS0tLS0tLS0tLS0="
KEYS = f"{ACTIVE},{OLD}"


def encrypted_converter() -> DataConverter:
    """The pydantic converter with the AES-GCM codec on the test keys (t2 encrypts, t1 still decrypts)."""
    return data_converter(parse_keys(KEYS))
