"""HTML forms generated from pydantic models, and their errors in Chinese beside the field.

A step's form is built from its payload model in ``domain.models.STEP_PAYLOADS`` (through the same
request model the JSON API uses, :func:`api.services.step_body_model`), so a field added to a payload
appears in the console by itself. What the browser sends (strings, an absent checkbox) is turned into
the JSON the API would receive; validation is the model's and the services' own, never repeated here.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from api.errors import ApiError
from domain.enums import (
    LEVEL_LABELS,
    MEETING_KIND_LABELS,
    OUTCOME_LABELS,
    SCENARIO_LABELS,
    SOURCE_LABELS,
    Level,
    MeetingKind,
    Scenario,
    Source,
)

TZ = ZoneInfo("Asia/Shanghai")

# Labels staff read; a field not listed here shows its description (then its name).
FIELD_LABELS: dict[str, str] = {
    "report": "接待人员汇报的情况",
    "reached": "已接通客户",
    "meeting_at": "约定见面时间",
    "meeting_kind": "见面方式",
    "designer_level": "约定的设计师级别",
    "car": "到店车辆（车牌/车型）",
    "designer_id": "设计师",
    "reason": "理由",
    "corrections": "对接待人员的纠正",
    "decision": "处理",
    "assistant_id": "助理设计师",
    "true_needs": "客户真正需求",
    "measure_at": "约定量房时间",
    "visited_site": "参观了在施工地",
    "visited_material_store": "参观了材料库",
    "result": "结果",
    "findings": "录音复盘发现",
    "designer_corrections": "对设计师的纠正",
    "assistant_corrections": "对助理设计师的纠正",
    "outcome": "结果",
    "notes": "备注",
    "text": "备注内容",
    "at": "新的时间",
    "target": "改期对象",
    "staff_id": "新的负责人",
    "role": "更换",
    "source": "来源",
    "scenario": "情况",
    "received_by": "接待人员",
    "client.name": "客户姓名",
    "client.phone": "手机号",
    "client.gender": "称呼",
    "client.age_range": "年龄段",
    "client.compound": "小区",
    "client.address": "房屋地址",
    "client.area_m2": "面积（平方米）",
    "client.budget": "装修预算（元）",
    "reception": "接待清单（仅自然客户）",
    "site_musts": "接待四必须（仅小区办公室，没有合适的值班设计师时）",
}

# Help under a field listed above (its description is written for the JSON API, not for staff).
FIELD_HELP: dict[str, str] = {
    "reception": "勾选客户到店时做到的项；没有勾选的记为未做",
    "site_musts": "由接待的小区负责人或助理设计师填写，经理审核接待时可见",
    "corrections": "小区负责人、值班设计师或助理设计师；填写后通知对方并由其确认改正",
}

# Labels and help that depend on the step: the same name means another thing elsewhere (the reason of
# an assignment is why the first suggestion was not taken; the outcome's is why the client was lost).
_NOT_FIRST = ("未选第一推荐设计师的理由", "只在所选设计师不是首位推荐时必填")
STEP_TEXTS: dict[str, dict[str, tuple[str, str | None]]] = {
    "callback": {"reason": _NOT_FIRST},
    "assign_designer": {"reason": _NOT_FIRST},
    "outcome": {"reason": ("流失原因", "结果为流失时必填")},
    "lapse_review": {"reason": ("延期原因", "延期时必填")},
}

# Labels of an enum's values, by enum (the same value can mean two things: office_visit).
ENUM_LABELS: dict[type[Enum], dict[Any, str]] = {
    MeetingKind: MEETING_KIND_LABELS,
    Level: LEVEL_LABELS,
    Source: SOURCE_LABELS,
    Scenario: SCENARIO_LABELS,
}

VALUE_LABELS: dict[str, str] = {
    **{k.value: v for k, v in LEVEL_LABELS.items()},
    **{k.value: v for k, v in OUTCOME_LABELS.items()},
    **{k.value: v for k, v in SOURCE_LABELS.items()},
    **{k.value: v for k, v in MEETING_KIND_LABELS.items()},
    "signed": "签单",
    "lost": "流失",
    "done": "已完成",
    "rescheduled": "改期",
    "no_show": "客户爽约",
    "male": "先生",
    "female": "女士",
    "unknown": "未知",
    "meeting": "首次见面",
    "measure": "量房",
    "designer": "设计师",
    "assistant": "助理设计师",
    "reclaim": "收回，重新分配（掉保）",
    "extend": "延期",
}


@dataclass
class Field:
    """One input of a form, ready for the template."""

    name: str
    label: str
    kind: str  # checkbox | datetime | number | select | textarea | text | tel | pick | group
    required: bool = False
    value: Any = None
    options: list[tuple[str, str]] = field(default_factory=list)
    step: str | None = None  # number inputs: "1" or "any"
    help: str | None = None
    error: str | None = None
    picks: list[dict[str, Any]] = field(default_factory=list)  # kind "pick": suggestions with reasons
    fields: list[Field] = field(default_factory=list)  # kind "group": the inputs of a nested model


@dataclass
class FormState:
    """A submitted form that failed: the values as typed and the errors to show."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    case_link: int | None = None  # duplicate phone: the open case


