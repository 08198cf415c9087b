"""A client command refuses an expired certificate without importing ``cryptography.x509``.

``refuse_expired`` (of ``bugless_api._connection_settings``, which the
commands and ``BuglessClient.from_config`` share) reads a certificate's
notAfter from its DER itself and asks ``cryptography`` only when that says
expired or cannot tell. These tests hold the fast reading to
``cryptography``'s on real certificates (both time encodings, v1 and v3, a
chain), check the refusal and its message are as before, that a certificate
replaced at the same path is judged afresh, and that a fresh interpreter
checking a valid certificate loads no ``cryptography.x509``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bugless_api import _connection_settings as settings
from bugless_core.errors import InvalidArgument

_NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
_DAY = datetime.timedelta(days=1)


def _pem(
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    version: x509.Version = x509.Version.v3,
) -> bytes:
    """A self-signed certificate valid from ``not_before`` to ``not_after``, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot.example")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if version is x509.Version.v3:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    certificate = builder.sign(key, hashes.SHA256())
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    if version is x509.Version.v1:
        # cryptography writes v3 only; a v1 certificate has no [0] version: drop it.
        pem = _without_version(certificate.public_bytes(serialization.Encoding.DER))
    return pem


def _without_version(der: bytes) -> bytes:
    """The DER ``der`` with tbsCertificate's [0] version removed, as PEM (signature now wrong)."""
    _, body, _ = settings._der_item(der, 0)
    _, tbs_body, tbs_end = settings._der_item(der, body)
    _, _, version_end = settings._der_item(der, tbs_body)
    inner = der[version_end:tbs_end]
    whole = _der_sequence(inner) + der[tbs_end:]
    outer = _der_sequence(whole)
    text = base64.encodebytes(outer).decode()
    return f"-----BEGIN CERTIFICATE-----\n{text}-----END CERTIFICATE-----\n".encode()


def _der_sequence(content: bytes) -> bytes:
    """A DER SEQUENCE of ``content`` (its length in the shortest form, as DER requires)."""
    size = len(content)
    if size < 0x80:
        return bytes([0x30, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x30, 0x80 | len(length)]) + length + content


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (_NOW - _DAY, _NOW + _DAY),  # UTCTime
        (_NOW - 400 * _DAY, _NOW - _DAY),  # expired
        (_NOW - _DAY, datetime.datetime(2051, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)),
        (  # GeneralizedTime both (RFC 5280: from 2050)
            datetime.datetime(2050, 1, 1, tzinfo=datetime.UTC),
            datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),
        ),
        (  # 1950-1999 in a UTCTime
            datetime.datetime(1951, 1, 1, tzinfo=datetime.UTC),
            datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),
        ),
    ],
)
def test_the_fast_reading_agrees_with_cryptography(
    not_before: datetime.datetime, not_after: datetime.datetime
) -> None:
    pem = _pem(not_before, not_after)
    expected = x509.load_pem_x509_certificate(pem).not_valid_after_utc
    assert settings.pem_not_after(pem) == expected == not_after
    # A chain file: the first certificate counts, as for cryptography.
    chain = pem + _pem(_NOW - _DAY, _NOW + 3 * _DAY)
    assert (
        settings.pem_not_after(chain) == x509.load_pem_x509_certificate(chain).not_valid_after_utc
    )


def test_a_v1_certificate_is_read_too() -> None:
    pem = _pem(_NOW - _DAY, _NOW + 2 * _DAY, version=x509.Version.v1)
    assert x509.load_pem_x509_certificate(pem).version is x509.Version.v1
    assert settings.pem_not_after(pem) == _NOW + 2 * _DAY


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a certificate",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",  # truncated
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n",  # no END line
    ],
)
def test_anything_unreadable_is_left_to_cryptography(pem: bytes) -> None:
    assert settings.pem_not_after(pem) is None


def _refusal(cert_file: Path) -> str:
    """The message of ``refuse_expired(cert_file)`` ("" when it lets it through)."""
    try:
        settings.refuse_expired(cert_file)
    except InvalidArgument as exc:
        refused = exc
    else:
        return ""
    assert refused.metadata["origin"] == "client"  # the commands exit 2 for it
    return refused.message


def test_an_expired_certificate_is_refused_as_before(tmp_path: Path) -> None:
    cert_file = tmp_path / "bot.pem"
    until = _NOW - _DAY
    cert_file.write_bytes(_pem(_NOW - 30 * _DAY, until))
    assert _refusal(cert_file) == (
        f"the certificate {cert_file} expired at {until:%Y-%m-%d %H:%M} UTC; "
        "run `bugless login` again"
    )


def test_a_certificate_replaced_at_the_same_path_is_judged_afresh(tmp_path: Path) -> None:
    cert_file = tmp_path / "bot.pem"
    cert_file.write_bytes(_pem(_NOW - _DAY, _NOW + 30 * _DAY))
    assert _refusal(cert_file) == ""
    assert _refusal(cert_file) == ""
    stat = cert_file.stat()
    expired = _pem(_NOW - 30 * _DAY, _NOW - _DAY)
    cert_file.write_bytes(expired)
    os.utime(cert_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same path and mtime
    assert "run `bugless login` again" in _refusal(cert_file)


def test_unreadable_certificates_are_left_to_the_tls_layer(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert _refusal(garbage) == ""
    assert _refusal(tmp_path / "missing.pem") == ""


#: Checks the certificates named in argv, then prints whether cryptography.x509 was loaded.
_PROBE = """
import json, sys
from pathlib import Path
from bugless_api._connection_settings import refuse_expired
from bugless_core.errors import InvalidArgument
for name in sys.argv[1:]:
    try:
        refuse_expired(Path(name))
    except InvalidArgument as exc:
        print(exc.message, file=sys.stderr)
        print(json.dumps(["refused", "cryptography.x509" in sys.modules]))
        raise SystemExit(0)
print(json.dumps(["ok", "cryptography.x509" in sys.modules]))
"""


def _probe(*files: Path) -> tuple[list[object], str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=180,  # a fresh interpreter on a loaded CI machine
        check=True,
    )
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(verdict, list)
    return verdict, result.stderr


def test_a_valid_certificate_is_checked_without_importing_cryptography(tmp_path: Path) -> None:
    cert_file = tmp_path / "bot.pem"
    cert_file.write_bytes(_pem(_NOW - _DAY, _NOW + 30 * _DAY))
    assert _probe(cert_file, cert_file) == (["ok", False], "")
    # Replaced by an expired one at the same path: refused, through cryptography.
    cert_file.write_bytes(_pem(_NOW - 30 * _DAY, _NOW - _DAY))
    verdict, stderr = _probe(cert_file)
    assert verdict == ["refused", True]
    assert "run `bugless login` again" in stderr
