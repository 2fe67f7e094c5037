"""The staff manual says what the code does (SPEC §15): docs/process.md and the role pages.

Fast and pure: no server. Every time the manual states carries the policy key it stands for
(``15 分钟<!-- policy: durations.callback -->``) and must equal the default policy's value; every SMS it
quotes (``<!-- sms: T1 -->`` before a ``text`` block) must be the code's template; every step, role and
checklist label the code knows appears; the manual names no API paths; no page of docs/ or the README
links outside the repository; the manual's Chinese uses full-width punctuation.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from config import PROJECT_ROOT
from domain.enums import OUTCOME_LABELS, ROLE_LABELS, SCENARIO_LABELS, STEP_LABELS, StepName
from domain.graph import GRAPHS
from domain.models import RECEPTION_ITEMS, SITE_MUSTS
from domain.policy import parse_policy
from domain.templates import TEMPLATES

DOCS = PROJECT_ROOT / "docs"
PROCESS = DOCS / "process.md"
ROLE_PAGES = sorted((DOCS / "roles").glob("*.md"))
MANUAL = [PROCESS, *ROLE_PAGES]
POLICY = parse_policy((PROJECT_ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))

# The manual's placeholders (staff read Chinese) and the template variables they stand for.
PLACEHOLDERS = {
    "称呼": "name",
    "公司": "company",
    "简称": "short_name",
    "设计师": "designer",
    "助理": "assistant",
    "经理": "manager",
    "时间": "time",
    "见面方式": "kind",
    "公司地址": "address",
    "原设计师": "previous",
}

_VALUE = (r"(?:(?P<num>\d+(?:\.\d+)?)\s*(?:个)?\s*(?:工作(?=小时|分钟))?(?P<unit>分钟|小时|天|工作日|次|级)"
          r"|(?P<clock>\d{1,2}:\d{2}))")
MARKED = re.compile(_VALUE + r"<!-- (?P<kind>policy|policy-days): (?P<key>[\w.]+) -->")
# A stated length of time: it must carry its policy key.
DURATION = re.compile(r"\d+(?:\.\d+)?\s*(?:个)?\s*(?:工作)?(?:分钟|小时|天|工作日)(?!<!--)")
CJK = r"[\u3400-\u9fff]"
HALF_WIDTH = re.compile(rf"{CJK}\s*[,;:()!?]|[,;:()!?]\s*{CJK}")
API_PATH = re.compile(r"\b(?:GET|POST|PATCH|PUT|DELETE) /|(?<![\w.])/(?:cases|intakes|reports|me|staff|audit|console)\b")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?[^)]*\)|<([a-z][a-z0-9+.-]*:[^>\s]+)>|^\s*\[[^\]]+\]:\s*(\S+)", re.M)
UNITS = {"分钟": "minutes", "小时": "hours", "天": "days"}
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text a reader reads as sentences: no code blocks, code spans, comments or link targets."""
    text = FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", text)


def _workday() -> timedelta:
    """A working day of the default calendar (Monday's periods)."""
    return sum((datetime.combine(date.min, end) - datetime.combine(date.min, start)
                for start, end in POLICY.calendar.hours[0]), timedelta())


def policy_value(key: str) -> Any:
    """The default policy's value at a dotted key (``durations.debrief``, ``followups.0``,
    ``calendar.hours.0.0.1``); ``workday`` is the length of a working day."""
    if key == "workday":
        return _workday()
    parts = key.split(".")
    if parts[0] == "durations" and len(parts) == 2:
        return POLICY.duration(StepName(parts[1]))  # a step the file leaves out has the code's default
    value: Any = POLICY
    for part in parts:
        if isinstance(value, BaseModel):
            value = getattr(value, part)
        elif isinstance(value, dict):
            value = value[int(part)] if part.isdigit() and int(part) in value else value[part]
        else:
            value = value[int(part)]
    return value


def _stated(m: re.Match[str]) -> Any:
    """What the manual states before a marker, as the policy would hold it."""
    if m["clock"]:
        hour, minute = m["clock"].split(":")
        return time(int(hour), int(minute))
    num = float(m["num"])
    unit = m["unit"]
    if unit in ("次", "级"):
        return int(num)
    if unit == "工作日":
        return num
    return timedelta(**{UNITS[unit]: num})


def _marks() -> list[tuple[Path, re.Match[str]]]:
    return [(page, m) for page in MANUAL for m in MARKED.finditer(_text(page))]


