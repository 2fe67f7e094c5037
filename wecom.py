"""WeCom (企业微信) corp application API: its access token, personal messages, and who signed in.

One client per process (an httpx connection pool and the token cache), used by the worker's staff
notifier (:class:`activities.providers.WeComAppNotifier`) and by the console's sign-in
(:mod:`api.console.wecom`). It knows nothing of PostgreSQL or of the outbox.

The access token (``GET /cgi-bin/gettoken``) is cached until shortly before it expires; a call answered
42001 (expired) or 40014 (invalid: revoked, or the secret was reset) forgets it and is made once more
with a new one. Only one token fetch runs at a time, so a burst of notices costs one ``gettoken``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from config import Settings

TOKEN_EXPIRED = 42001
TOKEN_INVALID = 40014
TOKEN_ERRORS = frozenset({TOKEN_EXPIRED, TOKEN_INVALID})
RATE_LIMITED = 45009
SYSTEM_BUSY = -1
ALL_RECIPIENTS_INVALID = 81013  # "user & party & tag all invalid": the one recipient is unknown
# How long before its stated expiry a token is fetched again (at most; a tenth of its life when shorter).
REFRESH_EARLY_SECONDS = 300.0
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_OAUTH_BASE = "https://open.weixin.qq.com"


class WeComError(Exception):
    """WeCom answered with an error (or not as documented); `retryable`: trying later may succeed.

    Never raised for a transport failure of ``message/send``: that propagates as httpx's own error, so
    the caller can tell a request that never left from one that may have been delivered.
    """

    def __init__(self, message: str, *, errcode: int | None, retryable: bool, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.errcode = errcode
        self.retryable = retryable
        self.ambiguous = ambiguous


@dataclass(frozen=True)
class Sent:
    """WeCom's answer to a message: its id, and the recipients it did not know (``invaliduser``)."""

    msgid: str
    invalid_users: frozenset[str]


def configured(settings: Settings) -> bool:
    """Whether the corp application is configured: corp id, agent id and secret are all set."""
    return not missing_settings(settings)


def missing_settings(settings: Settings) -> list[str]:
    """The corp application's settings that are not set (environment variable names)."""
    secret = settings.wecom_secret.get_secret_value() if settings.wecom_secret else ""
    return [
        env
        for env, value in (
            ("INTAKE_WECOM_CORP_ID", settings.wecom_corp_id or ""),
            ("INTAKE_WECOM_AGENT_ID", "" if settings.wecom_agent_id is None else str(settings.wecom_agent_id)),
            ("INTAKE_WECOM_SECRET", secret),
        )
        if not value.strip()
    ]


def _errcode(data: Any) -> int:
    try:
        return int(data.get("errcode", 0)) if isinstance(data, dict) else -2
    except (TypeError, ValueError):
        return -2


