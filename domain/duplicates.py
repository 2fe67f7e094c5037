"""查重 and 撞单 (SPEC §14): is a new lead a client the company already knows, or a house already served?

A lead is matched by phone (the client's, and a second contact such as a spouse's, against both phones
of every case, open or closed) and by house: the compound with the building, unit and room read from
the address ("3栋2单元1201", "3号楼1201室"). An open match refuses the new case (409, one house one
designer); a closed one links the new case to its history and puts the earlier designer first.

Pure: strings in, keys and texts out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from domain.enums import OUTCOME_LABELS, Outcome
from domain.models import Suggestion

S = TypeVar("S", bound=Suggestion)
_SPACE = re.compile(r"[\s\-－—_,，.。·]+")
# building (栋/幢/号楼/座), optional unit (单元), room (室/号 or bare digits at the end)
_HOUSE = re.compile(
    r"(?P<building>[0-9A-Za-z]+)(?:栋|幢|号楼|座|楼)"
    r"(?:(?P<unit>[0-9A-Za-z]+)单元)?"
    r"(?P<room>[0-9A-Za-z]+)(?:室|号)?$"
)


def house_key(compound: str | None, address: str | None) -> str | None:
    """compound|building|unit|room, normalised (spaces, case, full-width digits); None when unknown."""
    if not compound or not address:
        return None
    norm = _SPACE.sub("", address.translate(_FULL_WIDTH)).upper()
    m = _HOUSE.search(norm)
    if m is None:
        return None
    place = _SPACE.sub("", compound.translate(_FULL_WIDTH)).upper()
    return "|".join([place, m["building"], m["unit"] or "", m["room"]])


_FULL_WIDTH = str.maketrans("０１２３４５６７８９ＡＢＣＤＥＦ", "0123456789ABCDEF")


@dataclass(frozen=True)
class Match:
    """An earlier case of the same client or house."""

    case_id: int
    open: bool
    by: str  # phone | second_phone | house
    outcome: Outcome | None = None
    designer_id: int | None = None
    designer_name: str | None = None


BY_LABELS = {"phone": "手机号", "second_phone": "第二联系电话", "house": "房屋（小区+楼栋单元房号）"}


def reason(m: Match) -> str:
    """Why a new case is linked to an earlier one, as staff read it."""
    how = OUTCOME_LABELS[m.outcome] if m.outcome else "已结案"
    who = f"，原设计师 {m.designer_name}" if m.designer_name else ""
    return f"回头客：{BY_LABELS[m.by]}与案例 #{m.case_id} 相同（{how}{who}）"


def earlier(matches: list[Match]) -> Match | None:
    """The closed case a new one is linked to: the latest (the list is newest first), phone before house."""
    closed = [m for m in matches if not m.open]
    by_phone = [m for m in closed if m.by != "house"]
    pool = by_phone or closed
    return pool[0] if pool else None


def earlier_designer_first(ranked: list[S], designer_id: int | None, case_id: int) -> list[S]:
    """Suggestions with the designer who served the client before first (when eligible), the reason shown."""
    mine = next((s for s in ranked if s.staff.id == designer_id and s.rank > 0), None)
    if mine is None:
        return ranked
    rest = [s for s in ranked if s is not mine]
    first = mine.model_copy(update={"rank": 1, "reasons": [f"曾为该客户服务（案例 #{case_id}），优先推荐",
                                                           *mine.reasons]})
    return [first, *(s.model_copy(update={"rank": s.rank + 1}) if 0 < s.rank < mine.rank else s for s in rest)]
