"""The documentation checked against the code (issue 19), fast and without a server: docs/api.md's routes
and error codes against the app and the codes it can send; every `INTAKE_*` named in docs/ and the
README against config.py (and every setting documented); every `intake` command and flag named in
them against the CLI's parser."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
from fastapi import routing
from pydantic import AliasChoices
from starlette.routing import Mount

from config import PROJECT_ROOT, Settings

DOCS = sorted((PROJECT_ROOT / "docs").rglob("*.md"))
PAGES = [PROJECT_ROOT / "README.md", *DOCS]
API_MD = PROJECT_ROOT / "docs" / "api.md"
CONFIGURATION_MD = PROJECT_ROOT / "docs" / "configuration.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# INTAKE_* names that are not settings of config.py, each with the one place that reads it.
NOT_SETTINGS = {
    "INTAKE_TEST_DATABASE_URL": "tests/support/infra.py",  # the tests' PostgreSQL
    "INTAKE_HYPOTHESIS_EXAMPLES": "tests/support/examples.py",  # property tests' size
    "INTAKE_BENCH_TOKENS": "benchmarks/bench_api_vs_raw.py",
    "INTAKE_MIGRATE_DB_PASSWORD": "deploy/postgres-init.sh",  # compose's .env: database users
    "INTAKE_APP_DB_PASSWORD": "deploy/postgres-init.sh",
    "INTAKE_MIGRATE_DB_USER": "deploy/postgres-init.sh",
    "INTAKE_APP_DB_USER": "deploy/postgres-init.sh",
    "INTAKE_DB_NAME": "deploy/postgres-init.sh",
}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of a `## heading` section (up to the next heading of level 1 or 2)."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^#{{1,2}} |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert m, f"no section '## {heading}'"
    return m.group(1)


# --- routes -------------------------------------------------------------------------------------------


def _app_routes() -> set[tuple[str, str]]:
    from api.app import create_app

    app = create_app(Settings(payload_encryption="off"))
    out: set[tuple[str, str]] = set()
    for ctx in routing.iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, Mount):
            out.add(("GET", f"{route.path}/{{path}}"))
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                out.add((method, route.path))  # type: ignore[attr-defined]
    return out


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def _documented_routes() -> set[tuple[str, str]]:
    text = _text(API_MD)
    return {(m.group(1), _shape(m.group(2)))
            for m in re.finditer(rf"`({'|'.join(METHODS)}) (/[^`\s?]*)", text)}


def _covers(pattern: str, path: str) -> bool:
    a, b = pattern.split("/"), _shape(path).split("/")
    return len(a) == len(b) and all(x == y or x == "{}" for x, y in zip(a, b, strict=True))


def test_every_route_the_app_serves_is_in_api_md_and_every_documented_one_exists() -> None:
    served = _app_routes()
    documented = _documented_routes()
    missing = sorted(f"{m} {p}" for m, p in served if not any(dm == m and _covers(dp, p) for dm, dp in documented))
    assert not missing, f"docs/api.md lacks {missing}"
    shapes = {(m, _shape(p)) for m, p in served}
    unknown = sorted(f"{m} {p}" for m, p in documented if (m, p) not in shapes)
    assert not unknown, f"docs/api.md names routes the app does not serve: {unknown}"


# --- error codes ----------------------------------------------------------------------------------------


def _string_args(tree: ast.AST, names: dict[str, int]) -> set[str]:
    """String constants passed at position `names[f]` to calls of f (e.g. ApiError's code)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            pos = names.get(name or "")
            if pos is not None and len(node.args) > pos:
                arg = node.args[pos]
                # a constant, or either branch of `"a" if … else "b"`
                for value in (arg.body, arg.orelse) if isinstance(arg, ast.IfExp) else (arg,):
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        out.add(value.value)
        if isinstance(node, ast.Dict):  # {"code": "...", "message": ...} answered directly
            for k, v in zip(node.keys, node.values, strict=True):
                if (isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant)
                        and isinstance(v.value, str)):
                    out.add(v.value)
    return out


