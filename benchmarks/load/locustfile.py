"""Staff at work, for locust (SPEC §10): the console and the JSON API as the company's people use them.

Started by ``benchmarks/bench_load.py``, which starts the stack, seeds one staff member per simulated
person and hands them over in a roster file named by ``INTAKE_LOAD_ROSTER`` (JSON: the API's base
address, the think-time factor, how many people of each role, and per person their id, bearer token
and one-time console sign-in code). Each simulated person is one staff member: they sign in to the
console through their link, then work. Half of what each person does goes through the console
(phone browser: pages, step forms posted with the session's form token), half through the JSON API
(the same person's app or an integration: bearer token), alternating.

Who does what (default policy, 情况一 leads from marketing and online sales):

- consultants (业务顾问) enter new leads (``/console/new`` or ``POST /intakes``) and look at the cases
  they brought and at 我的待办;
- the manager (设计部经理) works through 我的待办: callbacks, assigning the designer from the
  suggestions, debriefs (some with corrections), outcomes; and watches the board and the reports;
- the assistant lead (助理负责人) assigns assistants;
- designers (设计师) contact the client, hold the first meeting (the measure), acknowledge corrections,
  open their case pages;
- assistants (助理设计师) open their cases and acknowledge corrections;
- the director (总经理) reads the reports and the board.

Everyone acts only on the open steps that 我的待办 shows them, so every step is one they may complete
now: any answer other than the one expected (200/201 from the API, 303 after a console form, 200 for a
page) is a failure in locust's statistics. Request names group ids: ``/intakes/{id}``.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

from locust import HttpUser, task
from locust.clients import ResponseContextManager

SHANGHAI = timezone(timedelta(hours=8))

ROSTER_ENV = "INTAKE_LOAD_ROSTER"
ROLES = ("manager", "director", "assistant_lead", "consultant", "designer", "assistant")


def load_roster() -> dict[str, Any]:
    """The roster bench_load.py wrote (empty when locust merely imports this file)."""
    path = os.environ.get(ROSTER_ENV)
    if not path:
        return {"counts": {}, "staff": {}, "pace": 1.0, "run": 0}
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


ROSTER = load_roster()
PACE = float(ROSTER.get("pace", 1.0))
_taken: dict[str, int] = {}
_lock = threading.Lock()


def take(role: str) -> dict[str, Any]:
    """The next staff member of `role` nobody simulates yet."""
    with _lock:
        n = _taken.get(role, 0)
        _taken[role] = n + 1
    people = ROSTER["staff"].get(role, [])
    if n >= len(people):
        raise RuntimeError(f"the roster has {len(people)} {role}(s); locust asked for more")
    person: dict[str, Any] = people[n]
    return person


# --- what staff type in ---------------------------------------------------------------------------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = ("建国", "丽华", "志强", "秀英", "俊杰", "晓燕", "海涛", "雪梅", "国庆", "婷婷", "磊", "静", "伟", "芳", "洋", "敏")
COMPOUNDS = ("阳光花园", "翠湖苑", "锦绣江南", "金色家园", "滨江一号", "梧桐苑", "紫荆城", "碧水湾")
NEEDS = ("三室两厅，现代简约，年底入住", "婚房，北欧风，预算有限", "老人同住，无障碍卫生间", "两个孩子，需要儿童房和书房",
         "二手房翻新，水电全改", "喜欢新中式，客厅要大")
_phones = 0


def new_phone() -> str:
    """A valid mobile number unique in this run (prefix 19, the run's 4 digits, a counter)."""
    global _phones
    with _lock:
        _phones += 1
        n = _phones
    return f"19{int(ROSTER.get('run', 0)) % 10_000:04d}{n:05d}"


def lead(phone: str) -> dict[str, Any]:
    """A 情况一 lead as a consultant enters it: the client has never been to the company."""
    n = int(phone[-5:])
    budget = random.choice((150_000, 200_000, 250_000, 280_000, 350_000, 450_000))
    return {
        "source": random.choice(("marketing", "online")),
        "scenario": "remote",
        "client": {"name": random.choice(SURNAMES) + random.choice(GIVEN), "phone": phone,
                   "gender": random.choice(("male", "female")), "age_range": random.choice(("25-30", "30-40", "40-50")),
                   "compound": random.choice(COMPOUNDS),
                   # a house of its own: a second lead for the same house would be 撞单 (409)
                   "address": f"{n // 100 + 1}栋{n % 100 // 50 + 1}单元{n % 50 + 101}室",
                   "area_m2": random.choice((89, 105, 120, 138, 160)), "budget": budget},
        "notes": "客户想尽快见设计师",
    }  # fmt: skip


def ahead(days: int, hour: int) -> datetime:
    """`days` ahead at `hour`:00 Beijing time."""
    return (datetime.now(SHANGHAI) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def step_payload(step: str) -> dict[str, Any] | None:
    """What the step's owner answers (None: a step this simulation does not complete)."""
    meet = ahead(random.randint(2, 5), random.choice((10, 14, 16)))
    if step == "callback":
        return {"reached": True, "meeting_at": meet, "meeting_kind": "measure", "notes": "客户周末有空"}
    if step == "contact":
        return {"meeting_at": meet, "meeting_kind": "measure"}
    if step == "first_meeting":
        return {"true_needs": random.choice(NEEDS), "measure_agreed": True, "measure_at": ahead(6, 14),
                "visited_site": True, "visited_material_store": random.random() < 0.7,
                "material_store_reason": "客户赶时间，下次再去", "seen_off": True}  # fmt: skip
    if step == "measure":
        return {"result": "done"}
    if step == "debrief":
        if random.random() < 0.3:
            return {"findings": "需求挖掘不够深入", "designer_corrections": "先问清预算再谈风格",
                    "assistant_corrections": "量房记录要写清层高"}
        return {"findings": "需求挖掘充分，节奏好"}
    if step == "acknowledge":
        return {"note": "已记录，下次改正"}
    if step == "outcome":
        if random.random() < 0.8:
            return {"outcome": "signed"}
        return {"outcome": "lost", "reason": "客户选择了别家"}
    if step in ("assign_designer", "assign_assistant"):
        return {}
    return None


def as_json(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in payload.items()}


def as_form(payload: dict[str, Any]) -> dict[str, str]:
    """The payload as the console's form sends it: ticked boxes "on", times as the phone's picker gives them."""
    out: dict[str, str] = {}
    for k, v in payload.items():
        if isinstance(v, bool):
            if v:
                out[k] = "on"
        elif isinstance(v, datetime):
            out[k] = v.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")
        else:
            out[k] = str(v)
    return out


# --- reading the console's pages ---------------------------------------------------------------------

TASK_ROW = re.compile(r'<li class="task[^"]*" data-case="(\d+)" data-step="(\w+)"')


def form_of(html: str, test_id: str) -> str | None:
    """The HTML of the form with data-testid `test_id`."""
    m = re.search(rf'<form[^>]*data-testid="{re.escape(test_id)}"[^>]*>(.*?)</form>', html, re.S)
    return m.group(1) if m else None


def hidden(form: str, name: str) -> str | None:
    m = re.search(rf'name="{name}" value="([^"]*)"', form)
    return m.group(1) if m else None


def checked_pick(form: str, name: str) -> str | None:
    """The radio the page chose for a pick (the first eligible suggestion)."""
    m = re.search(rf'<input type="radio" name="{name}" value="(\d+)"\s+checked', form)
    return m.group(1) if m else None


# A step someone had in 我的待办 while the manager closed the case (an outcome while an acknowledgement of
# corrections was still open): 409 case_closed is the answer staff get, and it changes nothing. Counted as
# what it is, on a row of its own, not as an error.
CLOSED_TEXTS = ("已结案", "流程已结束")


def closed_meanwhile(r: ResponseContextManager) -> None:
    meta = cast(dict[str, Any], r.request_meta)  # what locust reports when the block ends
    meta["name"] = f"{meta['name']} → 409 case closed meanwhile (expected)"
    r.success()


# --- the people ---------------------------------------------------------------------------------------


class Staff(HttpUser):
    """One staff member: signs in through their link, then works through the console and the API."""

    abstract = True
    role = ""
    think = (5.0, 15.0)  # seconds between two actions, before the pace factor

    def wait_time(self) -> float:
        return random.uniform(*self.think) * PACE

    def on_start(self) -> None:
        self.me = take(self.role)
        self.auth = {"Authorization": f"Bearer {self.me['token']}"}
        self.cases: list[int] = []  # cases this person has met (tasks, creations, lists)
        self.turns: dict[str, bool] = {}
        code = self.me["link"]
        self.page("/console/login/{code}", f"/console/login/{code}")
        with self.post_form("/console/login/{code}", f"/console/login/{code}", {}) as r:
            if r.status_code == 303 and r.headers.get("location") == "/console":
                r.success()
            else:
                r.failure(f"sign-in: {r.status_code}")
        self.page("/console", "/console")

    # -- plumbing

    def console_turn(self, kind: str = "look") -> bool:
        """Through the console (True) or the JSON API (False): each kind of action alternates, from a random start."""
        last = self.turns.get(kind, random.random() < 0.5)
        self.turns[kind] = not last
        return not last

    def page(self, name: str, path: str) -> str | None:
        """A console page as the phone's browser gets it (200 expected)."""
        with self.client.get(path, name=f"GET {name}", allow_redirects=False, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.headers.get('location') or r.text[:200]}")
                return None
            return str(r.text)

    @contextmanager
    def post_form(self, name: str, path: str, data: dict[str, str]) -> Iterator[ResponseContextManager]:
        with self.client.post(path, data=data, name=f"POST {name}", allow_redirects=False,
                              catch_response=True) as r:
            yield r

    def api(self, method: str, name: str, path: str, expect: int = 200, **kw: Any) -> Any:
        """A JSON API call with this person's token; its JSON, or None after a failure."""
        with self.client.request(method, path, name=f"{method} {name}", headers={**self.auth, **kw.pop("headers", {})},
                                 catch_response=True, **kw) as r:
            if r.status_code == 409 and method == "POST" and "/steps/" in path and '"case_closed"' in r.text:
                closed_meanwhile(r)
                return None
            if r.status_code != expect:
                r.failure(f"{r.status_code} {r.text[:300]}")
                return None
            return r.json()

    def remember(self, case_id: int) -> None:
        if case_id not in self.cases:
            self.cases.append(case_id)
            del self.cases[:-30]

    # -- what everyone does

    def my_tasks(self, console: bool) -> list[tuple[int, str]]:
        """我的待办: (case, step) soonest due first."""
        if console:
            html = self.page("/console", "/console")
            rows = [(int(c), s) for c, s in TASK_ROW.findall(html or "")]
        else:
            body = self.api("GET", "/me/tasks", "/me/tasks?limit=50")
            rows = [(int(t["case_id"]), str(t["step"])) for t in (body or {}).get("items", [])]
        for case_id, _ in rows[:10]:
            self.remember(case_id)
        return rows

    def open_case(self, case_id: int, console: bool) -> Any:
        if console:
            return self.page("/console/cases/{id}", f"/console/cases/{case_id}")
        return self.api("GET", "/intakes/{id}", f"/intakes/{case_id}")

    def look_at_a_case(self) -> None:
        """Open one of the cases this person has met (or 我的待办 when none yet)."""
        console = self.console_turn()
        if not self.cases:
            self.my_tasks(console)
            return
        self.open_case(random.choice(self.cases), console)

    def look_at_tasks(self) -> None:
        self.my_tasks(self.console_turn("tasks"))

    def do_next_step(self, steps: tuple[str, ...]) -> None:
        """我的待办 → the first open step of theirs they know how to do → the case → complete it."""
        todo = [(c, s) for c, s in self.my_tasks(self.console_turn("tasks")) if s in steps]
        if not todo:
            return
        case_id, step = todo[0] if random.random() < 0.7 else random.choice(todo[:5])
        payload = step_payload(step)
        if payload is None:
            return
        if self.console_turn(step):
            self.complete_in_console(case_id, step, payload)
        else:
            self.complete_in_api(case_id, step, payload)

    def complete_in_console(self, case_id: int, step: str, payload: dict[str, Any]) -> None:
        html = self.open_case(case_id, console=True)
        form = form_of(html or "", f"form-{step}")
        if form is None:
            # 我的待办 listed it as this person's, so where the case page shows the step it must offer its form
            # (the step is gone from the page when the case was closed meanwhile)
            if html is not None and f'data-step="{step}"' in html:
                self.environment.events.request.fire(
                    request_type="POST", name="POST /console/cases/{id}/steps/{step}", response_time=0,
                    response_length=0, exception=RuntimeError(f"no form for {step} on case page"), context={})
            return
        data = {"csrf": hidden(form, "csrf") or "", "idempotency_key": hidden(form, "idempotency_key") or ""}
        data.update(as_form(payload))
        for pick in ("designer_id", "assistant_id"):
            chosen = checked_pick(form, pick)
            if chosen:
                data[pick] = chosen
            elif f'name="{pick}"' in form and step.startswith("assign_"):
                return  # nobody eligible now (every designer at capacity): the manager waits
        path = f"/console/cases/{case_id}/steps/{step}"
        with self.post_form("/console/cases/{id}/steps/{step}", path, data) as r:
            if r.status_code == 303:
                r.success()
            elif r.status_code == 409 and any(t in (r.text or "") for t in CLOSED_TEXTS):
                closed_meanwhile(r)
                return
            else:
                found = re.search(r'<p class="(?:alert|error)"[^>]*>([^<]*)', r.text or "")
                r.failure(f"{step}: {r.status_code} {found.group(1) if found else r.text[:200]}")
                return
        self.page("/console/cases/{id}", r.headers["location"])  # where the browser lands

    def complete_in_api(self, case_id: int, step: str, payload: dict[str, Any]) -> None:
        self.open_case(case_id, console=False)
        body = as_json(payload)
        if step == "assign_designer":
            sugg = self.api("GET", "/intakes/{id}/designer-suggestions", f"/intakes/{case_id}/designer-suggestions")
            eligible = [s for s in (sugg or {}).get("items", []) if s.get("eligible", True)]
            if not eligible:
                return  # nobody eligible now: the manager waits
            body["designer_id"] = eligible[0]["staff"]["id"]
        self.api("POST", "/intakes/{id}/steps/{step}", f"/intakes/{case_id}/steps/{step}", json=body,
                 headers={"Idempotency-Key": uuid.uuid4().hex})


# The simulated people. How many of each: the roster's counts (bench_load.py), as locust's fixed counts.


def _count(role: str) -> int:
    return int(ROSTER["counts"].get(role, 0))


class Consultant(Staff):
    """业务顾问: enters leads, follows the cases they brought."""

    role = "consultant"
    fixed_count = _count("consultant")
    think = (10.0, 30.0)

    def on_start(self) -> None:
        super().on_start()
        # The leads of the morning: one typed in on the phone, one sent by marketing's system through the API.
        self.new_lead(self.console_turn("lead"))
        self.new_lead(self.console_turn("lead"))

    def new_lead(self, console: bool) -> None:
        body = lead(new_phone())
        if not console:
            case = self.api("POST", "/intakes", "/intakes", expect=201, json=body,
                            headers={"Idempotency-Key": uuid.uuid4().hex})
            if case:
                self.remember(int(case["id"]))
            return
        html = self.page("/console/new", "/console/new")
        form = form_of(html or "", "new-client")
        if form is None:
            return
        data = {"csrf": hidden(form, "csrf") or "", "idempotency_key": hidden(form, "idempotency_key") or "",
                "source": body["source"], "scenario": body["scenario"], "notes": body["notes"],
                **{f"client.{k}": str(v) for k, v in body["client"].items()}}
        with self.post_form("/console/new", "/console/new", data) as r:
            where = r.headers.get("location", "")
            m = re.fullmatch(r"/console/cases/(\d+)", where)
            if r.status_code != 303 or not m:
                found = re.search(r'<p class="alert"[^>]*>([^<]*)', r.text or "")
                r.failure(f"new lead: {r.status_code} {found.group(1) if found else r.text[:200]}")
                return
            r.success()
        self.remember(int(m.group(1)))
        self.page("/console/cases/{id}", where)

    @task(1)
    def enter_a_lead(self) -> None:
        self.new_lead(self.console_turn("lead"))

    @task(3)
    def my_todo(self) -> None:
        self.look_at_tasks()

    @task(4)
    def follow_a_case(self) -> None:
        self.look_at_a_case()


class Manager(Staff):
    """设计部经理: callbacks, assignments, debriefs, outcomes; the board and the reports."""

    role = "manager"
    fixed_count = _count("manager")
    think = (0.5, 2.0)
    STEPS = ("callback", "assign_designer", "debrief", "outcome")

    @task(8)
    def work(self) -> None:
        self.do_next_step(self.STEPS)

    @task(2)
    def board(self) -> None:
        self.page("/console/board", "/console/board")

    @task(1)
    def a_case(self) -> None:
        self.look_at_a_case()

    @task(1)
    def reports(self) -> None:
        self.page("/console/reports", "/console/reports")


class AssistantLead(Staff):
    """助理负责人: assigns an assistant to each case (备案登记)."""

    role = "assistant_lead"
    fixed_count = _count("assistant_lead")
    think = (2.0, 6.0)

    @task(5)
    def work(self) -> None:
        self.do_next_step(("assign_assistant",))

    @task(1)
    def a_case(self) -> None:
        self.look_at_a_case()


class Designer(Staff):
    """设计师: contacts the client, holds the first meeting (the measure), acknowledges corrections."""

    role = "designer"
    fixed_count = _count("designer")
    think = (5.0, 15.0)
    STEPS = ("contact", "first_meeting", "measure", "acknowledge")

    @task(3)
    def work(self) -> None:
        self.do_next_step(self.STEPS)

    @task(2)
    def my_todo(self) -> None:
        self.look_at_tasks()

    @task(3)
    def a_case(self) -> None:
        self.look_at_a_case()


class Assistant(Staff):
    """助理设计师: follows the cases they are on, acknowledges corrections."""

    role = "assistant"
    fixed_count = _count("assistant")
    think = (5.0, 15.0)

    @task(2)
    def work(self) -> None:
        self.do_next_step(("acknowledge",))

    @task(2)
    def my_cases(self) -> None:
        body = self.api("GET", "/intakes", "/intakes?limit=20")
        for item in (body or {}).get("items", [])[:10]:
            self.remember(int(item["id"]))

    @task(3)
    def a_case(self) -> None:
        self.look_at_a_case()


class Director(Staff):
    """总经理: the reports and the board."""

    role = "director"
    fixed_count = _count("director")
    think = (5.0, 15.0)

    @task(2)
    def reports(self) -> None:
        if self.console_turn("reports"):
            self.page("/console/reports", "/console/reports")
        else:
            self.api("GET", "/reports/sla", "/reports/sla?group_by=source")

    @task(2)
    def board(self) -> None:
        self.page("/console/board", "/console/board")

    @task(1)
    def a_case(self) -> None:
        body = self.api("GET", "/intakes", "/intakes?limit=20")
        items = (body or {}).get("items", [])
        if items:
            self.open_case(int(random.choice(items)["id"]), self.console_turn())
