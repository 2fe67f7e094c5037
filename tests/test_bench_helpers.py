"""The benchmarks' helpers and the scale policy, without a running stack."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.bench_load import role_counts
from benchmarks.benchlib import (
    PhoneMaker,
    at_least,
    at_most,
    collect_tokens,
    pad,
    percentile,
    ratio,
    run_phase,
)
from domain.enums import StepName
from domain.phone import normalize_phone
from domain.policy import parse_policy

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(samples, 101)


def test_ratios_and_verdicts_never_pass_on_nan() -> None:
    assert ratio(9, 10) == pytest.approx(0.9)
    assert math.isnan(ratio(1, 0))
    assert at_least(0.9, 0.9) and not at_least(0.89, 0.9) and not at_least(math.nan, 0.9)
    assert at_most(11.0, 11.0) and not at_most(math.nan, 1.0) and not at_most(1.0, math.nan)


def test_phones_are_valid_and_distinct() -> None:
    make = PhoneMaker("17", 4321)
    phones = [make() for _ in range(1000)]
    assert len(set(phones)) == 1000
    assert all(normalize_phone(p) == p for p in phones)
    with pytest.raises(ValueError):
        PhoneMaker("12", 1)


def test_tokens_from_file_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "demo-tokens.txt"
    f.write_text("# header\n# id\trole\tlevel\tname\ttoken\n1\tmanager\t-\t陈建国\titk_a\n6\tdesigner\tchief\t周一鸣\titk_b\n")
    tokens = collect_tokens(f, ["6:designer:itk_c,9:assistant:itk_d"])
    by_id = {t.staff_id: t for t in tokens}
    assert by_id[1].token == "itk_a" and by_id[6].token == "itk_c" and by_id[9].role == "assistant"
    assert collect_tokens(tmp_path / "missing.txt", []) == []


async def test_run_phase_counts_errors_apart() -> None:
    async def op(i: int) -> None:
        await asyncio.sleep(0)
        if i % 5 == 0:
            raise RuntimeError("no")

    ph = await run_phase("x", 20, 4, op)
    assert ph.ok == 16 and len(ph.errors) == 4 and ph.throughput > 0
    assert len(ph.latencies_ms) + len(ph.error_latencies_ms) == 20


def test_pad_counts_wide_characters() -> None:
    assert pad("情况一", 8) == "情况一  "


def test_scale_policy() -> None:
    """Open calendar; callbacks due after a 60 s creation window; quiet 情况三 cases; one escalation each."""
    p = parse_policy((ROOT / "benchmarks" / "policy_scale.yaml").read_text(encoding="utf-8"))
    assert p.calendar.always_open
    assert p.duration(StepName.callback) > timedelta(seconds=90)
    assert p.duration(StepName.reception_review) >= timedelta(hours=1)
    assert p.escalation.repeat_every is None and p.escalation.stages[0].after == timedelta(0)


def test_burst_policy_makes_every_callback_due_at_the_opening() -> None:
    """--write-burst-policy: closed now, open from the next whole minute after `opens_in`; a callback of a
    case created at any moment before the opening falls due at the opening plus its 180 s of working time."""
    from benchmarks.bench_scale import burst_policy_text
    from domain import calendar

    now = datetime(2026, 12, 3, 2, 49, 42, tzinfo=UTC)  # 10:49:42 in Shanghai
    text, opens = burst_policy_text(15, now=now)
    assert opens == datetime(2026, 12, 3, 3, 5, tzinfo=UTC)  # 11:05 in Shanghai
    p = parse_policy(text)
    assert not p.calendar.always_open
    for created in (now, now + timedelta(minutes=7), opens - timedelta(seconds=1)):
        assert not calendar.is_business_time(p.calendar, created)
        due = calendar.add_business_time(p.calendar, created, p.duration(StepName.callback))
        assert due == opens + timedelta(seconds=180)
    with pytest.raises(SystemExit):  # the opening would be past midnight in Shanghai
        burst_policy_text(60, now=datetime(2026, 12, 3, 15, 30, tzinfo=UTC))


def test_role_counts_follow_the_company_shape() -> None:
    assert role_counts(50) == {"manager": 1, "director": 1, "assistant_lead": 1, "consultant": 12, "designer": 20,
                               "assistant": 15}  # fmt: skip
    for n in range(1, 80):
        counts = role_counts(n)
        assert sum(counts.values()) == n
        if n >= 3:
            assert counts["manager"] == 1 and counts["consultant"] >= 1 and counts["designer"] >= 1
    assert role_counts(6) == dict.fromkeys(role_counts(6), 1)
    with pytest.raises(ValueError):
        role_counts(0)
