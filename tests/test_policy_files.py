"""The shipped policy files parse, and say what the code says: SPEC defaults and the fast demo policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import PROJECT_ROOT, Settings
from connections import load_policy
from domain.policy import Policy, fast_policy, parse_policy

POLICIES = PROJECT_ROOT / "policies"


def test_default_policy_file_is_the_spec_defaults() -> None:
    parsed = parse_policy((POLICIES / "default.yaml").read_text(encoding="utf-8"))
    assert parsed.model_copy(update={"name": "default"}) == Policy()


@pytest.mark.parametrize("name", ["default.yaml", "fast.yaml"])
def test_policy_files_spell_out_every_field(name: str) -> None:
    """A complete example: a field added to Policy must be documented in the shipped files too."""
    import yaml

    data = yaml.safe_load((POLICIES / name).read_text(encoding="utf-8"))
    assert set(data) == set(Policy.model_fields)
    assert set(data["calendar"]) == set(Policy().calendar.model_dump())


def test_fast_policy_file_is_fast_policy() -> None:
    assert parse_policy((POLICIES / "fast.yaml").read_text(encoding="utf-8")) == fast_policy()


def test_load_policy_defaults_without_a_file(tmp_path: Path) -> None:
    assert load_policy(Settings(policy_file=None, data_dir=tmp_path)) == Policy()


def test_load_policy_resolves_project_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # INTAKE_POLICY_FILE=policies/fast.yaml works from any directory
    assert load_policy(Settings(policy_file=Path("policies/fast.yaml"))) == fast_policy()


def test_load_policy_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="policy file not found"):
        load_policy(Settings(policy_file=tmp_path / "nope.yaml"))


def test_load_policy_rejects_typos(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncallback_max_attempt: 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="callback_max_attempt"):
        load_policy(Settings(policy_file=bad))


def test_office_hours_option_parses_weekday_ranges() -> None:
    from datetime import time

    import pytest

    from cli import CliError, parse_office_hours

    assert parse_office_hours("0-4=09:00-18:00;5=10:00-16:00") == {
        **{d: [(time(9), time(18))] for d in range(5)},
        5: [(time(10), time(16))],
    }
    assert parse_office_hours(None) == {}
    for bad in ("7=09:00-18:00", "0=18:00-09:00", "mon=09:00-18:00"):
        with pytest.raises(CliError):
            parse_office_hours(bad)
