"""The development PKI: a CA, the API's server certificate and a bot's client certificate.

The API frontend accepts nothing but mutual TLS, so a development tracker
needs what a cluster PKI would provide: a CA the API trusts for client
certificates (and that signed its own server certificate), and one client
certificate mapped to a bot user in the Authenticator's ``tls`` backend.
Everything is kept in ``STATE/pki`` and reused on the next start, so the
``BUGLESS_CERT``/``BUGLESS_KEY``/``BUGLESS_CA`` a developer exported keep
working; a certificate within :data:`RENEW_BEFORE` of expiring is re-issued
(and the whole set when the CA itself is).

``cryptography`` is not a dependency of bugless-core: it comes with
bugless-auth and bugless-web, which ``bugless dev`` needs anyway, so it is
imported here only when the command runs.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

#: The bot user a development client certificate maps to.
BOT_USERNAME = "dev-bot"
#: Its groups: the dev policy lets ``bots`` create top-level components.
BOT_GROUPS = ("bots",)
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=825)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class DevPki:
    """Paths of the development certificates (all PEM; keys mode 0600).

    The CA is the API's ``--client-ca``, the clients' ``BUGLESS_CA`` and
    ``-cacert``, and the tls authenticator's ``ca_file``; the server
    certificate names ``127.0.0.1`` and ``localhost``; the bot certificate's
    CN is :data:`BOT_USERNAME`; the mapping file is JSON.

    Attributes:
        directory: ``STATE/pki``.
    """

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "api-server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "api-server.key"

    @property
    def bot_cert(self) -> Path:
        return self.directory / f"{BOT_USERNAME}.pem"

    @property
    def bot_key(self) -> Path:
        return self.directory / f"{BOT_USERNAME}.key"

    @property
    def mapping(self) -> Path:
        return self.directory / "tls-subjects.json"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_cert(path: Path) -> x509.Certificate | None:
    from cryptography import x509  # noqa: PLC0415

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _fresh(cert: x509.Certificate | None) -> bool:
    return cert is not None and cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _issue_ca(pki: DevPki) -> tuple[x509.Certificate, EllipticCurvePrivateKey]:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bugless dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"bugless dev CA {_now():%Y-%m-%d}"),
        ]
    )
    start = _now() - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
    _write_key(pki.ca_key, key)
    _write_cert(pki.ca, cert)
    return cert, key


def _load_ca_key(path: Path) -> EllipticCurvePrivateKey | None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _issue_leaf(
    ca: x509.Certificate,
    ca_key: EllipticCurvePrivateKey,
    common_name: str,
    *,
    server: bool,
) -> tuple[x509.Certificate, EllipticCurvePrivateKey]:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    key = _new_key()
    start = _now() - datetime.timedelta(minutes=5)
    names: list[x509.GeneralName] = (
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        if server
        else [x509.DNSName(f"{common_name}.clients.invalid")]
    )
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + LEAF_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_pki(directory: Path) -> tuple[DevPki, list[str]]:
    """Create or renew what is missing or near expiry under ``directory``.

    Returns:
        The paths, and what was (re)issued, for the output ("issued a new
        dev CA", ...): a changed CA means previously exported files changed.
    """
    pki = DevPki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    done: list[str] = []
    ca = _load_cert(pki.ca)
    ca_key = _load_ca_key(pki.ca_key)
    renew_all = not _fresh(ca) or ca_key is None
    if renew_all or ca is None or ca_key is None:
        ca, ca_key = _issue_ca(pki)
        done.append("a new development CA")
    for cert_path, key_path, common_name, server in (
        (pki.server_cert, pki.server_key, "localhost", True),
        (pki.bot_cert, pki.bot_key, BOT_USERNAME, False),
    ):
        if renew_all or not _fresh(_load_cert(cert_path)) or not key_path.is_file():
            cert, key = _issue_leaf(ca, ca_key, common_name, server=server)
            _write_key(key_path, key)
            _write_cert(cert_path, cert)
            done.append(f"a certificate for {common_name}")
    mapping = {
        BOT_USERNAME: {"username": BOT_USERNAME, "groups": list(BOT_GROUPS), "bot": True},
    }
    text = json.dumps(mapping, indent=2, sort_keys=True) + "\n"
    if not pki.mapping.is_file() or pki.mapping.read_text() != text:
        pki.mapping.write_text(text)
    return pki, done
