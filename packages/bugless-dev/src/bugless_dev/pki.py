"""The one local PKI: a CA and every certificate a local stack needs.

Services authenticate one another and their clients by certificate: every
service has one naming it (``spiffe://bugless/<service>``, see
:meth:`LocalPki.service_certificate`) and the services talk mutual TLS; the
API accepts nothing but mutual TLS from bots, and the Authenticator's ``tls``
backend maps a bot's certificate to a user. A cluster PKI provides that in production; on
one machine this module does, for ``bugless dev`` (a CA kept in the state
directory and reused, so exported ``BUGLESS_CERT``/``BUGLESS_KEY`` keep
working), for the tests (a fresh CA per session), for the HA drill and for
the benchmarks.

Everything is written as PEM files (keys mode 0600) under one directory:
``ca.pem``/``ca.key``, one ``STEM.pem``/``STEM.key`` pair per certificate, and
``tls-subjects.json``, the ``tls`` authenticator's mapping from a certificate
CN to a user (rewritten atomically, so a service re-reading it never sees
half a file).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bugless_core.grpc import SPIFFE_PREFIX

CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=825)
#: A certificate closer than this to its end is issued again by :meth:`LocalPki.ensure`.
RENEW_BEFORE = datetime.timedelta(days=30)
#: What a server certificate of a local stack names: every service listens on loopback.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate and its key, written as PEM files.

    Attributes:
        cert: PEM certificate (the leaf only; the CA is :attr:`LocalPki.ca_file`).
        key: PEM private key (mode 0600).
        common_name: The subject CN (what the ``tls`` authenticator maps).
        der: The certificate in DER form, as a server sees it after the handshake.
    """

    cert: Path
    key: Path
    common_name: str
    der: bytes


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _fresh(cert: x509.Certificate | None) -> bool:
    return cert is not None and cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sorted(names.get_values_for_type(x509.UniformResourceIdentifier))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class LocalPki:
    """A CA in a directory, the certificates it issued there, and the tls mapping.

    Open one with :meth:`open`: it loads the CA found in the directory, or
    makes one (also when the one found is near its end, which re-issues
    everything, since old leaves would no longer verify).

    Attributes:
        directory: Where every file is.
        renewed_ca: Whether :meth:`open` made a new CA (earlier files changed).
    """

    def __init__(
        self,
        directory: Path,
        ca: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        *,
        renewed_ca: bool,
    ) -> None:
        """Use ``ca``/``ca_key`` (already written to ``directory``); see :meth:`open`."""
        self.directory = directory
        self.renewed_ca = renewed_ca
        self._ca = ca
        self._ca_key = ca_key
        self._lock = threading.Lock()
        self._mapping: dict[str, dict[str, object]] = {}
        try:
            loaded = json.loads(self.mapping_file.read_text())
        except (OSError, ValueError):
            loaded = {}
        if isinstance(loaded, dict):
            self._mapping = loaded
        self._write_mapping()

    @classmethod
    def open(cls, directory: Path, *, organisation: str = "bugless") -> LocalPki:
        """Load the CA under ``directory``, or create one there (mode 0700)."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        ca = _load_cert(directory / "ca.pem")
        ca_key = _load_key(directory / "ca.key")
        if ca is not None and ca_key is not None and _fresh(ca):
            return cls(directory, ca, ca_key, renewed_ca=False)
        ca, ca_key = _issue_ca(organisation)
        _write_private(directory / "ca.key", _key_pem(ca_key))
        (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        return cls(directory, ca, ca_key, renewed_ca=True)

    @property
    def ca_file(self) -> Path:
        """The CA's PEM: a server's ``--client-ca`` and a client's ``-cacert``."""
        return self.directory / "ca.pem"

    @property
    def mapping_file(self) -> Path:
        """The ``tls`` authenticator's mapping (JSON: lower-case CN to a user)."""
        return self.directory / "tls-subjects.json"

    # ---- issuing ----

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        hosts: Sequence[str] = (),
        server: bool = False,
        client: bool = True,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        uris: Sequence[str] = (),
    ) -> CertificateFiles:
        """Issue a certificate and write it as ``STEM.pem``/``STEM.key``.

        Args:
            stem: File name without suffix (replaced if it exists).
            common_name: Subject CN.
            hosts: Subject alternative names (IP addresses or DNS names); a
                client certificate without any gets ``CN.clients.invalid``.
            server: Usable as a TLS server certificate.
            client: Usable as a TLS client certificate.
            not_before: Start of validity (default: five minutes ago).
            not_after: End of validity (default: 825 days, never past the CA).
            uris: URI subject alternative names (a service identity,
                ``spiffe://bugless/web``).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - datetime.timedelta(minutes=5)
        end = not_after or min(start + LEAF_LIFETIME, self._ca.not_valid_after_utc)
        names = [_general_name(h) for h in hosts] or [
            x509.DNSName(f"{common_name.replace(' ', '-')}.clients.invalid")
        ]
        names += [x509.UniformResourceIdentifier(uri) for uri in uris]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return CertificateFiles(
            cert=cert_path,
            key=key_path,
            common_name=common_name,
            der=cert.public_bytes(serialization.Encoding.DER),
        )

    def ensure(
        self,
        stem: str,
        common_name: str,
        *,
        hosts: Sequence[str] = (),
        server: bool = False,
        client: bool = True,
        uris: Sequence[str] = (),
    ) -> tuple[CertificateFiles, bool]:
        """The certificate ``STEM`` if it is still good and this CA's; else a new one.

        Returns:
            The files, and whether they were (re)issued now.
        """
        cert_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        cert = _load_cert(cert_path)
        if (
            cert is not None
            and _fresh(cert)
            and cert.issuer == self._ca.subject
            and not self.renewed_ca
            and _load_key(key_path) is not None
            and _uris(cert) == sorted(uris)
        ):
            files = CertificateFiles(
                cert=cert_path,
                key=key_path,
                common_name=common_name,
                der=cert.public_bytes(serialization.Encoding.DER),
            )
            return files, False
        issued = self.issue(stem, common_name, hosts=hosts, server=server, client=client, uris=uris)
        return issued, True

    def server_certificate(self, stem: str = "server") -> CertificateFiles:
        """A server certificate for :data:`LOOPBACK_HOSTS` (kept if still good)."""
        return self.ensure(stem, "localhost", hosts=LOOPBACK_HOSTS, server=True, client=True)[0]

    def service_certificate(self, service: str) -> CertificateFiles:
        """The certificate of bugless service ``service`` (kept if still good).

        It names the service as a URI SAN, ``spiffe://bugless/SERVICE``: the
        identity every server's ACCESS table is checked against. It serves
        TLS for :data:`LOOPBACK_HOSTS` and authenticates as a client, so one
        certificate is both a backend's server certificate and a frontend's
        client certificate.
        """
        return self.ensure(
            f"service-{service}",
            f"{service}.bugless",
            hosts=LOOPBACK_HOSTS,
            server=True,
            client=True,
            uris=[f"{SPIFFE_PREFIX}{service}"],
        )[0]

    def issue_client_certificate(
        self,
        common_name: str,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> CertificateFiles:
        """A new client certificate for ``common_name``, mapped to no one.

        ``not_before``/``not_after`` make certificates outside their validity
        (an expired bot certificate) signed by the same trusted CA.
        """
        stem = f"client-{common_name.replace(' ', '-')}-{secrets.token_hex(3)}"
        return self.issue(stem, common_name, not_before=not_before, not_after=not_after)

    # ---- the tls authenticator's mapping ----

    def map_subject(
        self, common_name: str, username: str, *, groups: Sequence[str] = (), bot: bool = True
    ) -> None:
        """Record that certificates with CN ``common_name`` are ``username``.

        The entry is in the ``tls`` authenticator's mapping format (the groups
        travel with it: a certificate identity is its own user, apart from a
        local user of the same name).
        """
        with self._lock:
            self._mapping[common_name.lower()] = {
                "username": username,
                "groups": list(groups),
                "bot": bot,
            }
            self._write_mapping()

    def unmap_subject(self, key: str) -> None:
        """Remove the mapping's entry ``key`` (a CN, SAN email or ``sha256:…``).

        As an operator stops a bot, or a leaked certificate of one; the
        Authenticator re-reads the file while it serves.

        Raises:
            KeyError: no entry has that key.
        """
        with self._lock:
            del self._mapping[key.lower()]
            self._write_mapping()

    def client_certificate_for(
        self,
        username: str,
        *,
        groups: Sequence[str] = (),
        bot: bool = True,
        common_name: str | None = None,
        stem: str | None = None,
    ) -> CertificateFiles:
        """Issue a client certificate and map its CN to ``username``.

        Args:
            username: Who the certificate authenticates as.
            groups: Their groups (carried by the mapping).
            bot: Whether the identity is a bot.
            common_name: The CN; ``USERNAME.bot`` by default.
            stem: File name; a unique one by default. A fixed stem (``dev-bot``)
                keeps a certificate that is still good instead of issuing one.
        """
        cn = common_name or f"{username}.bot"
        files = self.issue_client_certificate(cn) if stem is None else self.ensure(stem, cn)[0]
        self.map_subject(cn, username, groups=groups, bot=bot)
        return files

    def _write_mapping(self) -> None:
        text = json.dumps(self._mapping, indent=2, sort_keys=True) + "\n"
        try:
            if self.mapping_file.read_text() == text:
                return
        except OSError:
            pass
        temporary = self.mapping_file.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(self.mapping_file)


def _issue_ca(organisation: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{organisation} local CA {secrets.token_hex(4)}"
            ),
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
    return cert, key


__all__ = ["LOOPBACK_HOSTS", "CertificateFiles", "LocalPki"]
