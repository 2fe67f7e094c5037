"""`intake dev` as a newcomer runs it: starts everything, stops everything, and finds its data again.

The stack runs as a real subprocess (the console script next to this interpreter) on a temporary
data dir and free ports, without a terminal (stdin closed), exactly as in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config import Settings
from devstack import (
    DEMO_STAFF,
    TOKENS_FILE_NAME,
    EmbeddedPostgres,
    api_process_count,
    local_codec_endpoint,
    read_demo_tokens,
    temporal_dev_command,
)
from domain.constants import SEARCH_ATTRIBUTE_CLI_TYPES
from tests.support.wait import until_sync

INTAKE = Path(sys.executable).parent / "intake"
START_WITHIN = 60.0
STOP_WITHIN = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevProcess:
    """One `intake dev` subprocess and what it prints."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.data_dir = Path(env["INTAKE_DATA_DIR"])
        self.api = f"http://127.0.0.1:{env['INTAKE_API_PORT']}"
        self.ui = f"http://127.0.0.1:{env['INTAKE_TEMPORAL_UI_PORT']}"
        with log.open("wb") as out:
            # Own session: our SIGINT reaches `intake dev` alone, as a Ctrl-C would reach only it.
            self.proc = subprocess.Popen(
                [str(INTAKE), "dev"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        """Poll until /healthz, /readyz, the Temporal UI and the banner are all there."""
        deadline = time.monotonic() + START_WITHIN
        pending = {f"{self.api}/healthz", f"{self.api}/readyz", f"{self.ui}/"}
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"intake dev exited with {self.proc.returncode}:\n{self.output()}")
                for url in list(pending):
                    try:
                        if http.get(url).status_code == 200:
                            pending.discard(url)
                    except httpx.HTTPError:
                        pass
                if not pending and "Press Ctrl-C to stop." in self.output():
                    return
                time.sleep(0.2)
        pytest.fail(f"not ready within {START_WITHIN}s (waiting for {sorted(pending)}):\n{self.output()}")

    def started_pids(self) -> dict[int, str]:
        """Every process this stack runs: our children (Temporal) and the daemonised postgres."""
        pids = {p.pid: " ".join(p.cmdline()) for p in psutil.Process(self.proc.pid).children(recursive=True)}
        pg = EmbeddedPostgres(self.data_dir / "pg").postmaster_pid()
        assert pg is not None, "the embedded postgres is not running"
        postmaster = psutil.Process(pg)
        pids[pg] = " ".join(postmaster.cmdline())
        pids.update({p.pid: p.name() for p in postmaster.children(recursive=True)})
        return pids

    def interrupt_and_wait(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"intake dev did not stop within {STOP_WITHIN}s after SIGINT:\n{self.output()}")

    def kill(self) -> None:
        """Last-resort cleanup when a test failed half-way."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for child in psutil.process_iter(["cmdline"]):
            cmd = " ".join(child.info["cmdline"] or [])
            if str(self.data_dir) in cmd and "start-dev" in cmd:
                child.kill()
        EmbeddedPostgres(self.data_dir / "pg").stop()


def _pollers(address: str, queue: str) -> set[str]:
    """The identities (``<pid>@<host>``) of the processes polling a task queue for workflow and activity tasks."""

    async def describe() -> set[str]:
        client = await Client.connect(address)
        found: set[str] = set()
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            r = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind)
            )
            found |= {p.identity for p in r.pollers}
        return found

    return asyncio.run(describe())


def _listening(pid: int, port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in psutil.Process(pid).net_connections())


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def assert_processes_as_in_production(run: DevProcess, env: dict[str, str]) -> None:
    """The worker in a process of its own, the API in one server process per core but one (at least
    one), none of them `intake dev` itself: only the worker polls the task queue, only the API's processes serve its port."""
    children = psutil.Process(run.proc.pid).children()
    by_role = {" ".join(c.cmdline()[1:4]): c for c in children}
    worker, api = by_role["-m cli worker"], by_role["-m devstack api"]
    servers = [p for p in api.children() if "spawn_main" in " ".join(p.cmdline())] or [api]
    assert len(servers) == api_process_count(), [p.cmdline() for p in api.children()]
    port = int(env["INTAKE_API_PORT"])
    assert not _listening(run.proc.pid, port) and not _listening(worker.pid, port)
    pollers = until_sync(lambda: _pollers(f"127.0.0.1:{env['INTAKE_TEMPORAL_PORT']}", Settings().task_queue),
                         30, "the worker polls the task queue")
    assert {p.split("@")[0] for p in pollers} == {str(worker.pid)}, (pollers, worker.pid, api.pid)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_all_gone(pids: dict[int, str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    orphans = {pid: cmd for pid, cmd in pids.items() if _alive(pid)}
    assert not orphans, f"processes left behind: {orphans}"


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    for name in ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
        env.pop(name, None)  # no database URL, no Temporal: the embedded defaults
    env.update(
        INTAKE_DATA_DIR=str(tmp_path / "data"),
        INTAKE_API_HOST="127.0.0.1",
        INTAKE_API_PORT=str(_free_port()),
        INTAKE_TEMPORAL_PORT=str(_free_port()),
        INTAKE_TEMPORAL_UI_PORT=str(_free_port()),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def started() -> Iterator[list[DevProcess]]:
    """The stacks a test started; killed (with their postgres) if the test failed half-way."""
    runs: list[DevProcess] = []
    try:
        yield runs
    finally:
        for run in runs:
            run.kill()


def _staff_list(env: dict[str, str]) -> list[list[str]]:
    out = subprocess.run(
        [str(INTAKE), "staff", "list"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]


def test_dev_stack_starts_stops_cleanly_and_keeps_its_data(
    dev_env: dict[str, str], tmp_path: Path, started: list[DevProcess]
) -> None:
    data_dir = Path(dev_env["INTAKE_DATA_DIR"])
    tokens_file = data_dir / TOKENS_FILE_NAME

    # First run: creates PostgreSQL and the Temporal SQLite file, seeds the demo staff.
    first = DevProcess(dev_env, tmp_path / "run1.log")
    started.append(first)
    first.wait_ready()
    output = first.output()
    assert "http://127.0.0.1:" + dev_env["INTAKE_API_PORT"] + "/docs" in output
    assert first.ui in output
    tokens = read_demo_tokens(tokens_file)
    assert len(tokens) == len(DEMO_STAFF) == 10
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    for t in tokens:
        assert t.token in output, f"token of {t.name} not printed"
    roles = sorted(t.role for t in tokens)
    assert roles.count("designer") == 3 and roles.count("assistant") == 2
    assert {"manager", "director", "assistant_lead", "site_lead", "consultant"} <= set(roles)
    assert len({t.level for t in tokens if t.role == "designer"}) == 3
    assert (data_dir / "temporal.db").exists()

    # The staff console: its address and one personal sign-in link per demo person in the banner.
    base = "http://127.0.0.1:" + dev_env["INTAKE_API_PORT"]
    assert f"Staff console       {base}/console" in output
    links = re.findall(rf"{re.escape(base)}/console/login/\S+", output)
    assert len(links) == len(tokens), output
    manager_id = next(t.staff_id for t in tokens if t.role == "manager")
    manager_link = next(line.split()[-1] for line in output.splitlines()
                        if line.split()[:2] == [str(manager_id), "manager"] and "/console/login/" in line)
    assert "陈建国" in httpx.get(manager_link, timeout=10).text
    signed_in = httpx.post(manager_link, timeout=10)
    assert signed_in.status_code == 303 and "intake_session=" in signed_in.headers["set-cookie"]
    home = httpx.get(f"{base}/console", cookies={"intake_session": signed_in.cookies["intake_session"]}, timeout=10)
    assert home.status_code == 200 and "我的待办" in home.text

    # A case in flight: created by the consultant, called back by the manager.
    by_role = {t.role: t.token for t in tokens}
    consultant = {"Authorization": f"Bearer {by_role['consultant']}"}
    manager = {"Authorization": f"Bearer {by_role['manager']}"}
    created = httpx.post(f"{first.api}/intakes", headers=consultant, timeout=30, json={
        "source": "online", "scenario": "remote",
        "client": {"name": "王建国", "phone": "13912345678", "gender": "male", "budget": 300000}})
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    called = httpx.post(f"{first.api}/intakes/{case_id}/steps/callback", headers=manager, timeout=30,
                        json={"reached": True, "meeting_at": "2035-05-20T10:00:00+08:00"})
    assert called.status_code == 200, called.text
    assert called.json()["stage"] == "assign_designer"

    assert_processes_as_in_production(first, dev_env)
    pids = first.started_pids()
    assert any("start-dev" in cmd for cmd in pids.values()), pids
    assert first.interrupt_and_wait() == 0, first.output()
    _assert_all_gone(pids)
    assert "Stopped." in first.output()
    ports = [int(dev_env[k]) for k in ("INTAKE_API_PORT", "INTAKE_TEMPORAL_PORT", "INTAKE_TEMPORAL_UI_PORT")]
    assert until_sync(lambda: all(_port_free(p) for p in ports), 10, "the stack's ports free again")

    # Second run: same data, same tokens, no second set of demo staff.
    second = DevProcess(dev_env, tmp_path / "run2.log")
    started.append(second)
    second.wait_ready()
    assert "Demo staff created" not in second.output()
    assert read_demo_tokens(tokens_file) == tokens
    for t in tokens:
        assert t.token in second.output()
    link = subprocess.run([str(INTAKE), "staff", "link", str(tokens[0].staff_id)], env=dev_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert link.returncode == 0 and "/console/login/" in link.stdout, link.stderr
    staff = _staff_list(dev_env)  # the CLI reuses the running embedded database
    assert len(staff) == 10
    assert sorted(int(row[0]) for row in staff) == sorted(t.staff_id for t in tokens)
    assert len({row[4] for row in staff}) == 10  # phones: no duplicate demo staff

    # The case survived the restart and goes on from where it was.
    live = _answered_by_workflow(second, case_id, manager)
    assert live["stage"] == "assign_designer", live
    designer = next(t for t in tokens if t.role == "designer")
    assigned = httpx.post(f"{second.api}/intakes/{case_id}/steps/assign_designer", headers=manager, timeout=30,
                          json={"designer_id": designer.staff_id, "reason": "重启后继续"})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["designer"]["id"] == designer.staff_id

    # The Temporal server killed the moment after it took the assignment: its SQLite file is a write-ahead
    # log synced at checkpoints (devstack.TEMPORAL_SQLITE_PRAGMAS), and what it committed is still there.
    pids = second.started_pids()
    server = next(pid for pid, cmd in pids.items() if "start-dev" in cmd)
    os.kill(server, signal.SIGKILL)
    second.interrupt_and_wait()  # the stack stops what is left, whatever it makes of the dead server
    _assert_all_gone(pids)
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'temporal.db'}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    third = DevProcess(dev_env, tmp_path / "run3.log")
    started.append(third)
    third.wait_ready()
    live = _answered_by_workflow(third, case_id, manager)
    assert live["designer"]["id"] == designer.staff_id, live
    assert live["stage"] == assigned.json()["stage"], live
    pids = third.started_pids()
    assert third.interrupt_and_wait() == 0, third.output()
    _assert_all_gone(pids)


def _answered_by_workflow(stack: DevProcess, case_id: int, headers: dict[str, str]) -> dict[str, Any]:
    """The case as its workflow answers it: the first live query after a start replays the history, so
    poll until the answer comes from the workflow rather than the projection."""
    deadline = time.monotonic() + 60
    while True:
        live = httpx.get(f"{stack.api}/intakes/{case_id}?fresh=true", headers=headers, timeout=30)
        assert live.status_code == 200, live.text
        body: dict[str, Any] = live.json()
        if body["state_source"] == "workflow":
            return body
        assert time.monotonic() < deadline, f"the workflow never answered after the restart: {body}"
        time.sleep(0.5)


# --- the helpers behind it (fast) ------------------------------------------------------------------


def test_start_dev_registers_every_search_attribute(tmp_path: Path) -> None:
    cmd = temporal_dev_command(Settings(data_dir=tmp_path, temporal_port=17001, temporal_ui_port=17002))
    registered = dict(cmd[i + 1].split("=") for i, arg in enumerate(cmd) if arg == "--search-attribute")
    assert registered == SEARCH_ATTRIBUTE_CLI_TYPES
    assert cmd[cmd.index("--db-filename") + 1] == str(tmp_path / "temporal.db")
    assert cmd[cmd.index("--port") + 1] == "17001" and cmd[cmd.index("--ui-port") + 1] == "17002"


def test_the_dev_ui_decodes_through_the_local_operator_and_fetches_nothing_outside(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, api_port=18000)
    endpoint = local_codec_endpoint(s, "s" * 43)
    assert endpoint == f"http://127.0.0.1:18000/codec/local/{'s' * 43}"
    cmd = temporal_dev_command(s, ui_codec_endpoint=endpoint)
    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == endpoint
    assert "--ui-disable-news-fetch" in cmd  # the UI's news feed would call the internet
    assert local_codec_endpoint(s.model_copy(update={"api_host": "0.0.0.0"}), "x" * 43) == \
        f"http://127.0.0.1:18000/codec/local/{'x' * 43}"
    # An API on a LAN address only: no loopback credential, staff use their personal codec URLs.
    assert local_codec_endpoint(s.model_copy(update={"api_host": "192.168.1.5"}), "x" * 43) is None
