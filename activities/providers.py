"""Message providers (SPEC §6): client SMS and staff notification channels, chosen by configuration.

Shaped like Netflix/dispatch plugins: a small Protocol per kind, a harmless default that only records
(`outbox`, `log`), and real implementations (Aliyun SMS through the official SDK, WeCom group robot,
WeCom corp application messages to each person).
Providers know nothing about PostgreSQL or Temporal: the exactly-once discipline lives in
:mod:`store.outbox` / :mod:`background.dispatcher`, which keys every call with the outbox key so a provider can be asked later
whether a message already went out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Protocol, runtime_checkable

import aiohttp
import httpx
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

from config import Settings
from domain.phone import mask_phones_in
from domain.templates import ADDRESS_TEMPLATES, TEMPLATES
from wecom import WeComCorp, WeComError, missing_settings

log = logging.getLogger(__name__)


class ProviderError(Exception):
    """A provider refused or failed to take a message.

    `retryable`: trying again later may succeed (throttling, network, provider outage).
    `ambiguous`: the provider may nevertheless have accepted the message (timeout, connection lost,
    5xx); the caller must then ask the provider (``find_sent``) before sending again.
    `outbox_code`: the stable code a refused message's outbox row records instead of the channel's
    generic one (e.g. ``wecom_no_userid``).
    """

    def __init__(
        self, message: str, *, retryable: bool, code: str | None = None, ambiguous: bool = False,
        outbox_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.ambiguous = ambiguous
        self.outbox_code = outbox_code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code else self.message


# --- client SMS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingSms:
    """One SMS as a provider sees it; `key` is the outbox key ("<case_id>:<purpose>")."""

    key: str
    phone: str
    template: str  # T1, T1_NO_ASSISTANT, T2, ..., STAFF
    variables: dict[str, str]
    text: str
    sent_on: date  # the (Asia/Shanghai) day the send was attempted; QuerySendDetails needs it
    # The case's branch's own SMS account, where it differs (None: the deployment's sign and codes).
    sign: str | None = None
    template_code: str | None = None


@runtime_checkable
class SmsProvider(Protocol):
    """Sends client SMS. Implementations must be safe to call concurrently."""

    name: str
    # Whether find_sent can tell that a message arrived; if not, an interrupted send is never repeated.
    confirmable: bool

    async def send(self, msg: OutgoingSms) -> str:
        """Hand the message to the provider; returns its message id or raises ProviderError."""
        ...

    async def find_sent(self, msg: OutgoingSms) -> str | None:
        """The provider's id of an earlier delivery of this outbox key, or None if it never arrived."""
        ...


class OutboxOnlyProvider:
    """Default provider: the outbox row is the record (its text is in PostgreSQL); nothing leaves."""

    name = "outbox"
    confirmable = True

    async def send(self, msg: OutgoingSms) -> str:
        """Log that the message was recorded (never its text: it names the client) and return a local id."""
        log.info("SMS recorded in the outbox, not sent: key=%s template=%s", msg.key, msg.template)
        return f"outbox-{msg.key}"

    async def find_sent(self, msg: OutgoingSms) -> str | None:
        """The outbox row is the delivery: an interrupted "send" is done."""
        return f"outbox-{msg.key}"


# Aliyun error codes (https://help.aliyun.com/document_detail/101346.html). Throttling and provider
# trouble are worth retrying; everything that means "this request is wrong" is not.
ALIYUN_RETRYABLE_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",  # per-minute/hour rate limit per number
        "isv.DAY_LIMIT_CONTROL",
        "isv.AMOUNT_NOT_ENOUGH",  # account balance: succeeds once someone tops it up
        "ServiceUnavailable",
        "InternalError",
        "isp.SYSTEM_ERROR",
        "SignatureNonceUsed",
    }
)
ALIYUN_REJECTED_CODES = frozenset(
    {
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.INVALID_PARAMETERS",
        "isv.INVALID_JSON_PARAM",
        "isv.PARAM_LENGTH_LIMIT",
        "isv.PARAM_NOT_SUPPORT_URL",
        "isv.BLACK_KEY_CONTROL_LIMIT",
        "isv.MOBILE_COUNT_OVER_LIMIT",
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.ACCOUNT_ABNORMAL",
        "isv.OUT_OF_SERVICE",
        "isv.DENY_IP_RANGE",
        "isp.RAM_PERMISSION_DENY",
        "InvalidAccessKeyId",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "Forbidden.RAM",
        "MissingParameter",
        "InvalidParameter",
    }
)


