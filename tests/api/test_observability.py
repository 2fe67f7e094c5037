"""SPEC §12 operations: JSON log lines with a request id and never a client's name or phone; /metrics
after an end-to-end case; the Temporal SDK's worker metrics through the runtime's Prometheus exporter."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from connections import metrics_runtime
from observability import JsonFormatter, scrub
from tests.api.conftest import Api, future, open_steps, unique_phone
from tests.api.test_scenarios import messages


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log record of the process (API, worker, dispatcher) as the JSON lines production writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


async def test_an_end_to_end_case_logs_json_lines_without_client_data(api: Api, json_logs: io.StringIO) -> None:
    name = "欧阳" + uuid.uuid4().hex[:6]
    phone = unique_phone()
    body = api.intake_body("remote", client={"name": name, "phone": phone, "address": "秘密路 8 号"})
    r = await api.http.post("/intakes", json=body, headers={**api.h("consultant"), "X-Request-ID": "req-e2e-1"})
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "req-e2e-1"
    cid = r.json()["id"]
    meet = future()
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": api.people["designer"].id, "reason": "测试"})
    await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    s = await api.ok_step(cid, "first_meeting", "designer", {"true_needs": "三室两厅", "measure_agreed": False, "measure_reason": "客户要先看方案",
                                                        "visited_site": True, "visited_material_store": True,
                                                        "seen_off": True})
    assert open_steps(s) == {"debrief"}
    await api.ok_step(cid, "debrief", "manager", {"findings": "好"})
    await api.ok_step(cid, "outcome", "manager", {"outcome": "signed"})
    await messages(api, cid, {"T1", "T3"})
    # reads of every kind, and errors
    for url in (f"/intakes/{cid}", "/intakes", f"/intakes/{cid}/messages", "/me/tasks", "/intakes/abc"):
        await api.http.get(url, headers=api.h("manager"))
    dup = await api.http.post("/intakes", json=api.intake_body(client={"phone": "13800000000"}),
                              headers=api.h("consultant"))
    assert dup.status_code in (201, 409)
    # a generated request id when none is given
    r = await api.http.get("/healthz")
    assert len(r.headers["x-request-id"]) >= 16

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.strip()]
    assert lines, "nothing logged"
    text = json_logs.getvalue()
    assert name not in text and phone not in text and "秘密路" not in text
    access = [x for x in lines if x.get("logger") == "intake.access"]
    created = [x for x in access if x.get("request_id") == "req-e2e-1"]
    assert created and created[0]["http"]["route"] == "/intakes" and created[0]["http"]["status"] == 201
    assert created[0]["staff_id"] == api.people["consultant"].id and created[0]["case_id"] == cid
    step_lines = [x for x in access if x.get("case_id") == cid and "/steps/" in x["http"]["route"]]
    assert step_lines and all(x["staff_id"] and x["request_id"] for x in step_lines)


def test_scrub_masks_mobile_numbers() -> None:
    assert scrub("Key (client_phone)=(13812345678) exists") == "Key (client_phone)=(138****5678) exists"
    assert scrub("order 2013812345678901") == "order 2013812345678901"  # not a phone on its own


async def test_metrics_after_an_end_to_end_run(api: Api) -> None:
    c = await api.create("consultant", "remote")
    await api.ok_step(c["id"], "callback", "manager", {"reached": False})
    r = await api.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'intake_http_requests_total{method="POST",route="/intakes",status="201"}' in text
    assert 'route="/intakes/{case_id}/steps/callback"' in text
    assert "intake_http_request_duration_seconds_bucket" in text
    for family in ("intake_outbox_messages", "intake_escalations", "intake_steps_overdue",
                   "intake_reconciler_repairs", "intake_cases"):
        assert f"# TYPE {family} gauge" in text, family
    assert "intake_db_metrics_up 1.0" in text
    assert 'intake_outbox_messages{channel="' in text  # the manager's notice at least
    assert "/intakes/" + str(c["id"]) not in text  # route templates label series, never ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_sdk_metrics_through_the_runtime_exporter(client: Client) -> None:
    port = _free_port()
    runtime = metrics_runtime(f"127.0.0.1:{port}")
    sdk_client = await Client.connect(
        client.service_client.config.target_host, namespace=client.namespace, runtime=runtime
    )

    from workflows.intake import IntakeWorkflow

    async with Worker(sdk_client, task_queue=f"metrics-{uuid.uuid4().hex[:8]}", workflows=[IntakeWorkflow]):
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                if "temporal_num_pollers" in text or "temporal_worker_task_slots_available" in text:
                    break
                await asyncio.sleep(0.2)
    assert "temporal_" in text and (
        "temporal_num_pollers" in text or "temporal_worker_task_slots_available" in text
    ), text[:500]
