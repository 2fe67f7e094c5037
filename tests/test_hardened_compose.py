"""The hardened compose (issue 14), without a Docker engine: Temporal's frontend speaks mTLS with the
certificates `intake certs` makes, every client of it has its own certificate, the UI is reached only
through the proxy's sign-in; and the certificates really do mutual TLS (a real handshake here)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import main
from config import PROJECT_ROOT
from tests.test_compose import env_file_values

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _env(service: dict[str, Any]) -> dict[str, Any]:
    return dict(service.get("environment") or {})


def _handshake(certs: Path, client_cert: tuple[Path, Path] | None, ca: Path) -> bool:
    """A TLS server with the frontend's certificate requiring a client certificate of `ca`; whether a
    client (with `client_cert`, verifying the server as `temporal`) gets through."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    server_ctx.load_verify_locations(ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, bool] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                result["server"] = True
        except (ssl.SSLError, OSError):
            result["server"] = False

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client_cert:
        client_ctx.load_cert_chain(*client_cert)
    ok = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="temporal") as tls:
            ok = tls.recv(2) == b"ok"
    except (ssl.SSLError, OSError):
        ok = False
    t.join(10)
    listener.close()
    return ok and result.get("server", False)


def test_intake_certs_make_working_mutual_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out)]) == 0
    for name in ("ca", "server", "intake", "ui", "admin"):
        assert (out / f"{name}.pem").exists()
        assert stat.S_IMODE((out / f"{name}.key").stat().st_mode) == 0o600, name
    assert main(["certs", "--out", str(out)]) == 1  # never overwrites a CA by accident
    # every client certificate gets through; no certificate, or one of another CA, does not
    for client in ("intake", "ui", "admin"):
        assert _handshake(out, (out / f"{client}.pem", out / f"{client}.key"), out / "ca.pem"), client
    assert not _handshake(out, None, out / "ca.pem")
    other = tmp_path / "other"
    assert main(["certs", "--out", str(other)]) == 0
    assert not _handshake(out, (other / "intake.pem", other / "intake.key"), out / "ca.pem")


def test_the_frontend_requires_client_certificates(compose: dict[str, Any]) -> None:
    s = compose["services"]
    env = _env(s["temporal"])
    assert env["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert env["TEMPORAL_TLS_CLIENT1_CA_CERT"].endswith("ca.pem")
    mounted = {v.split(":")[0] for v in s["temporal"]["volumes"]}
    assert {"./deploy/certs/server.pem", "./deploy/certs/server.key", "./deploy/certs/ca.pem"} <= mounted


def test_every_client_of_the_frontend_has_its_own_certificate(compose: dict[str, Any]) -> None:
    s = compose["services"]
    for name in ("api", "worker", "migrate"):
        env = {**env_file_values(), **_env(s[name])}  # intake.env as the example has it, then compose's own
        assert "/certs/intake.pem" in env["INTAKE_TEMPORAL_TLS_CLIENT_CERT"]
        assert "/certs/intake.key" in env["INTAKE_TEMPORAL_TLS_CLIENT_KEY"]
        assert "/certs/ca.pem" in env["INTAKE_TEMPORAL_TLS_SERVER_CA"]
        assert "./deploy/certs/intake.key:/certs/intake.key:ro" in s[name]["volumes"]
    setup = _env(s["temporal-setup"])
    assert setup["TEMPORAL_TLS_CLIENT_CERT_PATH"] == "/certs/admin.pem" and setup["TEMPORAL_TLS_SERVER_NAME"] == "temporal"
    ui = _env(s["temporal-ui"])
    assert ui["TEMPORAL_TLS_CERT"] == "/certs/ui.pem" and ui["TEMPORAL_TLS_ENABLE_HOST_VERIFICATION"] == "true"
    # keys are never baked into the image
    assert "deploy/certs" in (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_ui_is_reached_only_through_sign_in(compose: dict[str, Any]) -> None:
    ui = compose["services"]["temporal-ui"]
    assert [str(p) for p in ui["ports"]] == ["127.0.0.1:8233:8080"]
    ops = (PROJECT_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "intake certs" in ops and "basicauth" in ops and "TEMPORAL_AUTH_ENABLED" in ops
