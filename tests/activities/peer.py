"""A real local HTTP peer for provider tests: a threaded `http.server` on 127.0.0.1:<free port>.

It records every request (method, path, query, form body, JSON body) and answers with whatever the test's
`respond` function returns, so the Aliyun SDK and httpx talk real HTTP to something we can inspect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class PeerRequest:
    """One request as the peer received it."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    json: Any
    headers: dict[str, str]

    @property
    def params(self) -> dict[str, str]:
        """Query and form parameters together (Aliyun RPC calls may use either)."""
        return {**self.query, **self.form}


# (status, JSON body) or (status, JSON body, extra headers), e.g. a redirect's Location.
Responder = Callable[[PeerRequest], tuple[int, Any] | tuple[int, Any, dict[str, str]]]


@dataclass
class HttpPeer:
    """The running peer: its address, the requests it saw, and the function that answers them."""

    host: str
    port: int
    respond: Responder
    requests: list[PeerRequest] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """host:port, as the Aliyun SDK's `endpoint` setting takes it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL for plain HTTP clients."""
        return f"http://{self.host}:{self.port}"

    def actions(self, action: str) -> list[PeerRequest]:
        """Aliyun requests of one API action (SendSms, QuerySendDetails)."""
        return [r for r in self.requests if r.headers.get("x-acs-action") == action]


def _handler(peer: HttpPeer) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            content_type = self.headers.get("Content-Type", "")
            form: dict[str, str] = {}
            body_json: Any = None
            if "x-www-form-urlencoded" in content_type:
                form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            elif raw:
                try:
                    body_json = json.loads(raw)
                except ValueError:
                    body_json = None
            req = PeerRequest(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                form=form,
                json=body_json,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            with lock:
                peer.requests.append(req)
            answer = peer.respond(req)
            status, body = answer[0], answer[1]
            extra: dict[str, str] = answer[2] if len(answer) > 2 else {}  # type: ignore[misc]
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence test output
            pass

    return Handler


@contextmanager
def http_peer(respond: Responder, port: int = 0) -> Iterator[HttpPeer]:
    """Start a peer for the duration of the block, on `port` (a provider coming back) or a free one."""
    peer = HttpPeer(host="127.0.0.1", port=port, respond=respond)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(peer))
    peer.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class FakeAliyun:
    """Answers SendSms and QuerySendDetails like Aliyun does, remembering what was sent by OutId."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.send_answer: tuple[int, dict[str, Any]] | None = None  # override SendSms's answer

    def __call__(self, req: PeerRequest) -> tuple[int, Any]:
        action = req.headers.get("x-acs-action")
        params = req.params
        if action == "SendSms":
            if self.send_answer is not None:
                return self.send_answer
            self.sent.append(params)
            return 200, {
                "Code": "OK",
                "Message": "OK",
                "BizId": f"biz-{len(self.sent)}",
                "RequestId": f"req-{len(self.sent)}",
            }
        if action == "QuerySendDetails":
            found = [
                {
                    "OutId": p.get("OutId"),
                    "PhoneNum": p.get("PhoneNumbers"),
                    "SendStatus": 3,
                    "TemplateCode": p.get("TemplateCode"),
                    "Content": "",
                    "ErrCode": "DELIVERED",
                    "SendDate": "2026-01-01 10:00:00",
                    "ReceiveDate": "2026-01-01 10:00:05",
                }
                for p in self.sent
                if p.get("PhoneNumbers") == params.get("PhoneNumber")
            ]
            return 200, {
                "Code": "OK",
                "Message": "OK",
                "RequestId": "req-q",
                "TotalCount": len(found),
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": found},
            }
        return 404, {"Code": "InvalidAction.NotFound", "Message": f"unknown action {action}"}


class HoldingAliyun(FakeAliyun):
    """Takes a SendSms for one OutId (the provider has it), then holds the answer until released."""

    def __init__(self, hold_out_id: str) -> None:
        super().__init__()
        self.hold_out_id = hold_out_id
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, req: PeerRequest) -> tuple[int, Any]:
        answer = super().__call__(req)
        if req.headers.get("x-acs-action") == "SendSms" and req.params.get("OutId") == self.hold_out_id:
            self.holding.set()
            self.release.wait(timeout=60)
        return answer