def classify_aliyun_code(code: str | None, status: int | None = None) -> ProviderError:
    """Turn an Aliyun error code (and HTTP status) into a ProviderError with the right retry flags."""
    code = code or "Unknown"
    if code in ALIYUN_REJECTED_CODES:
        return ProviderError("阿里云拒绝了短信请求", retryable=False, code=code)
    if code in ALIYUN_RETRYABLE_CODES or code.startswith(("Throttling", "isp.")):
        # A throttled or failed request was answered, so it was definitely not accepted.
        return ProviderError("阿里云暂时无法发送", retryable=True, code=code)
    if status is not None and status >= 500:
        return ProviderError(f"阿里云服务错误 HTTP {status}", retryable=True, code=code, ambiguous=True)
    return ProviderError("阿里云拒绝了短信请求", retryable=False, code=code)


# No connection was ever made (refused, DNS, TLS handshake, connect timeout): the request never left.
_NEVER_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, httpx.ConnectError,
                    httpx.ConnectTimeout, httpx.PoolTimeout)


def never_connected(exc: BaseException) -> bool:
    """Whether an exception (or one it wraps) says the connection was never made, so nothing was sent."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _NEVER_CONNECTED):
            return True
        # The Aliyun SDK wraps the aiohttp error in a RetryError (raised while handling it), wrapped in
        # turn in an UnretryableException (`inner_exception`).
        inner = getattr(e, "inner_exception", None)
        todo += [e.__cause__, e.__context__, inner if isinstance(inner, BaseException) else None]
    return False


def _aliyun_exc_to_provider_error(exc: BaseException) -> ProviderError:
    """SDK exceptions: AlibabaCloudException carries code/status; anything else is the network."""
    if isinstance(exc, AlibabaCloudException):
        err = classify_aliyun_code(exc.code, exc.status_code)
        err.message = f"{err.message}: {mask_phones_in(str(exc.message or ''))}"
        return err
    # Network trouble (the SDK wraps it in UnretryableException, meaning only "the SDK itself won't
    # retry"). Never connected: definitely not sent. Otherwise (timeout, reset) it may have reached
    # Aliyun: ambiguous.
    return ProviderError(
        f"网络错误: {mask_phones_in(str(exc))[:300]}",
        retryable=True,
        code=type(exc).__name__,
        ambiguous=not never_connected(exc),
    )


class AliyunSmsProvider:
    """Aliyun SMS (短信服务) through the official `alibabacloud_dysmsapi20170525` SDK, async methods.

    Only approved templates are sent: template code, sign name and the variables as JSON; the outbox
    key travels as `OutId` so ``find_sent`` can find the message again with QuerySendDetails.
    """

    name = "aliyun"
    confirmable = True

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        templates: dict[str, str | None],
        endpoint: str = "dysmsapi.aliyuncs.com",
        protocol: str = "https",
        connect_timeout_ms: int = 5_000,
        read_timeout_ms: int = 10_000,
    ) -> None:
        self.sign_name = sign_name
        self.templates = {k: v for k, v in templates.items() if v}
        config = open_api_models.Config(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            endpoint=endpoint,
            protocol=protocol,
            connect_timeout=connect_timeout_ms,
            read_timeout=read_timeout_ms,
        )
        self._client = DysmsClient(config)

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunSmsProvider:
        """Build from Settings; raises ValueError naming every missing secret or template code."""
        key_id = settings.aliyun_access_key_id.get_secret_value() if settings.aliyun_access_key_id else ""
        secret = (
            settings.aliyun_access_key_secret.get_secret_value() if settings.aliyun_access_key_secret else ""
        )
        sign_name = settings.aliyun_sign_name or ""
        missing = [
            env
            for env, value in (
                ("INTAKE_ALIYUN_ACCESS_KEY_ID", key_id),
                ("INTAKE_ALIYUN_ACCESS_KEY_SECRET", secret),
                ("INTAKE_ALIYUN_SIGN_NAME", sign_name),
            )
            if not value.strip()
        ]
        if missing:
            raise ValueError("Aliyun SMS is configured but these settings are missing: " + ", ".join(missing))
        return cls(
            access_key_id=key_id,
            access_key_secret=secret,
            sign_name=sign_name,
            templates=settings.aliyun_templates(),
            endpoint=settings.aliyun_endpoint,
            protocol=settings.aliyun_protocol,
        )

    def template_code(self, msg: OutgoingSms) -> str:
        """The approved template code for a message (its branch's, else the deployment's); a missing one is a
        configuration error."""
        code = msg.template_code or self.templates.get(msg.template)
        if not code:
            raise ProviderError(
                f"没有为模板 {msg.template} 配置阿里云模板编号 (INTAKE_ALIYUN_TEMPLATE_{msg.template})",
                retryable=False,
                code="template_not_configured",
            )
        return code

    async def send(self, msg: OutgoingSms) -> str:
        """SendSms with template code, sign name, variables and OutId = outbox key; returns BizId."""
        request = sms_models.SendSmsRequest(
            phone_numbers=msg.phone,
            sign_name=msg.sign or self.sign_name,
            template_code=self.template_code(msg),
            template_param=json.dumps(msg.variables, ensure_ascii=False),
            out_id=msg.key,
        )
        try:
            response = await self._client.send_sms_async(request)
        except Exception as exc:
            raise _aliyun_exc_to_provider_error(exc) from exc
        body = response.body
        if body is None:
            raise ProviderError("阿里云返回了空响应", retryable=True, code="EmptyResponse", ambiguous=True)
        if body.code != "OK":
            err = classify_aliyun_code(body.code, response.status_code)
            err.message = f"{err.message}: {mask_phones_in(body.message or '')}"
            raise err
        return str(body.biz_id)

    async def find_sent(self, msg: OutgoingSms) -> str | None:
        """QuerySendDetails for the phone on the attempt's day (and the next, if it crossed midnight)."""
        for day in (msg.sent_on, msg.sent_on + timedelta(days=1)):
            page = 1
            while True:
                request = sms_models.QuerySendDetailsRequest(
                    phone_number=msg.phone,
                    send_date=day.strftime("%Y%m%d"),
                    page_size=50,
                    current_page=page,
                )
                try:
                    response = await self._client.query_send_details_async(request)
                except Exception as exc:
                    raise _aliyun_exc_to_provider_error(exc) from exc
                body = response.body
                if body is None or body.code != "OK":
                    err = classify_aliyun_code(body.code if body else None, response.status_code)
                    # Not knowing is never "not sent": a failed query must not lead to a second send.
                    err.retryable = True
                    raise err
                details = body.sms_send_detail_dtos.sms_send_detail_dto if body.sms_send_detail_dtos else []
                for detail in details or []:
                    if detail.out_id == msg.key:
                        # SmsSendDetailDTO carries no BizId; the OutId match is the proof of delivery.
                        return f"aliyun-outid:{msg.key}"
                total = int(body.total_count or 0)
                if page * 50 >= total or not details:
                    break
                page += 1
        return None


