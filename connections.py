"""How deployed code reaches the outside: the Temporal client and the policy file (the PostgreSQL pool: store.db).

The API, the worker and the `intake` commands import these; so does the dev stack (devstack.py),
never the other way round: deployed code imports nothing from the dev stack.

- :func:`connect_temporal` - the only place a Temporal client is built (pydantic data converter with
  the AES-GCM payload codec, namespace, TLS or API key).
- :func:`temporal_address` - the configured address, else the local dev server's.
- :func:`tls_config` - TLS / mTLS for the Temporal client, from settings.
- :func:`load_policy` - the policy file from settings, else the SPEC defaults.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from config import PROJECT_ROOT, Settings
from domain.policy import Policy, parse_policy


def temporal_address(settings: Settings) -> str:
    """The configured Temporal address, else the local dev server (127.0.0.1:temporal_port)."""
    return settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"


def _read_bytes(path: Path | None) -> bytes | None:
    return path.expanduser().read_bytes() if path else None


def tls_config(settings: Settings) -> bool | TLSConfig:
    """The client's TLS setting: mTLS / a private CA from files (and the server's certificate name), plain
    TLS, or none."""
    cert = _read_bytes(settings.temporal_tls_client_cert)
    key = _read_bytes(settings.temporal_tls_client_key)
    ca = _read_bytes(settings.temporal_tls_server_ca)
    if bool(cert) != bool(key):
        raise ValueError("set both INTAKE_TEMPORAL_TLS_CLIENT_CERT and INTAKE_TEMPORAL_TLS_CLIENT_KEY (mTLS)")
    if cert or ca or settings.temporal_tls_server_name:
        return TLSConfig(client_cert=cert, client_private_key=key, server_root_ca_cert=ca,
                         domain=settings.temporal_tls_server_name)
    # Temporal Cloud with an API key always speaks TLS.
    return settings.temporal_tls or settings.temporal_api_key is not None


def data_converter_for(settings: Settings) -> DataConverter:
    """The pydantic data converter with the AES-GCM payload codec of INTAKE_PAYLOAD_KEYS (codec.py).

    Without keys this refuses, unless INTAKE_PAYLOAD_ENCRYPTION=off says plain payloads are meant. With
    `required` (the default) a plain payload is refused on decode; `accept_plain` lets old ones through.
    """
    from codec import data_converter, parse_keys

    if settings.payload_keys is not None:
        return data_converter(parse_keys(settings.payload_keys.get_secret_value()),
                              refuse_plain=settings.payload_encryption == "required",
                              encrypt_key_id=settings.payload_encrypt_key_id)
    if settings.payload_encryption == "off":
        return pydantic_data_converter
    raise ValueError(
        "INTAKE_PAYLOAD_KEYS is not set: case payloads would reach Temporal unencrypted. Set a key"
        " (python -c 'import codec; print(codec.new_key_spec())') or INTAKE_PAYLOAD_ENCRYPTION=off"
    )


_metrics_runtimes: dict[str, Runtime] = {}


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime exporting the SDK's metrics (workers, polls, task latency) for Prometheus at
    `bind_address` (host:port); one per address and process (the exporter owns the port)."""
    if bind_address not in _metrics_runtimes:
        _metrics_runtimes[bind_address] = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address))
        )
    return _metrics_runtimes[bind_address]


async def connect_temporal(settings: Settings, *, worker_metrics: bool = False) -> Client:
    """Connect to Temporal: pydantic data converter, namespace, and mTLS or API key from settings.

    `worker_metrics`: the client's runtime exports the SDK's Prometheus metrics on
    ``worker_metrics_port`` (the worker process sets it; workers built on this client report there).
    """
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    runtime = None
    converter = data_converter_for(settings)
    if worker_metrics and settings.worker_metrics_port:
        runtime = metrics_runtime(f"{settings.metrics_host}:{settings.worker_metrics_port}")
    return await Client.connect(
        temporal_address(settings),
        namespace=settings.temporal_namespace,
        data_converter=converter,
        tls=tls_config(settings),
        api_key=api_key,
        runtime=runtime,
    )


def load_policy(settings: Settings) -> Policy:
    """The policy from settings.policy_file (relative paths: cwd, then the project), else Policy()."""
    if settings.policy_file is None:
        return Policy()
    path = settings.policy_file.expanduser()
    if not path.is_absolute() and not path.exists() and (PROJECT_ROOT / path).exists():
        path = PROJECT_ROOT / path
    if not path.exists():
        raise FileNotFoundError(f"policy file not found: {settings.policy_file} (INTAKE_POLICY_FILE)")
    return parse_policy(path.read_text(encoding="utf-8"))
