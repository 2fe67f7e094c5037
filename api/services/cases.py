"""Reading a case (GET /intakes/{id}, its messages, the console's case page) and its suggestions.

Every read goes through :func:`api.services.access.open_case`: a person who may not see the case gets
404, and what they may not see of it (contact details, phones in free text) is masked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.schemas import CaseView, MessageItem, MessageList, RelatedCase, SuggestionItem, SuggestionList
from api.services.access import CaseAccess, open_case, open_case_for, record_contact, redact, viewer
from api.temporal import query_state
from api.views import case_view, state_from_row, timeline
from domain import duplicates, engine, permissions
from domain.enums import Level, Scenario, StepName
from domain.models import StaffRef, SuggestAssistants, Suggestion
from domain.permissions import Action
from domain.phone import mask_phone, mask_phones_in
from domain.policy import Policy
from domain.tracking import local_time
from store import queries
from store.allocation import AllocationRepository, DesignerSuggestion

log = logging.getLogger("intake.api")

# A live query when the projection has no state yet: short, the answer falls back to the row.
QUERY_WHEN_UNPROJECTED_SECONDS = 2.0


async def get_case(res: Resources, case_id: int, *, user: CurrentUser, fresh: bool = False) -> CaseView:
    """The case: stage, open steps (owner, due, overdue, escalation level), assignments, meetings, timeline.

    `fresh` (a live workflow query) only for those domain.permissions allows (403 wrong_role otherwise).
    """
    access = await open_case(res, user, case_id)
    if fresh:
        refuse(permissions.may_read_fresh(user))
    return await case_answer(res, user, access, fresh=fresh, route="GET /intakes/{case_id}")


async def case_answer(
    res: Resources, user: CurrentUser, access: CaseAccess, *, fresh: bool = False, route: str
) -> CaseView:
    """The case as `user` may see it, from the projection (or the workflow when asked or not yet projected)."""
    pool = await res.pool()
    row = access.row
    events = await bounded(res, queries.case_events(pool, access.case_id))
    state = None if fresh else state_from_row(row)
    source: Literal["workflow", "projection", "created"] = "projection"
    if state is None:
        # Asked for fresh data, or the workflow has not reported yet: ask it (bounded), else the row.
        try:
            client = await res.client()
            wait = res.timeout if fresh else min(res.timeout, QUERY_WHEN_UNPROJECTED_SECONDS)
            state = await query_state(client, case_id=access.case_id, timeout=wait)
        except ApiError:
            state = None
        source = "workflow" if state is not None else "projection"
        if state is None:
            state = state_from_row(row)
            source = "projection" if state is not None else "created"
    assignments = await bounded(res, queries.case_assignments(pool, access.case_id))
    view = case_view(row, state, timeline(events, state), source, assignments=assignments, contact=access.contact)
    return await shown(res, user, access, view, route)


async def shown(res: Resources, user: CurrentUser, access: CaseAccess, view: CaseView, route: str) -> CaseView:
    """The answer as `user` may see it: the full phone recorded as read, or every phone masked."""
    if access.contact:
        await record_contact(res, user, [access.case_id], route)
        return view
    return redact(view)


async def case_messages(
    res: Resources, case_id: int, *, user: CurrentUser, channel: str = "sms"
) -> MessageList:
    """The SMS sent (or being sent) to the client of the case; or its staff notices (the manager and the
    director see all of them, others only those sent to themselves)."""
    access = await open_case(res, user, case_id)
    pool = await res.pool()
    mine = None if channel == "sms" else permissions.notices_for(user)
    rows = await bounded(res, queries.case_messages(pool, case_id, channel, mine))
    now, tz = datetime.now(UTC), case_policy(res, access.row).calendar.timezone
    contact = access.contact and bool(rows)
    if contact and channel == "sms":
        # The recipient of an SMS is the client's phone: full only for those who may see it (and recorded).
        await record_contact(res, user, [case_id], "GET /intakes/{case_id}/messages")

    def item(r: asyncpg.Record) -> MessageItem:
        data = dict(r)
        if not contact:
            data["text"] = mask_phones_in(data["text"] or "")
            data["last_error"] = mask_phones_in(data["last_error"]) if data["last_error"] else data["last_error"]
            if channel == "sms":
                data["recipient"] = mask_phone(data["recipient"])
        held = data["not_before"]
        if held is not None and data["status"] == "pending" and held > now:
            why = "客户免打扰时段" if channel == "sms" else "接收人下班时间"
            data["held"] = f"暂缓至 {local_time(held, tz)} 发送（{why}）"
        return MessageItem(**data)

    return MessageList(case_id=case_id, items=[item(r) for r in rows])


# --- allocation (shared with the assignment steps) --------------------------------------------


def case_policy(res: Resources, row: asyncpg.Record) -> Policy:
    """The policy the case started with (SPEC §4), not today's file."""
    return Policy.model_validate(row["policy"]) if row["policy"] else res.policy()