class WeComCorp:
    """The corp application's server API, with its access token cached."""

    def __init__(
        self,
        *,
        corp_id: str,
        agent_id: int,
        secret: str,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._secret = secret
        self._base = api_base.rstrip("/")
        self._timeout = timeout
        self._client = client or httpx.AsyncClient()
        self._clock = clock
        self._token: str | None = None
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> WeComCorp:
        """Build from Settings; ValueError naming every missing setting."""
        missing = missing_settings(settings)
        if missing:
            raise ValueError("the WeCom corp application needs " + ", ".join(missing))
        assert settings.wecom_corp_id and settings.wecom_agent_id is not None and settings.wecom_secret
        return cls(
            corp_id=settings.wecom_corp_id.strip(),
            agent_id=settings.wecom_agent_id,
            secret=settings.wecom_secret.get_secret_value().strip(),
            api_base=settings.wecom_api_base,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    # --- the access token ------------------------------------------------------------------------

    async def access_token(self) -> str:
        """The cached token, or a new one from ``gettoken`` (one fetch at a time)."""
        async with self._lock:
            if self._token is not None and self._clock() < self._fresh_until:
                return self._token
            data = await self._get_json(
                "/cgi-bin/gettoken", {"corpid": self.corp_id, "corpsecret": self._secret}, what="gettoken"
            )
            errcode = _errcode(data)
            token = data.get("access_token") if isinstance(data, dict) else None
            if errcode != 0 or not isinstance(token, str) or not token:
                raise WeComError(
                    f"企业微信拒绝发放 access_token（errcode {errcode}: {str(data.get('errmsg', ''))[:100]}）",
                    errcode=errcode,
                    retryable=errcode in (SYSTEM_BUSY, RATE_LIMITED),
                )
            try:
                life = float(data.get("expires_in", 7200))
            except (TypeError, ValueError):
                life = 7200.0
            self._token = token
            self._fresh_until = self._clock() + life - min(REFRESH_EARLY_SECONDS, life / 10)
            return token

    def forget(self, token: str) -> None:
        """Drop `token` if it is still the cached one (WeCom said it expired or is invalid)."""
        if self._token == token:
            self._token = None

    async def _get_json(self, path: str, params: dict[str, str], *, what: str) -> Any:
        """A GET that sends no message: any failure means nothing happened, so it is retryable."""
        try:
            response = await self._client.get(f"{self._base}{path}", params=params, timeout=self._timeout)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise WeComError(f"企业微信 {what} 网络错误: {type(exc).__name__}", errcode=None, retryable=True) from exc
        if response.status_code >= 500:
            raise WeComError(f"企业微信 {what} 服务错误 HTTP {response.status_code}", errcode=None, retryable=True)
        try:
            return response.json()
        except ValueError as exc:
            raise WeComError(
                f"企业微信 {what} 返回了非 JSON 响应 (HTTP {response.status_code})", errcode=None, retryable=True
            ) from exc

    # --- messages ------------------------------------------------------------------------------------

    async def send_textcard(
        self, *, userid: str | None = None, title: str, description: str, url: str, btntxt: str,
        toparty: int | None = None,
    ) -> Sent:
        """Send one text card to one member, or to every member of a department (``toparty``: a branch's
        department), with ``message/send``; a stale token is replaced and the send made once more.

        Raises WeComError for an answered error, httpx errors (or TimeoutError) for the transport.
        """
        if (userid is None) == (toparty is None):
            raise ValueError("a text card goes to one member or to one department")
        to: dict[str, str] = {"touser": userid} if userid is not None else {"toparty": str(toparty)}
        body = {
            **to,
            "msgtype": "textcard",
            "agentid": self.agent_id,
            "textcard": {"title": title, "description": description, "url": url, "btntxt": btntxt},
        }
        for attempt in (1, 2):
            token = await self.access_token()
            response = await self._client.post(
                f"{self._base}/cgi-bin/message/send", params={"access_token": token}, json=body,
                timeout=self._timeout,
            )
            if response.status_code >= 500:
                raise WeComError(
                    f"企业微信服务错误 HTTP {response.status_code}", errcode=None, retryable=True, ambiguous=True
                )
            try:
                data = response.json()
            except ValueError as exc:
                raise WeComError(
                    f"企业微信返回了非 JSON 响应 (HTTP {response.status_code})",
                    errcode=None,
                    retryable=True,
                    ambiguous=response.status_code != 429,
                ) from exc
            errcode = _errcode(data)
            if errcode in TOKEN_ERRORS and attempt == 1:
                # Refused before anything was sent: safe to send again with a new token.
                self.forget(token)
                continue
            errmsg = str(data.get("errmsg", ""))[:200] if isinstance(data, dict) else ""
            if errcode == ALL_RECIPIENTS_INVALID:
                return Sent(msgid="", invalid_users=frozenset({userid or f"party:{toparty}"}))
            if errcode == 0:
                invalid = str(data.get("invaliduser") or "")
                if toparty is not None and str(toparty) in str(data.get("invalidparty") or "").split("|"):
                    invalid = f"party:{toparty}"
                return Sent(
                    msgid=str(data.get("msgid") or ""),
                    invalid_users=frozenset(u for u in invalid.split("|") if u),
                )
            if errcode in TOKEN_ERRORS:
                raise WeComError(f"企业微信 access_token 仍然无效: {errmsg}", errcode=errcode, retryable=True)
            if errcode in (RATE_LIMITED, SYSTEM_BUSY) or response.status_code == 429:
                raise WeComError(f"企业微信限流或繁忙: {errmsg}", errcode=errcode, retryable=True)
            raise WeComError(f"企业微信拒绝了消息: {errmsg}", errcode=errcode, retryable=False)
        raise AssertionError("unreachable: the second attempt always returns or raises")

    # --- signing in ----------------------------------------------------------------------------------

    async def user_of_code(self, code: str) -> str | None:
        """The member id (``userid``) an OAuth code was issued for; None for a non-member (``openid`` only).

        Raises WeComError when WeCom refuses the code (used, expired, forged) or cannot be asked.
        """
        for attempt in (1, 2):
            token = await self.access_token()
            data = await self._get_json("/cgi-bin/auth/getuserinfo", {"access_token": token, "code": code},
                                        what="getuserinfo")
            errcode = _errcode(data)
            if errcode in TOKEN_ERRORS and attempt == 1:
                self.forget(token)
                continue
            if errcode != 0:
                raise WeComError(f"企业微信不认这个登录码（errcode {errcode}）", errcode=errcode,
                                 retryable=errcode in (SYSTEM_BUSY, RATE_LIMITED))
            # Members carry `userid` (`UserId` in the older answer); anyone else only an `openid`.
            userid = data.get("userid") or data.get("UserId")
            return str(userid) if userid else None
        raise AssertionError("unreachable: the second attempt always returns or raises")


def authorize_url(settings: Settings, *, redirect_uri: str, state: str) -> str:
    """WeCom's web OAuth address (scope snsapi_base: the member id only, no consent page)."""
    query = urlencode({
        "appid": settings.wecom_corp_id or "",
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": state,
        "agentid": "" if settings.wecom_agent_id is None else str(settings.wecom_agent_id),
    })
    return f"{settings.wecom_oauth_base.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"
