"""The shape the code promises (SPEC §13, CONVENTIONS): one authority for permissions, layers apart.

- No role or ownership check outside domain/: who may see and do what is domain/permissions.py's.
- The worker process imports no API module (it runs beside the API, not inside it).
- activities/ holds only Temporal activities and the providers they call.
- workflows/ and domain/ are deterministic: no clock, randomness, environment or I/O module of their own
  (both are passed through Temporal's sandbox, so its run-time checks do not reach them: this test does).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A role compared anywhere (`x.role == …`, `role in (…)`, a template's `user.role.value in …`).
ROLE_CHECK = re.compile(r"\brole(?:\.value)?\s*(?:==|!=|\bin\b|\bnot in\b|\bis\b(?!\s+(?:not\s+)?None))")


def _sources(*patterns: str) -> list[Path]:
    out: list[Path] = []
    for pattern in patterns:
        out += sorted(ROOT.glob(pattern))
    return [p for p in out if ".venv" not in p.parts and "tests" not in p.relative_to(ROOT).parts[:1]]


def test_no_role_check_outside_the_domain() -> None:
    offenders = []
    for path in _sources("**/*.py", "**/*.html"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("domain", "benchmarks", ".data"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix == ".py" else line
            if ROLE_CHECK.search(code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "role checks belong in domain/permissions.py:\n" + "\n".join(offenders)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def _reachable(start: str) -> set[str]:
    """The project's modules `start` imports, transitively."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or name in seen:
            continue
        seen.add(name)
        for imported in _imports(path):
            # `from pkg import mod` names a module too; a parent package's __init__ runs as well
            pieces = imported.split(".")
            todo += [".".join(pieces[: i + 1]) for i in range(len(pieces))]
    return seen


def test_the_worker_imports_no_api_module() -> None:
    reached = _reachable("worker")
    assert "workflows.intake" in reached and "background.dispatcher" in reached  # the scan follows imports
    api = sorted(m for m in reached if m == "api" or m.startswith("api."))
    assert not api, f"the worker process imports {api}"


def test_activities_hold_only_activities_and_providers() -> None:
    for path in sorted((ROOT / "activities").glob("*.py")):
        if path.name in ("__init__.py", "providers.py"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "@activity.defn" in text, f"{path.name} is not a Temporal activity module"
        assert "asyncpg.Pool" not in text or "store." in text, f"{path.name} runs SQL of its own"


def test_alerts_on_database_gauges_hold_with_several_api_processes() -> None:
    """Every API process exports the same database figures: an alert must take one copy before summing."""
    import yaml

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = text.split("## Alerts (PromQL)", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    gauges = ("intake_outbox_messages", "intake_escalations", "intake_steps_overdue", "intake_reconciler_repairs",
              "intake_cases")
    checked = 0
    for rule in rules:
        expr = rule["expr"]
        for gauge in gauges:
            for use in re.finditer(rf"\b{gauge}\b", expr):
                before = expr[: use.start()].rstrip()
                assert before.endswith("max without (instance, job) ("), f"{rule['alert']}: {gauge} summed per process"
                checked += 1
    assert checked >= 4


# What would make a workflow's replay differ from its first run: the wall clock, randomness, the
# process's environment, the network or other processes. (`workflow.now()` is the workflow's clock.)
NONDETERMINISTIC_MODULES = {"random", "secrets", "time", "uuid", "os", "socket", "subprocess", "threading", "httpx",
                            "asyncpg"}
CLOCK_CALLS = {"now", "today", "utcnow", "fromtimestamp"}


def _nondeterministic(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in NONDETERMINISTIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in NONDETERMINISTIC_MODULES:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS:
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "workflow"):
                found.append(f"{ast.unparse(node.func)}() at line {node.lineno}")
    return found


def test_workflows_and_the_engine_read_no_clock_randomness_or_environment() -> None:
    # The scan itself finds what it is for.
    assert _nondeterministic("import time\nfrom datetime import datetime\nx = datetime.now()\n") == [
        "import time", "datetime.now() at line 3"]
    assert _nondeterministic("from temporalio import workflow\nx = workflow.now()\n") == []
    sources = _sources("workflows/*.py", "domain/*.py")
    assert any(p.name == "intake.py" for p in sources) and any(p.name == "engine.py" for p in sources)
    for path in sources:
        found = _nondeterministic(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)}: {found}"
