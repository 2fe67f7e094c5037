"""Calls from the API to the intake workflow: bounded in time, errors mapped to API answers.

Every call is bounded by ``settings.request_timeout_seconds`` (as the RPC timeout and as an outer
guard that abandons the call, see :mod:`api.bounds`). Outcomes:

* rejected by an update validator -> 409/403/422 with the validator's code (see api.errors);
* the server cannot be reached -> 503 ``temporal_unavailable`` (nothing happened);
* no answer in time -> 503 ``temporal_timeout``: the request may or may not have been applied; a
  retry with the same ``Idempotency-Key`` is the same update (Temporal deduplicates update ids), so
  it is safe to retry and returns the outcome of the first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.bounds import within
from api.errors import ApiError, unavailable, workflow_rejection
from domain.constants import workflow_id
from domain.models import CaseChange, CaseState

if TYPE_CHECKING:
    from workflows.intake import IntakeWorkflow

log = logging.getLogger("intake.api")
T = TypeVar("T")

# The outer guard fires this long after the RPC's own deadline (which gives the more precise error),
# and well before the app's last-resort answer (api.app.REQUEST_TIMEOUT_MARGIN_SECONDS).
GUARD_MARGIN_SECONDS = 0.25


def intake_workflow() -> type[IntakeWorkflow]:
    """The workflow class (imported on first use so the API starts even while workflows/ is rebuilt)."""
    from workflows.intake import IntakeWorkflow

    return IntakeWorkflow


def _unreachable() -> ApiError:
    return unavailable("temporal_unavailable", "流程引擎暂时无法访问，请稍后重试")


def _timeout() -> ApiError:
    return unavailable(
        "temporal_timeout",
        "流程引擎未在规定时间内应答；操作可能尚未生效，请用同一 Idempotency-Key 重试",
    )


async def bounded_temporal(timeout: float, call: Callable[[], Awaitable[T]]) -> T:
    """Run one Temporal call within `timeout` seconds (plus a small margin for the RPC's own deadline)."""
    try:
        # Past the bound the call is abandoned, not awaited (see api.bounds).
        return await within(call(), timeout + GUARD_MARGIN_SECONDS)
    except WorkflowUpdateFailedError as exc:
        raise workflow_rejection(exc.cause) from exc
    except (RPCTimeoutOrCancelledError, TimeoutError) as exc:
        raise _timeout() from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # The workflow has finished (case closed) or never existed.
            raise ApiError(409, "case_closed", "该案例的流程已结束，不能再操作") from exc
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise _timeout() from exc
        log.warning("Temporal RPC failed: %s %s", exc.status, exc.message)
        raise _unreachable() from exc
    except (ConnectionError, OSError) as exc:
        raise _unreachable() from exc


async def execute_update(
    client: Client,
    *,
    case_id: int,
    update: Callable[..., Any],
    arg: Any,
    timeout: float,
    update_id: str | None = None,
) -> CaseChange:
    """Run one update of the case's workflow and return what it decided."""
    handle = client.get_workflow_handle(workflow_id(case_id))

    async def call() -> CaseChange:
        typed_update: Any = update  # a typed workflow update method (IntakeWorkflow.complete_step, ...)
        result: CaseChange = await handle.execute_update(
            typed_update, arg, id=update_id, rpc_timeout=timedelta(seconds=timeout)
        )
        return result

    return await bounded_temporal(timeout, call)


async def query_state(client: Client, *, case_id: int, timeout: float) -> CaseState | None:
    """The live state of a case, or None when the workflow does not answer in `timeout` (never raises)."""
    wf = intake_workflow()
    handle = client.get_workflow_handle(workflow_id(case_id))
    try:
        state: CaseState = await within(
            handle.query(wf.state, rpc_timeout=timedelta(seconds=timeout)), timeout + GUARD_MARGIN_SECONDS
        )
        return state
    except (
        TimeoutError,
        RPCError,
        RPCTimeoutOrCancelledError,
        WorkflowQueryFailedError,
        WorkflowQueryRejectedError,
        ConnectionError,
        OSError,
    ) as exc:
        log.info("live state of case %s unavailable: %r", case_id, exc)
        return None
