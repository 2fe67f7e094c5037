"""The league table of branches (分公司排行, GET /reports/branches): one row per branch and one for them all.

Over the cases created in a period (cases_branch_created_idx, then the steps by primary key): steps done and
done on time, the median time to the callback, signed and lost cases, escalations. Open and stalled cases
are as of now (cases_branch_status_idx): a stalled case is an open one with a step past its due time, as
the morning summary counts them. `branches` limits every figure to those branches (None: the chain).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

_LEAGUE_SQL = """
WITH period AS (
  SELECT c.id, c.branch_id, c.outcome FROM cases c
  WHERE c.created_at >= $1 AND c.created_at < $2 AND c.status <> 'starting'
    AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))
), counted AS (
  -- straight from the tables (not the CTE above), so the planner sees how many cases the period holds;
  -- grouped by branch alone (hashed, no sort): the total is their sum
  SELECT c.branch_id,
    count(*) FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled') AS steps_done,
    count(*) FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled'
                     AND (s.due_at IS NULL OR s.completed_at <= s.due_at)) AS steps_on_time,
    count(*) FILTER (WHERE s.escalation_level > 0) AS escalated_steps,
    coalesce(sum(s.escalation_level), 0)::bigint AS escalations
  FROM cases c JOIN case_steps s ON s.case_id = c.id
  WHERE c.created_at >= $1 AND c.created_at < $2 AND c.status <> 'starting'
    AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))
  GROUP BY c.branch_id
), callbacks AS (
  -- the median needs its own pass, over the callbacks alone, per branch and over them all
  SELECT c.branch_id, count(*) AS callbacks_done,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.completed_at - s.opened_at))
      AS callback_median_seconds
  FROM cases c JOIN case_steps s ON s.case_id = c.id
  WHERE c.created_at >= $1 AND c.created_at < $2 AND c.status <> 'starting'
    AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))
    AND s.step = 'callback' AND s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled'
  GROUP BY GROUPING SETS ((c.branch_id), ())
), steps AS (
  SELECT branch_id, steps_done, steps_on_time, escalated_steps, escalations FROM counted
  UNION ALL
  SELECT NULL, sum(steps_done)::bigint, sum(steps_on_time)::bigint, sum(escalated_steps)::bigint,
    sum(escalations)::bigint FROM counted
), outcomes AS (
  SELECT branch_id, count(*) AS leads,
    count(*) FILTER (WHERE outcome = 'signed') AS signed,
    count(*) FILTER (WHERE outcome = 'lost') AS lost
  FROM period GROUP BY GROUPING SETS ((branch_id), ())
), open_now AS (
  -- the steps past due from the open steps' partial index, joined once (not looked up case by case)
  SELECT c.branch_id, count(*) AS open_cases, count(late.case_id) AS stalled_cases
  FROM cases c
  LEFT JOIN (SELECT DISTINCT s.case_id FROM case_steps s WHERE s.status = 'open' AND s.due_at < $4) late
    ON late.case_id = c.id
  WHERE c.status = 'open' AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))
  GROUP BY GROUPING SETS ((c.branch_id), ())
), keys AS (
  -- every branch in reach that is active or has figures, and NULL: all of them together
  SELECT b.id, b.code, b.name, b.city, b.status FROM branches b
  WHERE ($3::bigint[] IS NULL OR b.id = ANY($3::bigint[]))
    AND (b.status = 'active' OR EXISTS (SELECT 1 FROM outcomes o WHERE o.branch_id = b.id)
         OR EXISTS (SELECT 1 FROM open_now n WHERE n.branch_id = b.id))
  UNION ALL SELECT NULL, NULL, NULL, NULL, NULL
)
SELECT k.id, k.code, k.name, k.city, k.status,
  coalesce(o.leads, 0) AS leads, coalesce(o.signed, 0) AS signed, coalesce(o.lost, 0) AS lost,
  coalesce(s.steps_done, 0) AS steps_done, coalesce(s.steps_on_time, 0) AS steps_on_time,
  coalesce(cb.callbacks_done, 0) AS callbacks_done, cb.callback_median_seconds,
  coalesce(s.escalated_steps, 0) AS escalated_steps, coalesce(s.escalations, 0) AS escalations,
  coalesce(n.open_cases, 0) AS open_cases, coalesce(n.stalled_cases, 0) AS stalled_cases
FROM keys k
LEFT JOIN steps s ON s.branch_id IS NOT DISTINCT FROM k.id
LEFT JOIN callbacks cb ON cb.branch_id IS NOT DISTINCT FROM k.id
LEFT JOIN outcomes o ON o.branch_id IS NOT DISTINCT FROM k.id
LEFT JOIN open_now n ON n.branch_id IS NOT DISTINCT FROM k.id
ORDER BY k.id NULLS LAST
"""


def branch_ids(branches: Iterable[int] | None) -> list[int] | None:
    """The branches of a report as a query parameter (None: every branch)."""
    return None if branches is None else sorted(branches)


async def branch_league(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    period_from: datetime,
    period_to: datetime,
    now: datetime,
    branches: Iterable[int] | None = None,
) -> tuple[list[asyncpg.Record], asyncpg.Record]:
    """Each branch's figures (by id) and, last, the figures of all of them together (id NULL)."""
    rows = await conn.fetch(_LEAGUE_SQL, period_from, period_to, branch_ids(branches), now)
    return list(rows[:-1]), rows[-1]