def required_level(res: Resources, row: asyncpg.Record, level: Level | None = None) -> Level:
    """The designer level a case needs: as being agreed now, agreed at the callback, else from the budget."""
    return level or engine.required_level(state_from_row(row), case_policy(res, row), row["budget"])


async def designer_ranking(
    res: Resources,
    pool: asyncpg.Pool,
    row: asyncpg.Record,
    *,
    include_ineligible: bool = False,
    level: Level | None = None,
    meeting_at: datetime | None = None,
    branch_id: int | None = None,
) -> list[DesignerSuggestion]:
    """Designers for a case in rotation order (轮单) with their reasons, from the projection's state; of the
    case's branch, or of `branch_id` (a transfer).

    `level` and `meeting_at` stand for what the manager is agreeing with the client during the callback.
    """
    state = state_from_row(row)
    policy = case_policy(res, row)
    if meeting_at is None:
        meeting_at = row["meeting_at"]
        if state is not None and (m := state.meeting("meeting")) is not None:
            meeting_at = m.at
    ranked: list[DesignerSuggestion] = await bounded(
        res,
        AllocationRepository(pool).designer_suggestions(
            case_id=row["id"],
            scenario=Scenario(row["scenario"]),
            required_level=required_level(res, row, level),
            meeting_at=meeting_at,
            compound=row["compound"],
            exclude_case_from_counts=True,
            max_open_by_level=policy.max_open_cases,
            tz=policy.calendar.timezone,
            include_ineligible=include_ineligible,
            branch_id=branch_id,
        ),
    )
    if row["previous_case_id"] is not None:
        # A returning client (查重): the designer who served them before comes first, if eligible.
        earlier = await bounded(res, queries.case_designer(pool, row["previous_case_id"]))
        ranked = duplicates.earlier_designer_first(ranked, earlier, row["previous_case_id"])
    return ranked


async def assistant_ranking(
    res: Resources, pool: asyncpg.Pool, case_id: int, *, branch_id: int | None = None
) -> list[Suggestion]:
    """Assistants for a case (of its branch, or of `branch_id`), fewest open cases first."""
    ranked: list[Suggestion] = await bounded(
        res, AllocationRepository(pool).suggest_assistants(SuggestAssistants(case_id=case_id), branch_id=branch_id)
    )
    return ranked


async def designer_suggestions(
    res: Resources, user: CurrentUser, case_id: int, *, include_ineligible: bool = False,
    level: Level | None = None,
) -> SuggestionList:
    """Ranked eligible designers for the case (rotation 轮单), each with its reasons; managers only.

    Readable at any open stage, also while the callback is open (the level being agreed may be given).
    """
    access = await open_case_for(res, user, case_id, Action.suggestions)
    pool = await res.pool()
    level = required_level(res, access.row, level)
    ranked = await designer_ranking(res, pool, access.row, include_ineligible=include_ineligible, level=level)
    items = [
        SuggestionItem(
            staff=s.staff,
            rank=s.rank,
            eligible=s.eligible,
            reasons=list(s.reasons),
            open_cases=s.open_cases,
            last_assigned_at=s.last_assigned_at,
        )
        for s in ranked
    ]
    row = access.row
    phones = [row["client_phone"], *([row["second_phone"]] if row["second_phone"] else [])]
    matches = await bounded(res, queries.matching_cases(pool, phones=phones, house_key=row["house_key"],
                                                        viewer=viewer(user), exclude_id=case_id))
    related = [
        RelatedCase(case_id=m["id"], status=m["status"], outcome=m["outcome"], designer=m["designer_name"],
                    matched_by=m["matched_by"],
                    reason=f"{duplicates.BY_LABELS[m['matched_by']]}相同")
        for m in matches if m["visible"]
    ]
    return SuggestionList(case_id=case_id, required_level=level, items=items, returning=row["returning_reason"],
                          related_cases=related)


async def first_suggestion(
    res: Resources, row: asyncpg.Record, step: StepName, payload: dict[str, Any] | None = None
) -> StaffRef | None:
    """The first of the ranked suggestions for an assignment step, as the manager sees them now.

    A callback that names the designer is ranked against what it agrees (level, meeting time).
    """
    payload = payload or {}
    callback_choice = step == StepName.callback and payload.get("designer_id") is not None
    if step not in (StepName.assign_designer, StepName.assign_assistant) and not callback_choice:
        return None
    pool = await res.pool()
    ranked: list[Any]
    try:
        if callback_choice:
            level = Level(payload["designer_level"]) if payload.get("designer_level") else None
            at = datetime.fromisoformat(payload["meeting_at"]) if payload.get("meeting_at") else None
            ranked = await designer_ranking(res, pool, row, level=level, meeting_at=at)
        else:
            ranked = await (designer_ranking(res, pool, row) if step == StepName.assign_designer
                            else assistant_ranking(res, pool, row["id"]))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - without suggestions the owner simply has to choose
        log.warning("suggestions for case %s unavailable: %r", row["id"], exc)
        return None
    eligible = [s for s in ranked if getattr(s, "eligible", True)]
    return eligible[0].staff if eligible else None