def label_for(name: str, info: FieldInfo | None = None) -> str:
    """The Chinese label of a field."""
    if name in FIELD_LABELS:
        return FIELD_LABELS[name]
    if info is not None and info.description:
        return info.description.split("；")[0].split("（")[0]
    return name


def help_for(name: str, info: FieldInfo, label: str) -> str | None:
    """The grey help under a field: what its description adds to its label, never the label again."""
    if name in FIELD_LABELS:
        return FIELD_HELP.get(name)
    text = info.description
    if not text or text == label:
        return None
    if text.startswith(label):
        rest = text[len(label):].lstrip("；， ")
        if rest.startswith("（") and rest.endswith("）") and rest.count("（") == 1:
            rest = rest[1:-1]  # only a remark in brackets: the remark
        return rest if rest and rest != "必填" else None
    return text


def _nested(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested object field (a section of the form), if it is one."""
    ann, _ = _unwrap(annotation)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without `| None`, and whether None was allowed."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _kind(annotation: Any) -> tuple[str, list[tuple[str, str]], str | None]:
    ann, _ = _unwrap(annotation)
    if ann is bool:
        return "checkbox", [], None
    if ann is datetime:
        return "datetime", [], None
    if isinstance(ann, type) and issubclass(ann, Enum):
        labels = ENUM_LABELS.get(ann, {})
        return "select", [(m.value, labels.get(m) or VALUE_LABELS.get(m.value, m.value)) for m in ann], None
    if get_origin(ann) is Literal:
        return "select", [(str(v), VALUE_LABELS.get(str(v), str(v))) for v in get_args(ann)], None
    if ann is int:
        return "number", [], "1"
    if ann is float:
        return "number", [], "any"
    return "textarea", [], None


def _max_length(info: FieldInfo) -> int | None:
    for m in info.metadata:
        if getattr(m, "max_length", None) is not None:
            return int(m.max_length)
    return None


def input_value(value: Any) -> Any:
    """A model value as an input shows it (datetimes as datetime-local in Beijing time)."""
    if isinstance(value, datetime):
        return value.astimezone(TZ).strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, str) and len(value) >= 16 and value[10:11] == "T":
        try:
            return datetime.fromisoformat(value).astimezone(TZ).strftime("%Y-%m-%dT%H:%M")
        except ValueError:
            return value
    if isinstance(value, Enum):
        return value.value
    return value


def model_fields(
    model: type[BaseModel],
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    prefix: str = "",
    texts: dict[str, tuple[str, str | None]] | None = None,
    submitted: bool = False,
) -> list[Field]:
    """The inputs of a model, in declaration order, with current values and errors.

    `texts` gives a field a label and help of its own (by name: STEP_TEXTS); `submitted` says the values
    are a form sent back, where a checkbox left out was unticked."""
    values = values or {}
    errors = errors or {}
    texts = texts or {}
    out: list[Field] = []
    for name, info in model.model_fields.items():
        full = f"{prefix}{name}"
        sub = _nested(info.annotation)
        if sub is not None:
            label = label_for(full, info)
            inner = model_fields(sub, values=values, errors=errors, prefix=f"{full}.", submitted=submitted)
            if not info.is_required():
                for f in inner:  # required only when the section is filled in at all
                    if f.required:
                        f.required, f.help = False, f.help or "填写本节时必填"
            out.append(Field(name=full, label=label, kind="group", required=info.is_required(),
                             help=help_for(full, info, label), error=errors.get(full), fields=inner))
            continue
        kind, options, step = _kind(info.annotation)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        value = values.get(full, default)
        if kind == "checkbox" and submitted and full not in values:
            value = False
        if kind == "select" and not info.is_required():
            options = [("", "—"), *options]
        if full.endswith("designer_id") or full.endswith("assistant_id"):
            kind = "pick"
        elif kind == "textarea" and _max_length(info) is not None and (_max_length(info) or 0) <= 200:
            kind = "tel" if "phone" in name else "text"  # short texts: one line
        elif kind == "textarea" and name.endswith("phone"):
            kind = "tel"
        label = label_for(full, info)
        label, help_text = texts.get(name, (label, help_for(full, info, label)))
        out.append(
            Field(
                name=full,
                label=label,
                kind=kind,
                required=info.is_required() and kind != "checkbox",
                value=input_value(value),
                options=options,
                step=step,
                help=help_text,
                error=errors.get(full),
            )
        )
    return out


def form_to_data(model: type[BaseModel], form: Any, *, prefix: str = "") -> dict[str, Any]:
    """What the browser sent, as the JSON the API would get: empty inputs left out, checkboxes as booleans.

    A section (nested model) is sent when it is required or anything in it was ticked or filled in."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        full = f"{prefix}{name}"
        sub = _nested(info.annotation)
        if sub is not None:
            section = form_to_data(sub, form, prefix=f"{full}.")
            if info.is_required() or any(v is not False for v in section.values()):
                data[name] = section
            continue
        ann, _ = _unwrap(info.annotation)
        if ann is bool:
            data[name] = form.get(full) in ("on", "true", "1", "yes")
            continue
        raw = form.get(full)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            continue
        data[name] = raw.strip() if isinstance(raw, str) else raw
    return data


def form_values(form: Any) -> dict[str, Any]:
    """The submitted values, to show again beside the errors."""
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}