# --- staff notifications ----------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingNotice:
    """One staff notification; `key` is the outbox key ("<case_id>:<purpose>")."""

    key: str
    recipient_name: str
    phone: str
    role: str
    text: str
    sent_on: date  # the (Asia/Shanghai) day the send was attempted
    case_id: int | None = None
    recipient_id: int | None = None
    wecom_userid: str | None = None  # the recipient's WeCom member id as the staff table has it now
    # The WeCom department of the case's branch (else the recipient's branch): where a notice goes when
    # its recipient cannot be reached in person.
    wecom_department_id: int | None = None


@dataclass(frozen=True)
class Delivered:
    """A notice delivered with a remark its outbox row keeps (e.g. by the fallback route, and why)."""

    provider_id: str
    code: str
    note: str


@runtime_checkable
class StaffNotifier(Protocol):
    """Delivers reminders and escalations to staff."""

    name: str
    # Whether find_sent can tell that a notice arrived; if not, an interrupted notice is never repeated.
    confirmable: bool

    async def notify(self, msg: OutgoingNotice) -> str | Delivered:
        """Deliver the notice; returns a channel message id (with a remark) or raises ProviderError."""
        ...

    async def find_sent(self, msg: OutgoingNotice) -> str | None:
        """The channel's id of an earlier delivery of this key; None if unknown or never delivered."""
        ...


