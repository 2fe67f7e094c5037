"""A local stand-in for WeCom (企业微信), served by tests.activities.peer.http_peer.

It speaks what the service uses: ``gettoken`` (tokens it can later expire), ``message/send`` (a text card
to one member; ``invaliduser`` for ids it does not know; 42001 for an expired token),
``auth/getuserinfo`` (one-time codes), the web OAuth authorize page (it "signs in" whoever the test says
and redirects back with a code) and a group robot webhook.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.activities.peer import PeerRequest

CORP_ID = "wwtestcorp"
AGENT_ID = 1000002
SECRET = "test-app-secret"
ROBOT_PATH = "/cgi-bin/webhook/send"


@dataclass
class FakeWeCom:
    """WeCom's answers, and a record of what it was asked."""

    members: set[str] = field(default_factory=set)
    departments: set[str] = field(default_factory=set)  # department ids (toparty) WeCom knows
    token_life: int = 7200
    # Who the authorize page signs in next: a member id, or ("openid", x) for someone outside the corp.
    signing_in: str | tuple[str, str] | None = None
    tokens_issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    sends: list[dict[str, Any]] = field(default_factory=list)  # every message/send body, refused ones too
    delivered: list[dict[str, Any]] = field(default_factory=list)  # those that reached a member
    robot: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (WeCom answers 42001)."""
        with self.lock:
            self.expired |= set(self.tokens_issued)

    def _token_ok(self, req: PeerRequest) -> bool:
        token = req.query.get("access_token", "")
        return token in self.tokens_issued and token not in self.expired

    def __call__(self, req: PeerRequest) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        with self.lock:
            return self._answer(req)

    def _answer(self, req: PeerRequest) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        if req.path == "/cgi-bin/gettoken":
            if req.query.get("corpid") != CORP_ID or req.query.get("corpsecret") != SECRET:
                return 200, {"errcode": 40001, "errmsg": "invalid credential"}
            token = f"tok-{len(self.tokens_issued) + 1}-{secrets.token_hex(4)}"
            self.tokens_issued.append(token)
            return 200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_life}
        if req.path == "/cgi-bin/message/send":
            self.sends.append(req.json)
            if not self._token_ok(req):
                return 200, {"errcode": 42001, "errmsg": "access_token expired"}
            body = req.json or {}
            if body.get("agentid") != AGENT_ID:
                return 200, {"errcode": 40056, "errmsg": "invalid agentid"}
            if "toparty" in body:
                parties = [p for p in str(body["toparty"]).split("|") if p]
                unknown_parties = [p for p in parties if p not in self.departments]
                if len(unknown_parties) < len(parties):
                    self.delivered.append(body)
                return 200, {"errcode": 0, "errmsg": "ok", "invalidparty": "|".join(unknown_parties),
                             "msgid": f"msg-{len(self.sends)}"}
            users = [u for u in str(body.get("touser", "")).split("|") if u]
            unknown = [u for u in users if u not in self.members]
            if len(unknown) < len(users):
                self.delivered.append(body)
            return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(unknown),
                         "msgid": f"msg-{len(self.sends)}"}
        if req.path == "/cgi-bin/auth/getuserinfo":
            if not self._token_ok(req):
                return 200, {"errcode": 42001, "errmsg": "access_token expired"}
            found = self.codes.pop(req.query.get("code", ""), None)  # a code works once
            if found is None:
                return 200, {"errcode": 40029, "errmsg": "invalid code"}
            return 200, {"errcode": 0, "errmsg": "ok", **found}
        if req.path == "/connect/oauth2/authorize":
            if req.query.get("appid") != CORP_ID or req.query.get("scope") != "snsapi_base":
                return 400, {"errcode": 40013, "errmsg": "invalid appid or scope"}
            code = f"code-{secrets.token_hex(8)}"
            who = self.signing_in
            self.codes[code] = {"openid": who[1]} if isinstance(who, tuple) else {"userid": who}
            back = req.query["redirect_uri"]
            target = f"{back}{'&' if '?' in back else '?'}{urlencode({'code': code, 'state': req.query.get('state', '')})}"
            return 302, {}, {"Location": target}
        if req.path == ROBOT_PATH:
            self.robot.append(req.json)
            return 200, {"errcode": 0, "errmsg": "ok"}
        return 404, {"errcode": 404, "errmsg": f"no such path {req.path}"}

    def delivered_to(self, userid: str) -> list[dict[str, Any]]:
        """The text cards that reached one member."""
        return [b for b in self.delivered if b.get("touser") == userid]
