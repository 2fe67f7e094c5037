"""Client SMS texts (SPEC §6): exact strings, salutations, times, and template/variable agreement."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TypedDict
from zoneinfo import ZoneInfo

import pytest

from domain.enums import Gender, MeetingKind
from domain.templates import (
    T1_TEMPLATE,
    T4_TEMPLATE,
    TEMPLATES,
    Company,
    format_meeting_time,
    render_t1,
    render_t2,
    render_t3,
    render_t4,
    salutation,
    substitute,
    t1_variables,
    t2_variables,
    t3_variables,
    t4_variables,
    template_id,
)

SH = ZoneInfo("Asia/Shanghai")
CO = Company()
MEASURE_AT = datetime(2026, 11, 28, 10, 0, tzinfo=SH)  # Saturday


class _Client(TypedDict):
    client_name: str
    gender: Gender
    company: Company


CLIENT = _Client(client_name="王小明", gender=Gender.male, company=CO)

# The SPEC §6 texts, filled in by hand for 王先生 / 张伟 / 李娜 / 陈经理.
T1_SPEC = "王先生您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师李娜会准时到达。城市人家设计师张伟敬！"
T1_SPEC_NO_ASSISTANT = "王先生您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师会准时到达。城市人家设计师张伟敬！"
T2_SPEC = (
    "王先生您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我们预约量房时间为11月28日（周六）上午10:00，"
    "我和我的助理设计师李娜会准时到达。城市人家设计师张伟敬！"
)
T3_SPEC = (
    "王先生您好：我是城市人家装饰公司设计部经理陈经理，首先非常感谢您对城市人家的信任，能给我以及设计师张伟和助理设计师李娜为您服务的机会；"
    "能为您服务，我们团队感到非常荣幸！我们团队针对您的情况进行了专门讨论和制定计划，在服务过程中您随时可以联系我，"
    "我和我的设计师张伟、助理设计师李娜会尽全力让您满意。城市人家设计部经理陈经理敬！"
)


# --- salutation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gender", "expected"),
    [
        ("王小明", Gender.male, "王先生"),
        ("李娜", Gender.female, "李女士"),
        ("欧阳娜娜", Gender.female, "欧阳女士"),
        ("司马光", Gender.male, "司马先生"),
        ("诸葛亮", Gender.male, "诸葛先生"),
        ("上官婉儿", Gender.female, "上官女士"),
        ("欧阳", Gender.male, "欧先生"),  # two characters: single surname 欧, given name 阳
        (" 张 伟 ", Gender.male, "张先生"),
        ("王先生", Gender.male, "王先生"),  # staff typed the title into the name
        ("刘小姐", Gender.female, "刘女士"),
        ("王先生", Gender.unknown, "王先生"),  # the title tells the gender
        ("李女士", Gender.unknown, "李女士"),
        ("王小明", Gender.unknown, "尊敬的客户"),
        ("", Gender.male, "尊敬的客户"),
        ("John Smith", Gender.male, "Smith先生"),
    ],
)
def test_salutation(name: str, gender: Gender, expected: str) -> None:
    assert salutation(name, gender) == expected


# --- meeting time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2026, 11, 28, 10, 0), "11月28日（周六）上午10:00"),
        (datetime(2026, 11, 28, 9, 5), "11月28日（周六）上午9:05"),
        (datetime(2026, 11, 30, 14, 30), "11月30日（周一）下午2:30"),
        (datetime(2026, 11, 29, 12, 0), "11月29日（周日）下午12:00"),
        (datetime(2026, 12, 1, 18, 0), "12月1日（周二）晚上6:00"),
        (datetime(2026, 12, 2, 19, 45), "12月2日（周三）晚上7:45"),
        (datetime(2026, 12, 3, 11, 59), "12月3日（周四）上午11:59"),
        (datetime(2026, 12, 4, 17, 59), "12月4日（周五）下午5:59"),
    ],
)
def test_format_meeting_time(local: datetime, expected: str) -> None:
    assert format_meeting_time(local.replace(tzinfo=SH)) == expected


def test_format_meeting_time_converts_to_local_zone() -> None:
    assert format_meeting_time(datetime(2026, 11, 28, 2, 0, tzinfo=UTC)) == "11月28日（周六）上午10:00"
    assert format_meeting_time(datetime(2026, 11, 28, 16, 30, tzinfo=UTC)) == "11月29日（周日）上午0:30"
    with pytest.raises(ValueError, match="naive"):
        format_meeting_time(datetime(2026, 11, 28, 10, 0))


# --- exact SPEC texts --------------------------------------------------------------------------


def test_t1_exact() -> None:
    assert render_t1(**CLIENT, designer="张伟", assistant="李娜") == T1_SPEC
    assert render_t1(**CLIENT, designer="张伟", assistant=None) == T1_SPEC_NO_ASSISTANT


def test_t2_exact() -> None:
    assert render_t2(**CLIENT, designer="张伟", assistant="李娜", measure_at=MEASURE_AT) == T2_SPEC
    assert render_t2(**CLIENT, designer="张伟", assistant=None, measure_at=MEASURE_AT) == T2_SPEC.replace(
        "助理设计师李娜", "助理设计师"
    )


def test_t3_exact() -> None:
    assert render_t3(**CLIENT, manager="陈经理", designer="张伟", assistant="李娜") == T3_SPEC
    no_assistant = render_t3(**CLIENT, manager="陈经理", designer="张伟", assistant=None)
    assert no_assistant == T3_SPEC.replace("助理设计师李娜", "助理设计师")
    assert "李娜" not in no_assistant and no_assistant.count("助理设计师") == 2


def test_t4_names_time_and_kind() -> None:
    at = datetime(2026, 11, 28, 14, 30, tzinfo=SH)
    office = render_t4(**CLIENT, designer="张伟", at=at, kind=MeetingKind.office_visit)
    assert office == (
        "王先生您好：我是城市人家装饰公司设计师张伟，温馨提醒您，我们约定于11月28日（周六）下午2:30到店见面，"
        "届时我们会准时与您见面。如需调整时间，请随时联系我。城市人家设计师张伟敬！"
    )
    measure = render_t4(**CLIENT, designer="张伟", at=at, kind=MeetingKind.measure)
    assert "11月28日（周六）下午2:30上门量房" in measure


def test_company_is_configurable() -> None:
    co = Company(name="美居装饰公司", short_name="美居")
    text = render_t1(client_name="李娜", gender=Gender.female, company=co, designer="张伟", assistant=None)
    assert text.startswith("李女士您好：我是美居装饰公司设计师张伟，") and text.endswith("美居设计师张伟敬！")


# --- templates and variables agree -------------------------------------------------------------


def _placeholders(template: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", template))


@pytest.mark.parametrize("assistant", ["李娜", None])
def test_render_equals_template_with_variables(assistant: str | None) -> None:
    cases = [
        ("T1", t1_variables(**CLIENT, designer="张伟", assistant=assistant),
         render_t1(**CLIENT, designer="张伟", assistant=assistant)),
        ("T2", t2_variables(**CLIENT, designer="张伟", assistant=assistant, measure_at=MEASURE_AT),
         render_t2(**CLIENT, designer="张伟", assistant=assistant, measure_at=MEASURE_AT)),
        ("T3", t3_variables(**CLIENT, manager="陈经理", designer="张伟", assistant=assistant),
         render_t3(**CLIENT, manager="陈经理", designer="张伟", assistant=assistant)),
        ("T4", t4_variables(**CLIENT, designer="张伟", at=MEASURE_AT, kind=MeetingKind.measure),
         render_t4(**CLIENT, designer="张伟", at=MEASURE_AT, kind=MeetingKind.measure)),
    ]  # fmt: skip
    for which, variables, text in cases:
        template = TEMPLATES[template_id(which, assistant=assistant)]  # type: ignore[arg-type]
        assert set(variables) == _placeholders(template), which  # exactly the keys Aliyun expects
        assert substitute(template, variables) == text
        assert "$" not in text


def test_template_ids_and_constants() -> None:
    assert template_id("T1", assistant="李娜") == "T1"
    assert template_id("T1", assistant=None) == "T1_NO_ASSISTANT"
    assert template_id("T3", assistant="") == "T3_NO_ASSISTANT"
    assert template_id("T4", assistant=None) == "T4"
    for key in ("T1_NO_ASSISTANT", "T2_NO_ASSISTANT", "T3_NO_ASSISTANT"):
        assert "assistant" not in _placeholders(TEMPLATES[key])
    assert _placeholders(T4_TEMPLATE) == {"name", "company", "designer", "time", "kind", "short_name"}


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(KeyError):
        substitute(T1_TEMPLATE, {"name": "王先生"})


# --- the company's day (SPEC §14) ---------------------------------------------------------------------


def test_t5_is_the_new_designers_introduction_word_for_word() -> None:
    from domain.templates import render_t5

    text = render_t5(client_name="王建国", gender=Gender.male, company=CO, designer="吴佳", assistant="林小雨",
                     previous="周一鸣")
    assert text == ("王先生您好：我是城市人家装饰公司设计师吴佳，接下来由我和助理设计师林小雨为您服务，"
                    "周一鸣设计师的工作已与我交接，我们会准时到达。城市人家设计师吴佳敬！")
    only_assistant = render_t5(client_name="王建国", gender=Gender.male, company=CO, designer="吴佳",
                               assistant="黄婷", previous=None)
    assert "助理设计师黄婷" in only_assistant and "周一鸣" not in only_assistant


def test_t4_before_an_office_visit_is_signed_by_the_manager() -> None:
    from domain.templates import t4_manager_variables

    v = t4_manager_variables(client_name="李梅", gender=Gender.female, company=CO, manager="陈建国",
                             at=MEASURE_AT, kind=MeetingKind.office_visit)
    text = substitute(TEMPLATES["T4_MANAGER"], v)
    assert text.startswith("李女士您好：我是城市人家装饰公司设计部经理陈建国") and "到店见面" in text
    assert text.endswith("城市人家设计部经理陈建国敬！")
    with_address = t4_manager_variables(client_name="李梅", gender=Gender.female,
                                        company=Company(address="幸福路 8 号"), manager="陈建国", at=MEASURE_AT,
                                        kind=MeetingKind.office_visit)
    assert "幸福路 8 号" in substitute(TEMPLATES["T4_OFFICE_MANAGER"], with_address)