def test_every_time_the_manual_states_is_the_default_policy() -> None:
    wrong = []
    for page, m in _marks():
        value = policy_value(m["key"])
        if m["kind"] == "policy-days":
            stated, expected = float(m["num"]), round(value / _workday(), 1)
        else:
            stated, expected = _stated(m), value
        if stated != expected:
            wrong.append(f"{page.name}: {m[0]!r} — the policy says {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_every_stated_duration_names_its_policy_key() -> None:
    """A length of time in the manual without its key could drift from the policy unnoticed."""
    bare = []
    for page in MANUAL:
        text = FENCE.sub("", _text(page))
        for m in DURATION.finditer(text):
            if not text[m.end():].startswith("<!--"):
                line = text[: m.start()].count("\n") + 1
                bare.append(f"{page.name}:{line}: {m[0]!r}")
    assert not bare, "durations without <!-- policy: key -->:\n" + "\n".join(bare)


def test_the_manual_states_every_time_of_the_policy() -> None:
    """Each step's duration, the grace, the reminders, the escalation chain, quiet hours, reclaim."""
    required = {f"durations.{spec.step.value}" for g in GRAPHS.values() for spec in g.steps if spec.due == "duration"}
    required |= {f"followups.{i}" for i in range(len(POLICY.followups))}
    required |= {f"assignment_reminders_before.{i}" for i in range(len(POLICY.assignment_reminders_before))}
    required |= {f"escalation.stages.{i}.after" for i, st in enumerate(POLICY.escalation.stages) if st.after}
    required |= {
        "walk_in_assignment", "meeting_grace", "callback_retry_interval", "callback_max_attempts",
        "escalation.repeat_every", "escalation_max_repeats", "client_reminder_before", "staff_reminder_before",
        "manager_reminder_before", "quiet_hours.start", "quiet_hours.end", "message_spacing", "reclaim_at_level",
        "workday",
    }
    assert POLICY.quiet_hours is not None and POLICY.reclaim_at_level is not None  # the manual describes them on
    stated = {m["key"] for _, m in _marks() if m["kind"] == "policy"}
    assert not required - stated, f"the manual does not state: {sorted(required - stated)}"


def _step_table() -> list[list[str]]:
    lines = _text(PROCESS).splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\| 步骤 \| 负责人 \| 期限 \| 升级 \|", line))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_the_step_table_has_every_step_with_a_keyed_due_time() -> None:
    rows = _step_table()
    assert sorted(r[0] for r in rows) == sorted(STEP_LABELS.values())
    for label, _owner, due, escalation in rows:
        assert MARKED.search(due), f"「{label}」: the due time names no policy key"
        assert escalation, f"「{label}」: no escalation"


def test_every_sms_quoted_is_the_code_template() -> None:
    text = _text(PROCESS)
    quoted = dict(re.findall(r"<!-- sms: (\w+) -->\n```text\n(.*?)\n```", text))
    assert sorted(quoted) == sorted(TEMPLATES), "the manual quotes each template once"
    table = set(re.findall(r"^\| \{(\w+)\} \|", text, re.M))
    assert table == set(PLACEHOLDERS), "the placeholder table explains each placeholder"
    for template_id, body in quoted.items():
        unknown = set(re.findall(r"\{(\w+)\}", body)) - set(PLACEHOLDERS)
        assert not unknown, f"{template_id}: placeholders not explained: {unknown}"
        as_code = re.sub(r"\{(\w+)\}", lambda m: "${" + PLACEHOLDERS[m[1]] + "}", body)
        assert as_code == TEMPLATES[template_id], template_id


def test_every_label_the_code_knows_appears_in_the_manual() -> None:
    text = _text(PROCESS)
    labels = [*STEP_LABELS.values(), *ROLE_LABELS.values(), *SCENARIO_LABELS.values(), *OUTCOME_LABELS.values(),
              *RECEPTION_ITEMS.values(), *SITE_MUSTS.values()]
    missing = [label for label in labels if label not in text]
    assert not missing, f"not in process.md: {missing}"


@pytest.mark.parametrize("phrase", [
    "介绍自己", "介绍公司流程", "设计部经理介绍完毕后离开", "目视客户、做再见手势状，直到看不到客户的车",
    "隆重给客户介绍设计师以及助理设计师", "与接待客户的人员联系沟通",
])
def test_what_the_system_does_not_record_is_said_so(phrase: str) -> None:
    """The procedure's instructions the system keeps no record of stay in the manual, marked."""
    lines = [line for line in _text(PROCESS).splitlines() if phrase in line and not line.startswith(">")]
    assert any("（系统不记录）" in line for line in lines), phrase


@pytest.mark.parametrize("page", MANUAL, ids=lambda p: p.name)
def test_the_manual_names_no_api_paths(page: Path) -> None:
    found = API_PATH.findall(_text(page))
    assert not found, f"{page.name}: API paths belong in reference.md: {found}"


@pytest.mark.parametrize("page", MANUAL, ids=lambda p: p.name)
def test_the_manual_writes_full_width_punctuation(page: Path) -> None:
    text = _prose(_text(page))
    bad = [f"{text[: m.start()].count(chr(10)) + 1}: {text[max(0, m.start() - 8): m.end() + 8]!r}"
           for m in HALF_WIDTH.finditer(text)]
    assert not bad, f"{page.name}: ASCII punctuation in Chinese sentences:\n" + "\n".join(bad)


def test_the_manual_says_how_it_is_written() -> None:
    head = _text(PROCESS)[:1500]
    assert "全角" in head and "系统不记录" in head and "工作时间" in head


DOC_PAGES = [PROJECT_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_docs_link_only_inside_the_repository(page: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", _text(page)))
    outside, broken = [], []
    for m in LINK.finditer(text):
        target = next(g for g in m.groups() if g)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            outside.append(target)
            continue
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not outside, f"links outside the repository: {outside}"
    assert not broken, f"links to files that do not exist: {broken}"


def test_the_index_lists_every_page() -> None:
    index = _text(DOCS / "README.md")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.name != "README.md"]
    missing = [p for p in pages if f"]({p})" not in index]
    assert not missing, f"docs/README.md does not list: {missing}"


def test_the_reference_names_every_code_the_manual_stands_for() -> None:
    from domain.enums import Role, Scenario

    reference = _text(DOCS / "reference.md")
    codes = [*(f"`{s.value}`" for s in StepName), *(f"`{r.value}`" for r in Role),
             *(f"`{s.value}`" for s in Scenario), *(f"`{t}`" for t in TEMPLATES)]
    missing = [c for c in codes if c not in reference]
    assert not missing, f"not in reference.md: {missing}"
