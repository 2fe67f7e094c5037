"""Console forms are generated from the payload models: kinds of inputs, the JSON a form becomes,
errors in Chinese beside the field (pure; no browser)."""

from __future__ import annotations

from pydantic import ValidationError

from api.console.forms import STEP_TEXTS, api_errors, form_to_data, model_fields, validation_errors
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


def test_a_rule_across_fields_is_shown_beside_the_field_it_names() -> None:
    model = step_body_model(StepName.first_meeting)
    answers = {"true_needs": "婚房", "measure_agreed": False, "visited_site": True,
               "visited_material_store": True, "seen_off": True}
    try:
        model.model_validate(answers)
    except ValidationError as exc:
        state = validation_errors(exc)
    assert state.errors == {"measure_reason": "未约定量房时间，请填写原因"}
    assert state.message == "请检查标红的内容"
    # the workflow's own refusal of the same payload lands on the same field
    refused = ApiError(422, "invalid_payload", "「首次见面」的内容不正确", details={"errors": [
        {"loc": ["measure_reason"], "msg": "未约定量房时间，请填写原因 measure_reason", "type": "value_error"}]})
    assert api_errors(refused).errors == {"measure_reason": "未约定量房时间，请填写原因"}


def test_nested_sections_are_checkboxes_sent_when_filled() -> None:
    fields = {f.name: f for f in model_fields(IntakeCreate)}
    reception = fields["reception"]
    assert reception.kind == "group" and "walk_in" not in (reception.help or "")
    assert [(f.name, f.kind) for f in reception.fields] == [
        ("reception.gum", "checkbox"), ("reception.recorder", "checkbox"), ("reception.greeted_at_door", "checkbox"),
        ("reception.business_card", "checkbox"), ("reception.water", "checkbox")]
    form = {"source": "walk_in", "scenario": "walk_in", "client.name": "郑先生", "client.phone": "13800000000",
            "reception.gum": "on", "reception.water": "on", "site_musts.basic_needs": ""}
    data = form_to_data(IntakeCreate, form)
    assert data["reception"] == {"gum": True, "recorder": False, "greeted_at_door": False, "business_card": False,
                                 "water": True}
    assert "site_musts" not in data  # nothing in it filled in
    assert data["client"] == {"name": "郑先生", "phone": "13800000000"}
    assert IntakeCreate.model_validate(data).reception is not None
    # a required answer inside an optional section is required only when the section is filled in
    musts = {f.name: f for f in fields["site_musts"].fields}
    assert not musts["site_musts.basic_needs"].required


def test_help_adds_to_the_label_and_the_reason_says_what_it_is_for() -> None:
    for step in STEP_PAYLOADS:
        for f in model_fields(step_body_model(step)):
            assert f.help is None or (f.help != f.label and f.help not in f.label), (step, f.name, f.help)
    arrival = {f.name: f for f in model_fields(step_body_model(StepName.arrival))}
    assert arrival["gum"].label == "口香糖清口" and arrival["gum"].help is None
    cb = {f.name: f for f in model_fields(step_body_model(StepName.callback), texts=STEP_TEXTS["callback"])}
    assert cb["reason"].label == "未选第一推荐设计师的理由"
    assert cb["reason"].help == "只在所选设计师不是首位推荐时必填"
