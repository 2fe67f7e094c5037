"""A property-based run over the OpenAPI schema (schemathesis): no 500, no answer that breaks the schema.

The app is served over real HTTP by uvicorn inside the test's event loop (its pool and Temporal client
live there); schemathesis runs in a worker thread and speaks HTTP to it. Every operation gets
generated valid and invalid requests, with a manager's token, against a real case and random ids.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import sys
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from domain.policy import fast_policy
from tests.api.conftest import Api, future
from tests.support.wait import until

EXAMPLES_PER_MODE = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Who calls each operation: the owner of a step, else a manager (who may do the most).
OWNER_OF = {"contact": "designer", "first_meeting": "designer", "measure": "designer",
            "assign_assistant": "assistant_lead"}


def property_test(strategy: Any, base_url: str, statuses: list[int]) -> Any:
    """A hypothesis test: each generated request is sent, and its answer checked against the schema."""

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    return run


def fuzz(spec: dict[str, Any], base_url: str, tokens: dict[str, str], case_ids: list[int]) -> list[str]:
    """Run every operation in both generation modes; return the failures, one line each."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        who = OWNER_OF.get(op.path.rsplit("/", 1)[-1], "manager")
        auth = {"Authorization": f"Bearer {tokens[who]}"}
        case_id = case_ids.pop()  # a case of its own: one operation closing it does not blunt the others
        name = f"{op.method.upper()} {op.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [op.as_strategy(generation_mode=mode, headers=auth)]
            if "{case_id}" in op.path:
                strategies.append(
                    op.as_strategy(generation_mode=mode, headers=auth, path_parameters={"case_id": case_id})
                )
            try:
                property_test(st.one_of(strategies), base_url, seen[name])()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters or body)
            except BaseException as exc:  # noqa: BLE001 - collect and go on: one report for the whole schema
                failures.append(f"{name} [{mode.value}]: {str(exc)[:1500]}")
    if os.environ.get("SHOW_FUZZ"):
        for k, v in seen.items():
            print(k, collections.Counter(v))
    return failures


async def test_schema_fuzzing_finds_no_500_and_no_schema_break(api: Api) -> None:
    app = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    case_ids = [(await api.create("consultant", "remote"))["id"] for _ in app.openapi()["paths"]]
    await api.ok_step(case_ids[0], "callback", "manager", {"reached": True, "meeting_at": future()})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # uvicorn exposes a flag, not an event; a server that died answers through its task
        await until(lambda: server.started or serving.done(), timeout=15, what="uvicorn started")
        if serving.done():
            serving.result()
        failures = await asyncio.to_thread(
            fuzz,
            app.openapi(),
            f"http://127.0.0.1:{port}",
            {k: p.token for k, p in api.people.items()},
            case_ids * 2,
        )
    finally:
        server.should_exit = True
        await serving
    assert not failures, "\n\n".join(failures)


# --- schemathesis as its CLI runs it: every check, every phase ---------------------------------------

SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


async def test_schemathesis_all_checks_all_phases(api: Api, tmp_path: Path) -> None:
    """`schemathesis run` with all checks over examples, coverage, fuzzing and the stateful phase (links
    from POST /intakes to every case route), against the app served over HTTP; a bounded budget."""
    app = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or serving.done(), timeout=15, what="uvicorn started")
        if serving.done():
            serving.result()
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(SCHEMATHESIS_CONFIG),
            "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "8"),
            "--max-time", os.environ.get("SCHEMATHESIS_MAX_TIME", "60"),
            "--seed", "20261127", "--generation-deterministic",
            "--workers", "1",
            "--request-timeout", "10",
            "--header", f"Authorization: Bearer {api.people['manager'].token}",
            "--report", "junit", "--report-dir", str(tmp_path),
            "--warnings", "off",
        ]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"}, cwd=tmp_path,  # its cache (.schemathesis/) stays out of the tree
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    finally:
        server.should_exit = True
        await serving
    text = out.decode("utf-8", "replace")
    if os.environ.get("SHOW_FUZZ"):
        print(text)
    assert proc.returncode == 0, text[-12000:]
