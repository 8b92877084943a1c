"""HTTPS links: a private CA is trusted through --ca-bundle / XVIEW2_CA_BUNDLE /
REQUESTS_CA_BUNDLE, and a certificate that does not verify fails at once with a clear
error (not after eight retries)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xview2_ingest import Catalog, download
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import UsageError

MiB = 1 << 20
NAME = "tls.tar.gz"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA, a server certificate it signed, and an unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca("xview2 test CA")
    key, cert = make_server_cert(ca_key, ca)
    _, other = make_ca("some other CA")
    (root / "ca.pem").write_bytes(_pem(ca))
    (root / "other-ca.pem").write_bytes(_pem(other))
    (root / "server.pem").write_bytes(_pem(cert))
    (root / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {p.stem: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def https_server(
    pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SignedLinkServer, bytes]]:
    root = tmp_path_factory.mktemp("https-files")
    data = b"\x1f\x8b" + os.urandom(6 * MiB)
    (root / NAME).write_bytes(data)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server"].with_suffix(".key"))
    with SignedLinkServer(root, ssl_context=context) as srv:
        yield srv, data


def _catalog(data: bytes) -> Catalog:
    return Catalog().with_overrides(
        {NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}}
    )


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XVIEW2_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)


def test_ca_bundle_flag_trusts_a_private_ca(
    https_server: tuple[SignedLinkServer, bytes], pki: dict[str, Path], tmp_path: Path
) -> None:
    srv, data = https_server
    assert srv.url_for(NAME).startswith("https://127.0.0.1:")
    report = download(
        [srv.url_for(NAME)],
        tmp_path,
        catalog=_catalog(data),
        connections=3,
        part_size=1 * MiB,
        ca_bundle=pki["ca"],
    )
    assert report.ok, report.summary()
    assert (tmp_path / NAME).read_bytes() == data


@pytest.mark.parametrize("variable", ["XVIEW2_CA_BUNDLE", "REQUESTS_CA_BUNDLE"])
def test_ca_bundle_from_the_environment(
    https_server: tuple[SignedLinkServer, bytes],
    pki: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    srv, data = https_server
    monkeypatch.setenv(variable, str(pki["ca"]))
    report = download([srv.url_for(NAME)], tmp_path, catalog=_catalog(data))
    assert report.ok, report.summary()
    assert (tmp_path / NAME).read_bytes() == data


def test_wrong_ca_fails_at_once_with_a_clear_error(
    https_server: tuple[SignedLinkServer, bytes], pki: dict[str, Path], tmp_path: Path
) -> None:
    srv, data = https_server
    before = srv.faults.requests
    report = download(
        [srv.url_for(NAME)], tmp_path, catalog=_catalog(data), ca_bundle=pki["other-ca"]
    )
    assert not report.ok
    (result,) = report.files
    message = str(result.error)
    assert "did not verify" in message and "127.0.0.1" in message, message
    assert str(pki["other-ca"]) in message
    assert "--ca-bundle" in (result.error.hint or "")
    assert "Signature=" not in message and "?" not in message
    assert srv.faults.requests == before, "no request may get through an unverified TLS link"
    assert not (tmp_path / NAME).exists()


def test_system_store_refuses_a_private_ca_from_the_command_line(
    https_server: tuple[SignedLinkServer, bytes], tmp_path: Path
) -> None:
    srv, data = https_server
    catalog = tmp_path / "cat.json"
    catalog.write_text(
        json.dumps({NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}})
    )
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "xview2_ingest.cli", "download", srv.url_for(NAME)),
            *("--dest", str(tmp_path / "d"), "--catalog", str(catalog), "--no-prompt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.endswith("CA_BUNDLE")},
    )
    assert proc.returncode == 1, proc.stderr
    assert "did not verify" in proc.stderr and "--ca-bundle" in proc.stderr, proc.stderr
    assert "Signature=" not in proc.stderr


def test_missing_ca_bundle_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--ca-bundle=.*no such file"):
        download(["https://127.0.0.1:9/x.tar.gz"], tmp_path, ca_bundle=tmp_path / "nope.pem")