class LogNotifier:
    """Default channel: writes the notice to the log."""

    name = "log"
    confirmable = True

    async def notify(self, msg: OutgoingNotice) -> str:
        """Log the notice (staff texts carry case numbers, not client data) and return a local id."""
        log.info("Staff notice key=%s to=%s(%s): %s", msg.key, msg.recipient_name, msg.role, msg.text)
        return f"log-{msg.key}"

    async def find_sent(self, msg: OutgoingNotice) -> str | None:
        """The outbox row is the record: an interrupted log line counts as written."""
        return f"log-{msg.key}"


class SmsNotifier:
    """Staff notices as SMS through Aliyun, template STAFF with variables {name, text}."""

    name = "sms"
    confirmable = True

    def __init__(self, sms: AliyunSmsProvider) -> None:
        self._sms = sms

    def _sms_of(self, msg: OutgoingNotice) -> OutgoingSms:
        return OutgoingSms(
            key=msg.key,
            phone=msg.phone,
            template="STAFF",
            variables={"name": msg.recipient_name, "text": msg.text},
            text=f"{msg.recipient_name}：{msg.text}",
            sent_on=msg.sent_on,
        )

    async def notify(self, msg: OutgoingNotice) -> str:
        """Send the STAFF template to the recipient's phone."""
        return await self._sms.send(self._sms_of(msg))

    async def find_sent(self, msg: OutgoingNotice) -> str | None:
        """Ask Aliyun whether this notice already went out."""
        return await self._sms.find_sent(self._sms_of(msg))


WECOM_RATE_LIMITED = 45009


def _wecom_network_error(exc: BaseException) -> ProviderError:
    """A post to WeCom that failed in transport: retryable; ambiguous unless it never connected."""
    # Never connected: WeCom never saw it. Anything later may have been delivered: ambiguous.
    return ProviderError(
        mask_phones_in(f"企业微信网络错误: {exc!r}")[:300],
        retryable=True,
        code=type(exc).__name__,
        ambiguous=not never_connected(exc),
    )


