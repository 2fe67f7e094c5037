"""`intake certs`: the mTLS certificates between Temporal's clients and its frontend (docker-compose).

One private CA signs a server certificate for the frontend (names: ``temporal``, ``localhost``,
``127.0.0.1``) and one client certificate per client: ``intake`` (API, worker, migrations), ``ui``
(the Temporal Web UI), ``admin`` (the setup job and operators' `temporal` CLI). The frontend accepts
only clients whose certificate this CA signed (TEMPORAL_TLS_REQUIRE_CLIENT_AUTH), so reaching port
7233 is no longer enough to command a case. Private keys are written with mode 600; the CA key signs
nothing else and can be kept offline once the files are made.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("temporal", "localhost")
SERVER_IPS = ("127.0.0.1",)
CLIENTS = ("intake", "ui", "admin")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "client-intake"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600 if secret else 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, common: str, days: int, *, server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_certificates(out: Path, *, days: int = 825, force: bool = False) -> list[Path]:
    """Write ca.pem/ca.key, server.pem/server.key and <client>.pem/<client>.key into `out`; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.pem").exists() and not force:
        raise FileExistsError(f"{out / 'ca.pem'} exists (pass --force to make a new CA and every certificate)")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("client-intake temporal CA")
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    written = [out / "ca.pem", out / "ca.key"]
    _write(written[0], ca.public_bytes(serialization.Encoding.PEM), secret=False)
    _write(written[1], _key_pem(ca_key), secret=True)
    for common, server in (("temporal", True), *((c, False) for c in CLIENTS)):
        key, cert = _issue(ca_key, ca_name, common, days, server=server)
        stem = "server" if server else common
        _write(out / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM), secret=False)
        _write(out / f"{stem}.key", _key_pem(key), secret=True)
        written += [out / f"{stem}.pem", out / f"{stem}.key"]
    return written
