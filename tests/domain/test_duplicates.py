"""查重 and 撞单 (SPEC §14): the house key, the reason shown, the earlier designer first."""

from __future__ import annotations

from domain.duplicates import Match, earlier, earlier_designer_first, house_key, reason
from domain.enums import Level, Outcome, Role
from domain.models import StaffRef, Suggestion


def test_the_house_is_the_compound_with_building_unit_and_room() -> None:
    assert house_key("阳光花园", "3栋2单元1201") == "阳光花园|3|2|1201"
    assert house_key(" 阳光花园", "3号楼 2单元 1201室") == house_key("阳光花园", "３栋２单元１２０１")
    assert house_key("阳光花园", "3幢1201") == "阳光花园|3||1201"
    assert house_key("阳光花园", "解放路88号") is None  # no building: no house to match on
    assert house_key(None, "3栋2单元1201") is None


def test_a_returning_client_is_linked_to_the_latest_closed_case_phone_first() -> None:
    by_house = Match(case_id=9, open=False, by="house", outcome=Outcome.lost)
    by_phone = Match(case_id=5, open=False, by="phone", outcome=Outcome.signed, designer_id=3, designer_name="李设计")
    assert earlier([by_house, by_phone]) == by_phone
    assert earlier([by_house]) == by_house and earlier([]) is None
    assert reason(by_phone) == "回头客：手机号与案例 #5 相同（已签单，原设计师 李设计）"


def test_the_earlier_designer_comes_first_with_the_reason() -> None:
    def s(i: int, rank: int) -> Suggestion:
        return Suggestion(staff=StaffRef(id=i, name=f"设计师{i}", role=Role.designer, level=Level.senior), rank=rank,
                          reasons=["轮单"], open_cases=0)

    ranked = [s(1, 1), s(2, 2), s(3, 3), s(4, 0)]
    out = earlier_designer_first(ranked, 3, case_id=5)
    assert [(x.staff.id, x.rank) for x in out] == [(3, 1), (1, 2), (2, 3), (4, 0)]
    assert out[0].reasons[0] == "曾为该客户服务（案例 #5），优先推荐"
    assert earlier_designer_first(ranked, 4, case_id=5) == ranked  # not eligible: the rotation stands
    assert earlier_designer_first(ranked, None, case_id=5) == ranked
