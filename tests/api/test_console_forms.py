"""Console forms are generated from the payload models: kinds of inputs, the JSON a form becomes,
errors in Chinese beside the field (pure; no browser)."""

from __future__ import annotations

from pydantic import ValidationError

from api.console.forms import api_errors, form_to_data, model_fields, validation_errors
from api.errors import ApiError
from api.schemas import IntakeCreate
from api.services import step_body_model
from domain.enums import StepName
from domain.models import STEP_PAYLOADS


def test_every_payload_field_gets_an_input_of_its_kind() -> None:
    for step in STEP_PAYLOADS:
        fields = {f.name: f for f in model_fields(step_body_model(step))}
        assert set(STEP_PAYLOADS[step].model_fields) <= set(fields), step
        assert fields["notes"].kind == "textarea"
    cb = {f.name: f for f in model_fields(step_body_model(StepName.callback))}
    assert cb["reached"].kind == "checkbox" and cb["meeting_at"].kind == "datetime"
    assert cb["meeting_kind"].kind == "select" and ("office_visit", "到店") in cb["meeting_kind"].options
    assert ("", "—") in cb["meeting_kind"].options  # optional: can be left empty
    fm = {f.name: f for f in model_fields(step_body_model(StepName.first_meeting))}
    assert fm["visited_site"].kind == "checkbox" and fm["measure_at"].kind == "datetime"
    ad = {f.name: f for f in model_fields(step_body_model(StepName.assign_designer))}
    assert ad["designer_id"].kind == "pick"
    out = {f.name: f for f in model_fields(step_body_model(StepName.outcome))}
    assert out["outcome"].required and [v for v, _ in out["outcome"].options] == ["signed", "lost"]


def test_a_form_becomes_the_json_the_api_takes() -> None:
    model = step_body_model(StepName.first_meeting)
    data = form_to_data(model, {"true_needs": " 婚房 ", "measure_agreed": "on", "measure_at": "2030-05-03T14:00",
                                "visited_site": "on", "material_store_reason": "客户赶时间", "notes": ""})
    # an unticked checkbox is a "no" (the four musts and the send-off are required answers)
    assert data == {"true_needs": "婚房", "measure_agreed": True, "measure_at": "2030-05-03T14:00",
                    "visited_site": True, "visited_material_store": False, "material_store_reason": "客户赶时间",
                    "seen_off": False}
    body = model.model_validate(data)
    assert body.model_dump(mode="json")["measure_at"] == "2030-05-03T14:00:00+08:00"  # Beijing time


def test_errors_come_back_in_chinese_beside_the_field() -> None:
    try:
        step_body_model(StepName.first_meeting).model_validate({"measure_at": "soon"})
    except ValidationError as exc:
        state = validation_errors(exc)
    assert state.errors == {"true_needs": "必填", "measure_at": "时间格式不正确", "measure_agreed": "必填",
                            "visited_site": "必填", "visited_material_store": "必填", "seen_off": "必填"}
    client = {"name": "王", "phone": "12345"}
    try:
        IntakeCreate.model_validate({"source": "online", "scenario": "office_visit", "client": client})
    except ValidationError as exc:
        state = validation_errors(exc)
    assert state.errors["client.phone"].startswith("手机号不正确")
    rejected = ApiError(422, "time_in_past", "measure_at 必须是将来的时间", details={"field": "measure_at"})
    assert api_errors(rejected).errors == {"measure_at": "约定量房时间 必须是将来的时间"}
    reason = ApiError(422, "reason_required", "所选设计师与首位推荐不同，请填写理由 reason",
                      details={"suggested_designer_id": 3})
    assert api_errors(reason).errors == {"reason": "所选设计师与首位推荐不同，请填写理由"}
    dup = ApiError(409, "duplicate_open_case", "该手机号已有未结案的案例 #7", case_id=7)
    assert api_errors(dup).case_link == 7
