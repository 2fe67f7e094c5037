"""The policy as managed data (SPEC §16): its YAML text, a form generated from its model, a diff of two versions.

Pure. The form is generated from :class:`domain.policy.Policy` itself: a field per scalar (switches,
numbers, durations, choices), a field per member of an enum-keyed table (each step's duration, each
level's maximum), a YAML box for the rest (calendar hours, escalation stages, per-step chains, lists).
What the form sends is checked by the same model as a policy file (:func:`domain.policy.parse_policy`
on the YAML the form makes), so the errors are the file's errors.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from domain.enums import LEVEL_LABELS, STEP_LABELS, Level, StepName
from domain.policy import Policy, parse_policy

LABELS: dict[str, str] = {
    "name": "名称",
    "calendar": "营业日历",
    "calendar.timezone": "时区",
    "calendar.always_open": "全天候计时（演示、测试用）",
    "calendar.hours": "每周营业时间（0=周一）",
    "calendar.holidays": "节假日",
    "calendar.makeup_workdays": "调休上班日",
    "calendar.makeup_hours": "调休日营业时间",
    "durations": "各步骤时限",
    "walk_in_assignment": "自然客户分配时限（自然时间）",
    "meeting_grace": "见面、量房的宽限",
    "callback_retry_interval": "回访未接通重拨间隔",
    "callback_max_attempts": "回访最多次数",
    "escalation": "升级链（全部步骤）",
    "escalation.stages": "各级（到期后多久、通知谁）",
    "escalation.repeat_every": "之后每隔多久重复",
    "escalation.repeat_target": "重复通知谁",
    "escalation_overrides": "个别步骤的升级链",
    "client_reminder_before": "见面前提醒客户",
    "staff_reminder_before": "见面前提醒设计师、助理",
    "manager_reminder_before": "到店前提醒经理",
    "followups": "等待签单时的跟进提醒",
    "default_level": "默认设计师级别",
    "level_by_budget": "按预算要求的级别",
    "max_open_cases": "各级别最多在手案例",
    "auto_assign_designer": "系统自动按轮单分配设计师",
    "reclaim_at_level": "升级到第几级时掉保收回（空=不收回）",
    "send_attempt_timeout": "单次发送超时",
    "case_row_wait": "（旧版字段）等待案例行",
    "continue_as_new_after_events": "历史事件数上限（continue-as-new）",
    "escalation_max_repeats": "升级最多重复次数",
    "projection_grace": "视图核对延迟",
    "events_kept": "流程内保留的时间线条数",
}
_ENUM_LABELS: dict[type[Enum], dict[Any, str]] = {StepName: dict(STEP_LABELS), Level: dict(LEVEL_LABELS)}
_TARGET_LABELS = {"owner": "本人", "superior": "上级", "director": "总经理"}

Kind = Literal["bool", "int", "text", "duration", "choice", "yaml"]


@dataclass
class PolicyField:
    """One input of the policy form: its path in the policy, label, kind, value as shown, choices, error."""

    path: str
    label: str
    kind: Kind
    value: str = ""
    checked: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)
    optional: bool = False
    error: str | None = None
    group: str = ""


def policy_yaml(policy: Policy) -> str:
    """The policy as a YAML document a policy file could hold (durations in ISO 8601)."""
    return yaml.safe_dump(policy.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type, optional?) of `X | None`."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return str(_iso(value))
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _iso(value: timedelta) -> Any:
    class _Wrap(BaseModel):
        v: timedelta

    return _Wrap(v=value).model_dump(mode="json")["v"]


def _scalar(path: str, label: str, tp: Any, optional: bool, value: Any, group: str) -> PolicyField | None:
    if tp is bool:
        return PolicyField(path, label, "bool", checked=bool(value), group=group)
    if tp is int:
        return PolicyField(path, label, "int", _shown(value), optional=optional, group=group)
    if tp is str:
        return PolicyField(path, label, "text", _shown(value), optional=optional, group=group)
    if tp is timedelta:
        return PolicyField(path, label, "duration", _shown(value), optional=optional, group=group)
    if isinstance(tp, type) and issubclass(tp, Enum):
        names = _ENUM_LABELS.get(tp, {})
        return PolicyField(path, label, "choice", _shown(value), choices=[(m.value, names.get(m, m.value)) for m in tp],
                           optional=optional, group=group)
    if get_origin(tp) is Literal:
        return PolicyField(path, label, "choice", _shown(value),
                           choices=[(str(a), _TARGET_LABELS.get(str(a), str(a))) for a in get_args(tp)],
                           optional=optional, group=group)
    return None


def form_fields(policy: Policy, model: type[BaseModel] = Policy, prefix: str = "", group: str = "") -> list[PolicyField]:
    """The policy form, generated from the model: one field per scalar or enum-keyed entry, YAML for the rest."""
    out: list[PolicyField] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        label = LABELS.get(path, name)
        value = getattr(policy, name)
        tp, optional = _unwrap(info.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and value is not None:
            out += form_fields(value, tp, f"{path}.", label)
            continue  # (an optional section left out, e.g. no quiet hours, is edited as YAML below)
        scalar = _scalar(path, label, tp, optional, value, group)
        if scalar is not None:
            out.append(scalar)
            continue
        if get_origin(tp) is dict:
            key_t, val_t = get_args(tp)
            if isinstance(key_t, type) and issubclass(key_t, Enum) and _scalar("", "", val_t, False, None, "") is not None:
                names = _ENUM_LABELS.get(key_t, {})
                for member in key_t:
                    f = _scalar(f"{path}.{member.value}", names.get(member, member.value), val_t, True,
                                value.get(member), label)
                    assert f is not None
                    f.optional = True
                    out.append(f)
                continue
        dumped = policy.model_dump(mode="json") if not prefix else None
        raw = value.model_dump(mode="json") if isinstance(value, BaseModel) else _jsonable(value, dumped, name)
        out.append(PolicyField(path, label, "yaml", yaml.safe_dump(raw, allow_unicode=True, sort_keys=False).strip(),
                               group=group))
    return out


def _jsonable(value: Any, dumped: dict[str, Any] | None, name: str) -> Any:
    class _Wrap(BaseModel):
        v: Any

    if dumped is not None and name in dumped:
        return dumped[name]
    return _Wrap(v=value).model_dump(mode="json")["v"]


def form_data(fields: list[PolicyField], form: dict[str, str], checked: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy document a submitted form describes, and errors of fields that are not even YAML."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = form.get(f.path, "")
        value: Any
        if f.kind == "bool":
            value = f.path in checked
        elif f.kind == "yaml":
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as exc:
                errors[f.path] = f"不是有效的 YAML：{exc}"
                continue
            if value is None:
                continue
        elif raw.strip() == "":
            if f.optional and f.path.count(".") == 0:
                value = None
            else:
                continue  # an empty entry of a table: the policy's default for it
        elif f.kind == "int":
            value = int(raw) if raw.strip().lstrip("-").isdigit() else raw
        else:
            value = raw.strip()
        _put(data, f.path.split("."), value)
    return data, errors


def _put(data: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def parse_form(fields: list[PolicyField], form: dict[str, str], checked: set[str]) -> tuple[Policy | None, str,
                                                                                         dict[str, str]]:
    """(the policy or None, its YAML, errors by field path): checked exactly as a policy file is."""
    data, errors = form_data(fields, form, checked)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if errors:
        return None, text, errors
    policy, errs = parse_text(text)
    return policy, text, errs


def parse_text(text: str) -> tuple[Policy | None, dict[str, str]]:
    """A YAML policy document, as `intake` reads a policy file: the policy, or the errors by path."""
    try:
        return parse_policy(text), {}
    except ValidationError as exc:
        out: dict[str, str] = {}
        for e in exc.errors():
            path = ".".join(str(p) for p in e["loc"])
            out.setdefault(path or "name", e["msg"])
        return None, out
    except (ValueError, yaml.YAMLError) as exc:
        return None, {"": str(exc)}


def attach_errors(fields: list[PolicyField], errors: dict[str, str]) -> list[str]:
    """Put each error beside its field (the longest path that starts it); returns those no field took."""
    left: list[str] = []
    by_path = {f.path: f for f in fields}
    for path, msg in errors.items():
        parts = path.split(".")
        target = next((by_path[".".join(parts[:i])] for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in by_path),
                      None)
        if target is None:
            left.append(f"{path}: {msg}" if path else msg)
        else:
            target.error = f"{path}: {msg}" if target.path != path else msg
    return left


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class Change:
    """One difference between two policies: where, the label, before and after (as YAML shows them)."""

    path: str
    label: str
    old: Any
    new: Any


def diff(old: Policy, new: Policy) -> list[Change]:
    """What changed from `old` to `new`, entry by entry (lists compared whole)."""
    a, b = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    out = []
    for path in [*a, *(p for p in b if p not in a)]:
        if a.get(path) != b.get(path):
            parts = path.split(".")
            label = LABELS.get(path) or " · ".join(
                x for x in (LABELS.get(".".join(parts[:-1])), _member_label(parts[-1])) if x) or path
            out.append(Change(path, label, a.get(path), b.get(path)))
    return out


def _member_label(key: str) -> str:
    for names in _ENUM_LABELS.values():
        for member, label in names.items():
            if getattr(member, "value", None) == key:
                return label
    return LABELS.get(key, key)
