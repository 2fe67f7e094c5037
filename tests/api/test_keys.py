"""Payload key operations (issue 14): `intake keys new`, `intake keys status` (key ids the open cases'
histories use), and a worker that refuses to start without a key an open case needs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from background.keyring import MissingPayloadKey, key_ids_in_use
from cli import main
from codec import data_converter, new_key_spec, parse_keys
from domain.constants import WORKFLOW_TYPE, workflow_id
from domain.enums import Role, Scenario, Source
from domain.models import IntakeInput, StaffRef
from domain.policy import fast_policy
from tests.api.conftest import Api
from tests.support.keys import KEYS
from worker import run_worker


def test_keys_new_prints_the_next_free_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from config import get_settings

    monkeypatch.setenv("INTAKE_PAYLOAD_KEYS", "k1:" + new_key_spec("x").split(":", 1)[1])
    get_settings.cache_clear()
    try:
        assert main(["keys", "new"]) == 0
    finally:
        get_settings.cache_clear()
    spec = capsys.readouterr().out.strip()
    assert parse_keys(spec)[0][0] == "k2" and len(parse_keys(spec)[0][1]) == 32


def test_rotation_prints_the_lines_of_each_phase(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Phase 1 adds a decrypt-only key and pins the current one; phase 2 names the new one; a key no
    ring holds is refused."""
    from config import get_settings

    monkeypatch.setenv("INTAKE_PAYLOAD_KEYS", KEYS)  # t2 encrypts (first), t1 decrypts
    get_settings.cache_clear()
    try:
        assert main(["keys", "rotate", "add", "--id", "t3"]) == 0
        lines = dict(line.split("=", 1) for line in capsys.readouterr().out.split())
        assert [k for k, _ in parse_keys(lines["INTAKE_PAYLOAD_KEYS"])] == ["t2", "t1", "t3"]
        assert lines["INTAKE_PAYLOAD_ENCRYPT_KEY_ID"] == "t2"  # the new key does not encrypt yet
        assert main(["keys", "rotate", "encrypt", "t9"]) == 1  # not in the ring: add it first
        monkeypatch.setenv("INTAKE_PAYLOAD_KEYS", lines["INTAKE_PAYLOAD_KEYS"])
        monkeypatch.setenv("INTAKE_PAYLOAD_ENCRYPT_KEY_ID", "t2")
        get_settings.cache_clear()
        capsys.readouterr()
        assert main(["keys", "rotate", "encrypt", "t3"]) == 0
        assert capsys.readouterr().out.strip() == "INTAKE_PAYLOAD_ENCRYPT_KEY_ID=t3"
        assert main(["keys", "rotate", "retire", "t2"]) == 1  # it still encrypts
        assert "encrypts" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


async def test_status_names_the_keys_open_cases_use_and_the_worker_refuses_without_one(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = await api.create("consultant", "remote")
    in_use = await key_ids_in_use(api.client)
    assert workflow_id(c["id"]) in in_use["t2"]  # the test ring's active key

    # a case whose history was written with a key this deployment no longer has
    retired = new_key_spec("t9")
    target = api.client.service_client.config.target_host
    old_client = await Client.connect(target, namespace=api.client.namespace,
                                      data_converter=data_converter(parse_keys(retired)))
    cid = 900_000_000 + uuid.uuid4().int % 1_000_000
    inp = IntakeInput(case_id=cid, source=Source.marketing, scenario=Scenario.remote, created_at=datetime.now(UTC),
                      created_by=StaffRef(id=1, name="x", role=Role.consultant), policy=fast_policy())
    handle = await old_client.start_workflow(WORKFLOW_TYPE, inp, id=workflow_id(cid),
                                             task_queue=f"nobody-{uuid.uuid4().hex[:6]}")
    try:
        await api.until(lambda: _has(api, "t9", workflow_id(cid)), 20, "visible to the key scan")
        settings = api.settings.model_copy(update={"payload_keys": SecretStr(KEYS), "task_queue": "keys-test"})
        with pytest.raises(MissingPayloadKey, match=rf"t9: 1 open case\(s\), e.g. {workflow_id(cid)}"):
            await run_worker(settings, client=api.client, stop=asyncio.Event())

        monkeypatch.setenv("INTAKE_TEMPORAL_ADDRESS", target)
        monkeypatch.setenv("INTAKE_TEMPORAL_NAMESPACE", api.client.namespace)
        monkeypatch.setenv("INTAKE_PAYLOAD_KEYS", KEYS)
        from config import get_settings

        get_settings.cache_clear()
        try:
            assert await asyncio.to_thread(main, ["keys", "status"]) == 1  # missing: exit 1
        finally:
            get_settings.cache_clear()
        out = capsys.readouterr().out
        # retiring a key an open case still needs is refused (t1 encrypts here, t2 is the cases')
        monkeypatch.setenv("INTAKE_PAYLOAD_ENCRYPT_KEY_ID", "t1")
        get_settings.cache_clear()
        try:
            assert await asyncio.to_thread(main, ["keys", "rotate", "retire", "t2"]) == 1
        finally:
            get_settings.cache_clear()
        assert "still need t2" in capsys.readouterr().err
        assert "t2" in out and "encrypts" in out and "decrypt-only" in out and "t9" in out and "MISSING" in out
    finally:
        await handle.terminate("keys test")


async def _has(api: Api, key: str, wf_id: str) -> bool:
    return wf_id in (await key_ids_in_use(api.client)).get(key, [])
