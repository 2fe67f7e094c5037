"""The staff of the pure engine tests (tests/domain): one cast, the same ids and names everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.enums import Level, Role, Scenario, Source
from domain.models import Actor, StaffRef

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
MANAGER = StaffRef(id=1, name="陈建国", role=Role.manager)
DIRECTOR = StaffRef(id=2, name="赵总", role=Role.director)
DESIGNER = StaffRef(id=3, name="周一鸣", role=Role.designer, level=Level.chief)
OTHER_DESIGNER = StaffRef(id=4, name="吴佳", role=Role.designer, level=Level.senior)
ASSISTANT = StaffRef(id=5, name="林小雨", role=Role.assistant)
OTHER_ASSISTANT = StaffRef(id=9, name="何静", role=Role.assistant)
LEAD = StaffRef(id=6, name="郑主管", role=Role.assistant_lead)
CONSULTANT = StaffRef(id=7, name="孙丽", role=Role.consultant)
SITE_LEAD = StaffRef(id=8, name="钱站长", role=Role.site_lead)

# The source a case of each scenario comes from.
SOURCES = {
    Scenario.remote: Source.online,
    Scenario.office_visit: Source.marketing,
    Scenario.site_office: Source.site_office,
    Scenario.walk_in: Source.walk_in,
}


def actor(ref: StaffRef) -> Actor:
    """The staff member as the engine's commands take them."""
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)
