"""Providers against real local HTTP peers: Aliyun SMS through the official SDK, WeCom group robot."""

from __future__ import annotations

import json
import socket
from datetime import date
from typing import Any

import pytest
from pydantic import SecretStr

from activities.providers import (
    AliyunSmsProvider,
    LogNotifier,
    OutboxOnlyProvider,
    OutgoingNotice,
    OutgoingSms,
    ProviderError,
    SmsNotifier,
    WeComNotifier,
    build_sms_provider,
    build_staff_notifier,
)
from config import Settings
from domain.templates import TEMPLATES
from tests.activities.peer import FakeAliyun, PeerRequest, http_peer

VARIABLES = {"name": "王先生", "company": "城市人家装饰公司", "designer": "张伟", "short_name": "城市人家"}


def _sms(key: str = "42:T1", phone: str = "13912345678") -> OutgoingSms:
    return OutgoingSms(
        key=key,
        phone=phone,
        template="T1_NO_ASSISTANT",
        variables=VARIABLES,
        text="王先生您好：……",
        sent_on=date(2026, 3, 2),
    )


def _aliyun(endpoint: str) -> AliyunSmsProvider:
    return AliyunSmsProvider(
        access_key_id="test-key-id",
        access_key_secret="test-key-secret",
        sign_name="城市人家",
        templates={"T1": "SMS_100001", "T1_NO_ASSISTANT": "SMS_100002", "STAFF": "SMS_100009"},
        endpoint=endpoint,
        protocol="http",
        connect_timeout_ms=2_000,
        read_timeout_ms=3_000,
    )


async def test_aliyun_send_sms_reaches_the_peer_as_a_template_request() -> None:
    fake = FakeAliyun()
    with http_peer(fake) as peer:
        biz_id = await _aliyun(peer.endpoint).send(_sms())
    assert biz_id == "biz-1"
    [req] = peer.actions("SendSms")
    params = req.params
    assert params["PhoneNumbers"] == "13912345678"
    assert params["SignName"] == "城市人家"
    assert params["TemplateCode"] == "SMS_100002"  # T1 without assistant
    assert params["OutId"] == "42:T1"
    assert json.loads(params["TemplateParam"]) == VARIABLES
    assert "王先生" in params["TemplateParam"]  # ensure_ascii=False: readable Chinese, not \\u escapes
    # never free text: nothing but the template, its variables and routing data
    assert set(params) <= {"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam", "OutId"}
    assert req.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=test-key-id")


@pytest.mark.parametrize(
    ("status", "body", "retryable", "ambiguous"),
    [
        (200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控"}, True, False),
        (200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}, False, False),
        (200, {"Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": "模板缺少变量"}, False, False),
        (200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"}, False, False),
        (200, {"Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "签名不合法"}, False, False),
        (
            404,
            {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."},
            False,
            False,
        ),
        (503, {"Code": "ServiceUnavailable", "Message": "busy"}, True, False),
        (502, {"Code": "BadGateway", "Message": "upstream"}, True, True),
    ],
)
async def test_aliyun_errors_are_classified(
    status: int, body: dict[str, Any], retryable: bool, ambiguous: bool
) -> None:
    with http_peer(lambda _req: (status, body)) as peer:
        with pytest.raises(ProviderError) as info:
            await _aliyun(peer.endpoint).send(_sms())
    assert info.value.code == body["Code"]
    assert info.value.retryable is retryable
    assert info.value.ambiguous is ambiguous


def _closed_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_aliyun_refused_connection_is_retryable_and_surely_not_sent() -> None:
    with pytest.raises(ProviderError) as info:
        await _aliyun(f"127.0.0.1:{_closed_port()}").send(_sms())
    # the request never left: retried later without asking Aliyun first
    assert info.value.retryable and not info.value.ambiguous


async def test_aliyun_read_timeout_is_retryable_and_ambiguous() -> None:
    import time

    def slow(req: PeerRequest) -> tuple[int, Any]:
        time.sleep(0.6)
        return FakeAliyun()(req)

    with http_peer(slow) as peer:
        provider = AliyunSmsProvider(
            access_key_id="k", access_key_secret="s", sign_name="城市人家", templates={"T1_NO_ASSISTANT": "SMS_1"},
            endpoint=peer.endpoint, protocol="http", read_timeout_ms=200,
        )
        with pytest.raises(ProviderError) as info:
            await provider.send(_sms())
    # Aliyun got the request and may have accepted it: the outbox must ask before sending again
    assert info.value.retryable and info.value.ambiguous


async def test_aliyun_missing_template_code_is_not_retryable() -> None:
    msg = OutgoingSms(
        key="1:T4",
        phone="13912345678",
        template="T4",
        variables={},
        text="",
        sent_on=date.today(),
    )
    with pytest.raises(ProviderError) as info:
        await _aliyun("127.0.0.1:1").send(msg)
    assert info.value.code == "template_not_configured" and not info.value.retryable


async def test_aliyun_find_sent_matches_the_out_id() -> None:
    fake = FakeAliyun()
    with http_peer(fake) as peer:
        provider = _aliyun(peer.endpoint)
        assert await provider.find_sent(_sms()) is None
        await provider.send(_sms())
        assert await provider.find_sent(_sms()) == "aliyun-outid:42:T1"
        assert await provider.find_sent(_sms(key="42:T2")) is None
    query = peer.actions("QuerySendDetails")[0].params
    assert query["PhoneNumber"] == "13912345678"
    assert query["SendDate"] == "20260302"
    assert query["PageSize"] == "50" and query["CurrentPage"] == "1"


async def test_aliyun_find_sent_failure_is_retryable() -> None:
    with http_peer(lambda _r: (200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "x"})) as peer:
        with pytest.raises(ProviderError) as info:
            await _aliyun(peer.endpoint).find_sent(_sms())
    # not knowing whether it was sent must never turn into "send again" nor into "give up"
    assert info.value.retryable


async def test_sms_notifier_uses_the_staff_template() -> None:
    fake = FakeAliyun()
    notice = OutgoingNotice(
        key="7:esc:callback#1:2",
        recipient_name="刘经理",
        phone="13800001111",
        role="manager",
        text="回访超时",
        sent_on=date.today(),
    )
    with http_peer(fake) as peer:
        assert await SmsNotifier(_aliyun(peer.endpoint)).notify(notice) == "biz-1"
    params = peer.actions("SendSms")[0].params
    assert params["TemplateCode"] == "SMS_100009"
    assert json.loads(params["TemplateParam"]) == {"name": "刘经理", "text": "回访超时"}
    assert params["OutId"] == "7:esc:callback#1:2"


def _notice() -> OutgoingNotice:
    return OutgoingNotice(
        key="9:remind:first_meeting",
        recipient_name="张伟",
        phone="13700002222",
        role="designer",
        text="1小时后与客户见面",
        sent_on=date.today(),
    )


async def test_wecom_notifier_posts_a_text_that_mentions_the_recipient() -> None:
    with http_peer(lambda _r: (200, {"errcode": 0, "errmsg": "ok"})) as peer:
        msg_id = await WeComNotifier(f"{peer.url}/cgi-bin/webhook/send?key=abc").notify(_notice())
    assert msg_id == "wecom-9:remind:first_meeting"
    [req] = peer.requests
    assert req.method == "POST" and req.path == "/cgi-bin/webhook/send" and req.query == {"key": "abc"}
    assert req.json["msgtype"] == "text"
    assert "1小时后与客户见面" in req.json["text"]["content"]
    assert req.json["text"]["mentioned_mobile_list"] == ["13700002222"]


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}, True),
        (200, {"errcode": 93000, "errmsg": "invalid webhook url"}, False),
        (500, {"errmsg": "boom"}, True),
    ],
)
async def test_wecom_errors_are_classified(status: int, body: dict[str, Any], retryable: bool) -> None:
    def respond(_req: PeerRequest) -> tuple[int, Any]:
        return status, body

    with http_peer(respond) as peer:
        with pytest.raises(ProviderError) as info:
            await WeComNotifier(f"{peer.url}/send?key=abc").notify(_notice())
    assert info.value.retryable is retryable


