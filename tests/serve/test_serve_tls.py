"""--tls-cert / --tls-key: the gateway speaks HTTPS with the given certificate, and only HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest

from support.servehelp import Gateway, auth, make_world, write_policy

pytestmark = pytest.mark.slow


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_gateway_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    world = make_world(tmp_path, {}, {"delta": {}})
    cert, key = self_signed(tmp_path)
    policy = write_policy(tmp_path / "serve.toml", {"namespaces": ["delta"]})
    gw = Gateway(
        world, policy, tmp_path / "gw.log", ("--tls-cert", str(cert), "--tls-key", str(key)), "https"
    )
    gw.verify = ssl.create_default_context(cafile=str(cert))
    try:
        gw.wait_ready(60)
        answer = httpx.get(gw.url + "/v1/models", headers=auth(world.keys["delta"]), verify=gw.verify)
        assert answer.status_code == 200 and answer.json() == {"models": []}
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets nowhere
            httpx.get(gw.url.replace("https", "http") + "/healthz", timeout=5).raise_for_status()
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is not trusted by default
            httpx.get(gw.url + "/healthz", timeout=5)
    finally:
        gw.stop()