# --- errors in Chinese ---------------------------------------------------------------------------

_ZH: dict[str, str] = {
    "missing": "必填",
    "bool_parsing": "请选择是或否",
    "datetime_parsing": "时间格式不正确",
    "datetime_from_date_parsing": "时间格式不正确",
    "datetime_type": "时间格式不正确",
    "int_parsing": "请输入整数",
    "int_from_float": "请输入整数",
    "float_parsing": "请输入数字",
    "string_too_short": "不能为空",
    "string_too_long": "内容太长",
    "enum": "请从列表中选择",
    "literal_error": "请从列表中选择",
    "extra_forbidden": "不认识的字段",
    "greater_than": "数值太小",
    "greater_than_equal": "数值太小",
    "less_than": "数值太大",
    "less_than_equal": "数值太大",
}


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def zh_message(err: dict[str, Any]) -> str:
    """One pydantic error in Chinese (custom errors of the models already are)."""
    msg = str(err.get("msg", ""))
    kind = str(err.get("type", ""))
    if kind in _ZH:
        return _ZH[kind]
    if _has_cjk(msg):
        return msg.removeprefix("Value error, ")
    return "内容不正确"


def _field_of(loc: list[Any] | tuple[Any, ...], prefix: str = "", ctx: dict[str, Any] | None = None) -> str:
    """The form field an error is about: its location, then the field a rule across fields names."""
    parts = [str(p) for p in loc if p not in ("body",)]
    if ctx and isinstance(ctx.get("field"), str):
        parts.append(ctx["field"])
    return prefix + ".".join(parts) if parts else ""


def beside(message: str, name: str, label: str | None = None) -> str:
    """A message shown beside its field, in staff words: the field's name (the API's messages carry it)
    becomes its label where it is the subject ("measure_at 必须是…"), and is dropped elsewhere."""
    for token in {name, name.rsplit(".", 1)[-1]}:
        pattern = rf"(?<![A-Za-z0-9_.]){re.escape(token)}(?![A-Za-z0-9_.])"
        if label and re.match(pattern, message):
            message = label + message[len(token):]
        message = re.sub(rf"\s*{pattern}", "", message)
    return message.strip(" ：:，,") or "内容不正确"


def validation_errors(exc: ValidationError, *, prefix: str = "") -> FormState:
    """A model's validation failure as errors beside the fields."""
    state = FormState()
    for e in exc.errors():
        name = _field_of(e.get("loc", ()), prefix, e.get("ctx"))
        if name:
            state.errors.setdefault(name, beside(zh_message(dict(e)), name, label_for(name)))
        else:
            state.message = zh_message(dict(e))
    if state.errors and not state.message:
        state.message = "请检查标红的内容"
    return state


# Codes whose message concerns one field even when the service does not name it.
_CODE_FIELDS = {"reason_required": "reason", "scenario_source_mismatch": "source"}


def api_errors(err: ApiError, *, prefix: str = "") -> FormState:
    """A service's refusal (the same ApiError the JSON API answers) as errors beside the fields."""
    state = FormState(message=err.message)
    details = err.extra.get("details")
    name = None
    if isinstance(details, dict):
        if isinstance(details.get("field"), str):
            name = details["field"]
        for e in details.get("errors") or []:
            if isinstance(e, dict) and e.get("loc"):
                where = _field_of(e["loc"], prefix)
                state.errors.setdefault(where, beside(zh_message(e), where, label_for(where)))
    name = name or _CODE_FIELDS.get(err.code)
    if name:
        full = prefix + name
        state.errors[full] = beside(err.message, name, label_for(full))
    if state.errors and err.code != "duplicate_open_case":
        state.message = "请检查标红的内容"
    if err.code == "duplicate_open_case" and err.extra.get("case_id"):
        state.case_link = int(err.extra["case_id"])
        state.errors.setdefault("client.phone", "该手机号已有未结案的案例")
    return state
