"""What the Temporal UI shows of a case (SPEC §8): its summary, details and the ready stuck-case lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from config import Settings
from domain import engine
from domain.enums import Role, Scenario, Source, StepName
from domain.models import IntakeInput, StaffRef
from domain.policy import fast_policy
from domain.tracking import (
    MANAGER_STAGES,
    current_details,
    static_details,
    static_summary,
    stuck_case_queries,
)

T0 = datetime(2030, 5, 6, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
MANAGER = StaffRef(id=1, name="陈建国", role=Role.manager)
DIRECTOR = StaffRef(id=2, name="王志强", role=Role.director)
CONSULTANT = StaffRef(id=5, name="孙丽", role=Role.consultant)


def _input() -> IntakeInput:
    return IntakeInput(case_id=42, source=Source.online, scenario=Scenario.remote, created_at=T0,
                       created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=fast_policy())


def test_summary_and_details_say_which_case_without_client_data() -> None:
    inp = _input()
    assert static_summary(inp) == "客户 #42 · 网销 · 情况一·未到过公司"
    details = static_details(inp)
    assert "客户 #42" in details and "策略 fast" in details and "网页工作台" in details


def test_current_details_tell_the_step_whose_turn_due_how_late_and_what_escalates_next() -> None:
    s = engine.start(_input()).state
    fresh = current_details(s, now=T0)
    assert fresh.startswith("### 客户 #42 · 经理回访\n")
    assert "**经理回访**：轮到 经理 陈建国；自 05-06 09:00 起；到期 05-06 09:00" in fresh
    assert "下一步 05-06 09:00 提醒经理陈建国" in fresh and "超时" not in fresh
    # The fast policy: due after 10 s, the manager reminded at due, the director told 5 s later.
    later = T0 + timedelta(minutes=25)
    for at in (T0 + timedelta(seconds=10), T0 + timedelta(seconds=15)):
        s = engine.tick(s, now=at, policy=fast_policy()).state
    late = current_details(s, now=later)
    assert "### 客户 #42 · 经理回访 · ⚠️ 超时（升级 2 级）" in late
    assert "⚠️ 已超时 24 分钟，升级 2 级" in late and "通知总经理王志强" in late
    assert "情况一·未到过公司 · 网销 · 团队：经理 陈建国" in late
    assert "北京时间" in late


def test_stuck_case_lists_are_ui_links_over_the_search_attributes() -> None:
    late, escalated, designer, waiting = stuck_case_queries(6, "周一鸣", StepName.callback)
    assert late.query == 'ExecutionStatus = "Running" AND Overdue = true'
    assert escalated.query.startswith('ExecutionStatus = "Running" AND EscalationLevel >= 2 AND IntakeStage IN (')
    # (lapse_review, the manager's answer to a late first meeting, is a side step: harmless in the list)
    assert set(MANAGER_STAGES) == {"reception_review", "callback", "assign_designer", "arrival", "debrief",
                                   "outcome", "lapse_review"}
    assert designer.query.endswith('Designer = "6"') and "周一鸣" in designer.name
    assert waiting.query.endswith('IntakeStage = "callback"') and waiting.label == "等待经理回访"
    url = Settings(temporal_ui_port=8233).temporal_list_url(late.query)
    parts = urlsplit(url)
    assert parts.netloc == "127.0.0.1:8233" and parts.path == "/namespaces/default/workflows"
    assert " " not in url and parse_qs(parts.query)["query"] == [late.query]
