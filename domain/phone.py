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


# A mobile number inside free text, as people write it: an optional +86 / 0086 / 86 prefix, then the
# 11 digits with spaces, dashes or dots anywhere between them; never part of a longer run of digits.
_SEP = r"[ \t\u3000.\-－—]?"
_IN_TEXT = re.compile(
    rf"(?<![0-9])(?:(?:\+|＋|00)?86{_SEP}|\(\+?86\){_SEP})?1{_SEP}[3-9](?:{_SEP}[0-9]){{9}}(?![0-9])"
)


def mask_phone(phone: str | None) -> str:
    """138****5678: the first three and the last four digits of a mobile number, the rest hidden."""
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) > 11 and digits[-11] == "1":
        digits = digits[-11:]  # +86 / 0086 prefix: the number itself
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_phones_in(text: str) -> str:
    """Every mobile number written into free text (notes, reports, corrections), masked."""
    return _IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def has_phone(text: str) -> bool:
    """Whether free text carries a mobile number."""
    return _IN_TEXT.search(text) is not None


def hide_phones_in(text: str, placeholder: str = "〔号码已隐去〕") -> str:
    """Every mobile number written into free text replaced whole (not even the last four digits kept)."""
    return _IN_TEXT.sub(placeholder, text)
