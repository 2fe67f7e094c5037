"""Connection helpers (connections.py), and the rule that deployed code never imports the dev stack."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import PROJECT_ROOT, Settings
from connections import temporal_address, tls_config

# Modules that run in production (the API, the worker, their imports); devstack.py and cli.py's
# `intake dev` are the dev stack.
DEPLOYED = ["connections.py", "config.py", "worker.py", "api", "activities", "workflows", "domain"]


def test_temporal_address_falls_back_to_the_dev_server() -> None:
    assert temporal_address(Settings(temporal_address=None, temporal_port=7999)) == "127.0.0.1:7999"
    assert (
        temporal_address(Settings(temporal_address="ns.acct.tmprl.cloud:7233")) == "ns.acct.tmprl.cloud:7233"
    )


def test_tls_from_settings(tmp_path: Path) -> None:
    plain = Settings(temporal_tls=False, temporal_api_key=None)
    assert tls_config(plain) is False
    assert tls_config(plain.model_copy(update={"temporal_tls": True})) is True
    assert tls_config(plain.model_copy(update={"temporal_api_key": SecretStr("k")})) is True
    cert, key, ca = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
    for f in (cert, key, ca):
        f.write_bytes(f.name.encode())
    tls = tls_config(
        Settings(temporal_tls_client_cert=cert, temporal_tls_client_key=key, temporal_tls_server_ca=ca)
    )
    assert not isinstance(tls, bool)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert) == (
        b"c.pem",
        b"k.pem",
        b"ca.pem",
    )
    with pytest.raises(ValueError, match="both"):
        tls_config(Settings(temporal_tls_client_cert=cert))
    # a self-hosted cluster: its private CA only (server TLS), and the name its certificate carries
    own = tls_config(Settings(temporal_tls_server_ca=ca, temporal_tls_server_name="temporal"))
    assert not isinstance(own, bool)
    assert (own.server_root_ca_cert, own.domain, own.client_cert) == (b"ca.pem", "temporal", None)


def _deployed_files() -> list[Path]:
    files: list[Path] = []
    for name in DEPLOYED:
        path = PROJECT_ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_deployed_code_has_no_import_of_the_dev_stack() -> None:
    """Also the lazy imports inside functions, which importing the modules would not reveal."""
    offenders = []
    for path in _deployed_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n == "devstack" or n.startswith("devstack.") for n in names):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_deployed_entry_points_run_without_the_dev_stack() -> None:
    """The API app, the worker and `intake api` / `intake worker` with configured services, in a fresh
    interpreter: devstack is never imported."""
    code = textwrap.dedent(
        """
        import sys
        import api.app, worker, connections, cli
        from config import Settings

        s = Settings(database_url="postgresql://x@127.0.0.1:9/x", temporal_address="127.0.0.1:9")
        api.app.create_app(s)
        cli.resolved_settings(s)
        connections.load_policy(s)
        assert "devstack" not in sys.modules, "deployed code imported the dev stack"
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