async def test_wecom_timeout_is_retryable() -> None:
    import time

    def slow(_req: PeerRequest) -> tuple[int, Any]:
        time.sleep(0.5)
        return 200, {"errcode": 0}

    with http_peer(slow) as peer:
        with pytest.raises(ProviderError) as info:
            await WeComNotifier(f"{peer.url}/send", timeout=0.1).notify(_notice())
    assert info.value.retryable and info.value.ambiguous


async def test_wecom_refused_connection_is_retryable_and_surely_not_posted() -> None:
    with pytest.raises(ProviderError) as info:
        await WeComNotifier(f"http://127.0.0.1:{_closed_port()}/send").notify(_notice())
    assert info.value.retryable and not info.value.ambiguous


def test_factories_default_to_harmless_providers() -> None:
    settings = Settings()
    assert isinstance(build_sms_provider(settings), OutboxOnlyProvider)
    assert isinstance(build_staff_notifier(settings), LogNotifier)


def _aliyun_settings(*templates: str) -> Settings:
    """Aliyun configured with secrets and approved codes for the given template variants."""
    codes = {f"aliyun_template_{n.lower()}": f"SMS_{n}" for n in templates}
    return Settings(
        sms_provider="aliyun",
        aliyun_access_key_id=SecretStr("id"),
        aliyun_access_key_secret=SecretStr("secret"),
        aliyun_sign_name="城市人家",
        **codes,  # type: ignore[arg-type]
    )


def test_aliyun_without_secrets_fails_at_startup() -> None:
    with pytest.raises(ValueError, match="INTAKE_ALIYUN_ACCESS_KEY_ID"):
        build_sms_provider(Settings(sms_provider="aliyun"))
    with pytest.raises(ValueError, match="T2"):
        build_sms_provider(_aliyun_settings("T1"))
    # every variant a case can send must be approved: T1/T2/T3 without an assistant's name too
    for missing in ("T1_NO_ASSISTANT", "T2_NO_ASSISTANT", "T3_NO_ASSISTANT"):
        with pytest.raises(ValueError, match=missing):
            build_sms_provider(_aliyun_settings(*(n for n in TEMPLATES if n != missing)))
    assert build_sms_provider(_aliyun_settings(*TEMPLATES)).name == "aliyun"


def test_wecom_and_sms_channels_without_secrets_fail_at_startup() -> None:
    with pytest.raises(ValueError, match="INTAKE_WECOM_WEBHOOK_URL"):
        build_staff_notifier(Settings(notify_channel="wecom"))
    with pytest.raises(ValueError, match="INTAKE_ALIYUN_TEMPLATE_STAFF"):
        build_staff_notifier(Settings(notify_channel="sms"))
    assert (
        build_staff_notifier(Settings(notify_channel="wecom", wecom_webhook_url=SecretStr("http://x/y"))).name
        == "wecom"
    )