class WeComNotifier:
    """WeCom group robot (企业微信群机器人) webhook: a text message that @-mentions the recipient."""

    name = "wecom"
    confirmable = False  # a group robot has no delivery query

    def __init__(
        self, webhook_url: str, *, timeout: float = 10.0, client: httpx.AsyncClient | None = None
    ) -> None:
        self._url = webhook_url
        self._timeout = timeout
        # One client (one connection pool) for the worker's life, not a TLS handshake per notice.
        self._client = client or httpx.AsyncClient()

    def payload(self, msg: OutgoingNotice) -> dict[str, Any]:
        """The webhook body: text with the recipient mentioned by phone."""
        return {
            "msgtype": "text",
            "text": {
                "content": f"【{msg.recipient_name}】{msg.text}",
                "mentioned_mobile_list": [msg.phone] if msg.phone else [],
            },
        }

    async def notify(self, msg: OutgoingNotice) -> str:
        """POST to the webhook; errcode 0 is delivered, 45009 (rate limit) and 5xx are retried."""
        try:
            response = await self._client.post(self._url, json=self.payload(msg), timeout=self._timeout)
        except (TimeoutError, httpx.TransportError) as exc:
            raise _wecom_network_error(exc) from exc
        if response.status_code >= 500:
            raise ProviderError(
                f"企业微信服务错误 HTTP {response.status_code}",
                retryable=True,
                code=str(response.status_code),
                ambiguous=True,
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(
                f"企业微信返回了非 JSON 响应 (HTTP {response.status_code})",
                retryable=response.status_code == 429,
                code=str(response.status_code),
            ) from exc
        errcode = int(data.get("errcode", -1))
        if errcode == 0:
            return f"wecom-{msg.key}"
        errmsg = str(data.get("errmsg", ""))[:200]
        if errcode == WECOM_RATE_LIMITED or response.status_code == 429:
            raise ProviderError(f"企业微信限流: {errmsg}", retryable=True, code=str(errcode))
        raise ProviderError(f"企业微信拒绝了消息: {errmsg}", retryable=False, code=str(errcode))

    async def find_sent(self, msg: OutgoingNotice) -> str | None:
        """Never asked (not confirmable): an interrupted notice is marked failed, not posted twice."""
        return None


WECOM_CARD_BUTTON = "打开客户"
WECOM_BOARD_BUTTON = "打开看板"
# A text card's title and description are cut by WeCom beyond these many bytes (UTF-8).
WECOM_TITLE_BYTES = 128
WECOM_DESCRIPTION_BYTES = 512
# The words a notice's text may start with ("升级：客户 #12 …") that make a card's title.
_NOTICE_KINDS = ("提醒", "升级", "搁置")


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` UTF-8 bytes, never splitting a character; "…" marks a cut."""
    if len(text.encode("utf-8")) <= limit:
        return text
    out = text.encode("utf-8")[: limit - 3].decode("utf-8", errors="ignore")
    return out + "…"


class WeComAppNotifier:
    """WeCom corp application (企业微信自建应用): each notice as a text card to its own recipient.

    The card opens the case's page in the console. Someone WeCom cannot reach (no member id on file, or
    one WeCom does not know) gets the notice through their branch's WeCom department (the case's branch's,
    set by head office) when it has one, else through the group robot when its webhook is configured,
    with phones masked in both because many read it; the outbox row records why. Without either such a
    notice fails with that reason (``wecom_no_userid``, ``wecom_unknown_user``).
    """

    name = "wecom_app"
    confirmable = False  # message/send has no delivery query: an interrupted notice is never sent again

    def __init__(
        self, corp: WeComCorp, *, case_url: Callable[[int], str], board_url: str = "",
        fallback: WeComNotifier | None = None,
    ) -> None:
        self._corp = corp
        self._case_url = case_url
        self._board_url = board_url  # what a notice of no case (the morning summary) opens
        self._fallback = fallback

    def card(self, msg: OutgoingNotice) -> dict[str, str]:
        """The text card: title (kind and case), the notice as description, the case page, the button."""
        if msg.case_id is None:
            # A notice of no case (the morning summary): its first line is the title, the board its page.
            return {
                "title": _cut(msg.text.split("\n", 1)[0], WECOM_TITLE_BYTES),
                "description": _cut(msg.text, WECOM_DESCRIPTION_BYTES),
                "url": self._board_url,
                "btntxt": WECOM_BOARD_BUTTON,
            }
        kind = next((k for k in _NOTICE_KINDS if msg.text.startswith(f"{k}：")), "工作通知")
        case_id = msg.case_id
        return {
            "title": _cut(f"{kind} · 客户 #{case_id}", WECOM_TITLE_BYTES),
            "description": _cut(msg.text, WECOM_DESCRIPTION_BYTES),
            "url": self._case_url(case_id),
            "btntxt": WECOM_CARD_BUTTON,
        }

    async def notify(self, msg: OutgoingNotice) -> str | Delivered:
        """message/send to the recipient's member id; unreachable people go through the robot (or fail)."""
        if not msg.wecom_userid:
            return await self._instead(msg, "wecom_no_userid", f"{msg.recipient_name} 未登记企业微信账号")
        card = self.card(msg)
        try:
            sent = await self._corp.send_textcard(userid=msg.wecom_userid, title=card["title"],
                                                  description=card["description"], url=card["url"],
                                                  btntxt=card["btntxt"])
        except WeComError as exc:
            raise ProviderError(exc.message, retryable=exc.retryable, ambiguous=exc.ambiguous,
                                code=str(exc.errcode) if exc.errcode is not None else "wecom") from exc
        except (TimeoutError, httpx.TransportError) as exc:
            raise _wecom_network_error(exc) from exc
        if msg.wecom_userid in sent.invalid_users:
            return await self._instead(
                msg, "wecom_unknown_user", f"企业微信不认识 {msg.recipient_name} 的账号 {msg.wecom_userid}"
            )
        return f"wecom-app-{sent.msgid or msg.key}"

    async def _instead(self, msg: OutgoingNotice, code: str, reason: str) -> Delivered:
        """The branch's department, else the group robot, instead of the personal message (phones masked),
        or a refusal with `code`."""
        if msg.wecom_department_id is not None:
            party = msg.wecom_department_id
            card = self.card(replace(msg, text=f"{mask_phones_in(msg.text)}\n（致{msg.recipient_name}：本人未能在企业微信收到）"))
            try:
                sent = await self._corp.send_textcard(toparty=party, title=card["title"], description=card["description"],
                                                      url=card["url"], btntxt=card["btntxt"])
            except WeComError as exc:
                raise ProviderError(f"{reason}；改发分公司部门 {party}: {exc.message}", retryable=exc.retryable,
                                    ambiguous=exc.ambiguous,
                                    code=str(exc.errcode) if exc.errcode is not None else "wecom") from exc
            except (TimeoutError, httpx.TransportError) as exc:
                raise _wecom_network_error(exc) from exc
            if not sent.invalid_users:
                return Delivered(provider_id=f"wecom-app-{sent.msgid or msg.key}", code=code,
                                 note=f"{reason}，已改发分公司企业微信部门 {party}（手机号已遮盖）")
            reason = f"{reason}；企业微信不认识分公司部门 {party}"
        if self._fallback is None:
            raise ProviderError(reason, retryable=False, code=code, outbox_code=code)
        try:
            robot_id = await self._fallback.notify(replace(msg, text=mask_phones_in(msg.text)))
        except ProviderError as exc:
            exc.message = f"{reason}；改由群机器人发送: {exc.message}"
            raise
        return Delivered(provider_id=robot_id, code=code, note=f"{reason}，已改由群机器人发送（手机号已遮盖）")

    async def find_sent(self, msg: OutgoingNotice) -> str | None:
        """Never asked (not confirmable): an interrupted notice is marked failed, not sent twice."""
        return None


# --- factories --------------------------------------------------------------------------------


def build_sms_provider(settings: Settings) -> SmsProvider:
    """The client SMS provider chosen by `INTAKE_SMS_PROVIDER`; misconfiguration fails at startup."""
    if settings.sms_provider == "outbox":
        return OutboxOnlyProvider()
    if settings.sms_provider == "aliyun":
        provider = AliyunSmsProvider.from_settings(settings)
        # Every variant a case can send (with and without the assistant's name) must be approved.
        # T4_OFFICE and T4_OFFICE_MANAGER are only sent when the company address is configured.
        needed = [n for n in TEMPLATES if n not in ADDRESS_TEMPLATES or settings.company_address]
        missing = [n for n in needed if not provider.templates.get(n)]
        if missing:
            raise ValueError(
                "Aliyun SMS needs an approved template code for "
                + ", ".join(f"{n} (INTAKE_ALIYUN_TEMPLATE_{n})" for n in missing)
            )
        return provider
    raise ValueError(f"unknown SMS provider {settings.sms_provider!r} (outbox or aliyun)")


def build_staff_notifier(settings: Settings) -> StaffNotifier:
    """The staff notification channel chosen by `INTAKE_NOTIFY_CHANNEL`; misconfiguration fails at startup."""
    if settings.notify_channel == "log":
        return LogNotifier()
    if settings.notify_channel == "wecom":
        url = settings.wecom_webhook_url.get_secret_value() if settings.wecom_webhook_url else ""
        if not url:
            raise ValueError(
                "notify channel 'wecom' needs INTAKE_WECOM_WEBHOOK_URL (the group robot webhook)"
            )
        return WeComNotifier(url)
    if settings.notify_channel == "wecom_app":
        missing = missing_settings(settings)
        if missing:
            raise ValueError(
                "notify channel 'wecom_app' (WeCom corp application) needs " + ", ".join(missing)
            )
        robot = settings.wecom_webhook_url.get_secret_value() if settings.wecom_webhook_url else ""
        return WeComAppNotifier(
            WeComCorp.from_settings(settings), case_url=settings.case_url,
            board_url=f"{settings.console_base()}/console/board", fallback=WeComNotifier(robot) if robot else None,
        )
    if settings.notify_channel == "sms":
        if not settings.aliyun_template_staff:
            raise ValueError(
                "notify channel 'sms' needs INTAKE_ALIYUN_TEMPLATE_STAFF (template with name, text)"
            )
        return SmsNotifier(AliyunSmsProvider.from_settings(settings))
    raise ValueError(f"unknown notify channel {settings.notify_channel!r} (log, sms, wecom or wecom_app)")
