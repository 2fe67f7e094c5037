"""Chinese mobile numbers: the one rule every entry point uses (API, CLI, masking in logs)."""

from __future__ import annotations

import re

# 11 digits, 1[3-9]XXXXXXXXX (the database checks the same pattern).
MOBILE = r"1[3-9][0-9]{9}"  # ASCII digits only (\d would take other scripts' digits too)
_MOBILE_RE = re.compile(rf"^{MOBILE}$")
_NOISE_RE = re.compile(r"[\s\-().]")


# The same rule as a JSON Schema pattern over the raw input (OpenAPI): noise anywhere, an optional
# +86 / 0086 / 86 prefix, then the 11 digits.
_N = r"[\s().-]*"
INPUT_PATTERN = (
    rf"^{_N}(?:(?:\+{_N}|0{_N}0{_N})8{_N}6{_N}|8{_N}6{_N})?1{_N}[3-9](?:{_N}[0-9]){{9}}{_N}$"
)


def normalize_phone(raw: str) -> str:
    """Strip spaces, dashes, brackets and a +86 / 0086 / 86 prefix; ValueError unless a mobile number."""
    s = _NOISE_RE.sub("", raw)
    for prefix in ("+86", "0086"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
            break
    else:
        if len(s) == 13 and s.startswith("86"):
            s = s[2:]
    if not _MOBILE_RE.match(s):
        raise ValueError(f"not a Chinese mobile number: {raw!r}")
    return s