def codes_the_api_sends() -> set[str]:
    """Every error code an answer of the API can carry, from the code (not from a list kept by hand)."""
    from api import errors

    sent: set[str] = set()
    for path in (PROJECT_ROOT / "api").rglob("*.py"):
        sent |= _string_args(ast.parse(_text(path)), {"ApiError": 1, "unavailable": 0})
    # refusals and rejections decided in domain/ and store/ that the API passes on by their code
    for folder in ("domain", "store"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            sent |= _string_args(ast.parse(_text(path)), {"Rejected": 0, "Refusal": 0, "StaffError": 0,
                                                          "CredentialError": 0, "BranchError": 0})
    raised_by_workflow = sent | {"case_id_mismatch"}
    dead = set(errors.WORKFLOW_ERROR_STATUS) - raised_by_workflow
    assert not dead, f"api/errors.py maps workflow rejections nobody raises: {sorted(dead)}"
    sent |= {code for code, _ in errors._STATUS_CODES.values()}  # Starlette's own errors, re-shaped
    sent |= {code for code, _ in errors._PATH_IDS.values()}
    return sent


def _documented_codes() -> set[str]:
    table = _section(_text(API_MD), "Errors")
    rows = [line.split("|")[2] for line in table.splitlines() if line.startswith("| ") and line.count("|") >= 3]
    codes: set[str] = set()
    for cell in rows:
        cell = re.sub(r"\([^)]*\)", "", cell)  # explanations name fields and settings, not codes
        codes |= {c for c in re.findall(r"`([a-z][a-z0-9_]+)`", cell)}
    return codes


def test_api_md_lists_exactly_the_error_codes_the_api_sends() -> None:
    sent, documented = codes_the_api_sends(), _documented_codes()
    assert not sent - documented, f"docs/api.md lacks {sorted(sent - documented)}"
    assert not documented - sent, f"docs/api.md lists codes never sent: {sorted(documented - sent)}"


# --- settings -------------------------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"INTAKE_{field_name.upper()}")
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_setting_a_page_names_exists(page: Path) -> None:
    known = settings_env_names() | set(NOT_SETTINGS)
    named = set(re.findall(r"INTAKE_[A-Z0-9_]*[A-Z0-9]_?", _text(page)))
    unknown = sorted(n for n in named
                     if n not in known and not (n.endswith("_") and any(k.startswith(n) for k in known)))
    assert not unknown, f"{page.name} names settings config.py does not have: {unknown}"


def test_the_names_that_are_not_settings_are_read_where_they_say() -> None:
    for name, where in NOT_SETTINGS.items():
        assert name in _text(PROJECT_ROOT / where), f"{name} is not read in {where}"


def test_the_configuration_page_documents_every_setting() -> None:
    text = _text(CONFIGURATION_MD)
    missing = sorted(n for n in settings_env_names() if f"`{n}`" not in text)
    assert not missing, f"docs/configuration.md lacks {missing}"


# --- commands -------------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _code_of(text: str) -> list[str]:
    """Inline code spans and the lines of fenced code blocks."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return [line for b in blocks for line in b.splitlines()] + re.findall(r"`([^`\n]+)`", rest)


def intake_commands(text: str) -> list[str]:
    """Every `intake …` command line in the code of a page, up to a shell separator or comment."""
    out: list[str] = []
    for code in _code_of(text):
        # `intake` as a command: first on the line (a path before it allowed), after a shell separator,
        # or run in a compose service; never a word of a sentence ("Client intake is running.")
        starts = r"(?:^\s*(?:\$\s*)?(?:[\w.~-]*/)*|(?:&&|;|\|)\s*|compose (?:run|exec)\b.*? (?:tools|worker|api|migrate) )"
        for m in re.finditer(starts + r"intake((?: +(?![>#])[^\s;&|]+)+)", code):
            out.append(m.group(1).strip())
    return out


def check_command(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """None when `words` (after `intake`) name a command and its options; else what is wrong."""
    current, path = parser, ["intake"]
    subs = _subparsers(current)
    while words and subs:
        word = words[0]
        if word not in subs:
            if word.startswith(("…", "...")):  # "`intake …`": any command
                return None
            if word.startswith(("-", "[", "<")) and not path[1:]:
                return f"`{' '.join(path)} {word}`: no command"
            if path[1:] or word.isidentifier() or re.fullmatch(r"[a-z][a-z-]*", word):
                return f"`{' '.join(path)}` has no command {word!r} ({', '.join(sorted(subs))})"
            return None
        current, path, words = subs[word], [*path, word], words[1:]
        subs = _subparsers(current)
    options = _options(current)
    for word in words:
        flag = re.match(r"\[?(--[a-z][a-z0-9-]*)", word)
        if flag and flag.group(1) not in options:
            return f"`{' '.join(path)}` has no option {flag.group(1)} ({', '.join(sorted(options))})"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_intake_command_a_page_names_exists(page: Path) -> None:
    from cli import build_parser

    parser = build_parser()
    problems = [p for line in intake_commands(_text(page)) if (p := check_command(parser, line.split()))]
    assert not problems, f"{page.name}: {problems}"


def test_the_command_check_finds_what_does_not_exist() -> None:
    from cli import build_parser

    parser = build_parser()
    assert check_command(parser, ["keys", "rotate", "add", "--id", "k3"]) is None
    assert check_command(parser, ["staff", "edit", "7", "--level", "none"]) is None
    assert check_command(parser, ["keys", "retire", "k1"]) is not None
    assert check_command(parser, ["migrate", "--wait", "60", "--force"]) is not None
    assert intake_commands("run `.venv/bin/intake cases upgrade --dry-run` then\n```sh\nintake prune # now\n```") == [
        "prune", "cases upgrade --dry-run"]


# --- the README's banner --------------------------------------------------------------------------------


def test_the_readme_shows_the_banner_make_run_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every line of the README's banner is a line `intake dev` prints, with `…` for what differs per run."""
    from types import SimpleNamespace

    import devstack

    data = tmp_path / ".data"
    data.mkdir()
    tokens = [devstack.DemoToken(staff_id=i, role=role, level=level, name=name, token=f"itk_{i}")
              for i, (role, level, name) in enumerate(
                  (("manager", "-", "陈建国"), ("director", "-", "王志强"), ("assistant_lead", "-", "刘敏"),
                   ("site_lead", "-", "赵磊"), ("consultant", "-", "孙丽"), ("designer", "chief", "周一鸣"),
                   ("designer", "senior", "吴佳"), ("designer", "designer", "郑浩"), ("assistant", "-", "林小雨"),
                   ("assistant", "-", "黄婷")), start=1)]
    (data / devstack.TOKENS_FILE_NAME).write_text("\n".join(
        f"{t.staff_id}\t{t.role}\t{t.level}\t{t.name}\t{t.token}" for t in tokens), encoding="utf-8")
    settings = Settings(data_dir=data, temporal_address="127.0.0.1:7233", payload_encryption="off")
    stack = SimpleNamespace(temporal=object(), local_codec=object(), pg=SimpleNamespace(pgdata=data / "pg"))
    devstack.DevStack._banner(stack, settings, links={t.staff_id: "x" for t in tokens})  # type: ignore[arg-type]
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]

    readme = _text(PROJECT_ROOT / "README.md")
    block = re.search(r"^```\n(=+\nClient intake is running\..*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    assert block, "the README shows no banner"
    for line in block.group(1).splitlines():
        if line.strip() in ("…", ""):
            continue
        pattern = ".*".join(re.escape(part) for part in re.split(r"…", line.rstrip()))
        pattern = re.sub(r"(\\ )+", r"\\s+", pattern)  # columns are padded to widths
        assert any(re.fullmatch(pattern, p) for p in printed), f"`intake dev` prints no line like {line!r}"
