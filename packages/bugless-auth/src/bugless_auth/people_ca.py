"""The certificate authority for people: short-lived client certificates from a signed CSR.

The API answers only callers that present a TLS client certificate. Bots get
theirs from an operator; a person gets one here, for themselves, after
signing in (``bugless login``, or the web's "API access" page). The person's
machine makes the key pair and sends a certificate signing request (CSR), so
the private key never leaves it; this CA signs only the public key, and
decides the certificate's contents itself:

* subject ``CN=<username>, O=bugless people`` (a display aid only);
* one URI SAN ``bugless:user:<opaque user id>`` — the name the Authenticator
  maps the certificate by (no mapping file; a rename changes nothing);
* ``clientAuth`` only, not a CA, validity at most ``max_seconds``.

A CSR that asks for anything else — a subject other than nothing or the
person's own ``CN``, any SAN, a CA, a weak key — is refused rather than
silently rewritten, so a client can never believe it got what it asked for
when it did not ("a CSR with a forged subject is refused").
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bugless_core.errors import InvalidArgument
from bugless_core.setting_files import pem_certificates, pem_private_key

#: The URI SAN prefix that names a person's opaque user id.
USER_URI_PREFIX = "bugless:user:"
#: The organisation every people certificate names (a display aid).
ORGANISATION = "bugless people"
#: Largest CSR accepted (PEM text).
MAX_CSR_BYTES = 16 * 1024
#: Elliptic curves accepted for people's keys.
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
#: Smallest RSA key accepted.
_MIN_RSA_BITS = 2048
#: Certificates start this much in the past, for clocks slightly behind.
_BACKDATE = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate this CA signed.

    Attributes:
        serial: Its serial number, as lower-case hex (how it is listed and revoked).
        pem: The certificate, PEM.
        not_before: Start of validity.
        not_after: End of validity.
        fingerprint: SHA-256 of the DER, hex.
    """

    serial: str
    pem: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str


def client_only(builder: x509.CertificateBuilder, issuer_public: object) -> x509.CertificateBuilder:
    """``builder`` with the usage every certificate bugless signs for a client has.

    TLS client authentication only, a signature key (no encipherment, no
    certificate or CRL signing), and the issuer's key id: one set for people's
    certificates (:meth:`PeopleCa.issue`) and bots'
    (:mod:`bugless_auth.bot_certificates`), so neither can drift into a
    certificate a server would accept or a CA could sign with.
    """
    return (
        builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    )


class PeopleCa:
    """Signs people's CSRs and recognises the certificates it signed."""

    def __init__(
        self,
        certificate: x509.Certificate,
        key: CertificateIssuerPrivateKeyTypes,
        *,
        max_seconds: float,
    ) -> None:
        """Use ``certificate`` and its ``key`` (a CA or an intermediate)."""
        self.certificate = certificate
        self._key = key
        self.max_seconds = max_seconds

    @classmethod
    def load(cls, cert_file: Path, key_file: Path, *, max_seconds: float) -> PeopleCa:
        """Read the CA from PEM files (a mounted Secret).

        Raises:
            ValueError: unreadable files, a key that does not match, or a
                certificate that is no CA.
        """
        certificate = load_ca_certificate(cert_file)
        try:
            key = ca_key_from_pem(key_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"people CA key {key_file}: {exc}") from exc
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ValueError(f"people CA key {key_file} does not belong to {cert_file}")
        return cls(certificate, key, max_seconds=max_seconds)

    def sign(
        self, csr_pem: str, *, user_id: str, username: str, seconds: float
    ) -> IssuedCertificate:
        """Sign a person's CSR for ``seconds`` (at most :attr:`max_seconds`).

        Raises:
            InvalidArgument: the CSR is malformed, not signed by its own key,
                uses a weak key, or asks for a name, SAN or CA rights.
        """
        csr = parse_csr(csr_pem)
        check_csr(csr, username=username)
        if seconds <= 0:
            raise InvalidArgument("validity_seconds: must be more than 0")
        seconds = min(seconds, self.max_seconds)
        now = datetime.datetime.now(datetime.UTC)
        not_after = now + datetime.timedelta(seconds=seconds)
        issuer_public = self.certificate.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                        x509.NameAttribute(NameOID.COMMON_NAME, username),
                    ]
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(csr.public_key())
            .serial_number(secrets.randbits(127) | 1)
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(USER_URI_PREFIX + user_id)]
                ),
                critical=False,
            )
        )
        builder = client_only(builder, issuer_public)
        algorithm = None if isinstance(self._key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        cert = builder.sign(self._key, algorithm)
        return IssuedCertificate(
            serial=format(cert.serial_number, "x"),
            pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        )

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was signed by this CA (issuer name and signature)."""
        return issued_by(cert, self.certificate)


def normalise_serial(serial: str) -> str:
    """A serial as an operator pastes it, in the form it is stored in (``format(n, "x")``).

    Lower-case hex without leading zeros is what :meth:`PeopleCa.issue`
    records; ``openssl x509 -serial`` prints it in upper case padded to whole
    bytes (``0C1D2``), ``openssl x509 -text`` and browsers' certificate
    viewers as colon-separated bytes (``0c:1d:2``), and some with ``0x``.
    Each is the same certificate, so a revocation asked in any of them finds
    it, rather than refusing it as unknown while it stays valid.
    """
    text = "".join(serial.split()).replace(":", "").lower().removeprefix("0x")
    return text.lstrip("0") or text[:1]


def load_ca_certificate(cert_file: Path) -> x509.Certificate:
    """A people CA's certificate from a PEM file (the current one, or an earlier one).

    Raises:
        ValueError: an unreadable file, or a certificate that is no CA.
    """
    try:
        return ca_certificate_from_pem(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"people CA certificate {cert_file}: {exc}") from exc


def ca_certificate_from_pem(data: bytes) -> x509.Certificate:
    """The first certificate of PEM ``data``, which must be a CA's.

    Also what ``--people-ca-cert`` and ``--people-ca-previous-cert`` must
    hold, checked when ``bugless auth serve`` starts.

    Raises:
        ValueError: no valid PEM certificate, or one that is no CA (no
            ``basicConstraints`` with ``CA:TRUE``).
    """
    certificate = pem_certificates(data)[0]
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as exc:
        raise ValueError("not a CA certificate (no basicConstraints CA:TRUE)") from exc
    if not constraints.value.ca:
        raise ValueError("not a CA certificate (basicConstraints CA:FALSE)")
    return certificate


def ca_key_from_pem(
    data: bytes,
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """The private key of PEM ``data``, of a kind a CA signs with here (EC, RSA or Ed25519).

    Also what ``--people-ca-key`` must hold, checked when ``bugless auth serve`` starts.

    Raises:
        ValueError: no valid unencrypted PEM private key, or another kind of key.
    """
    key = pem_private_key(data)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"a {type(key).__name__}; use an EC, RSA or Ed25519 key")
    return key


def issued_by(cert: x509.Certificate, ca_certificate: x509.Certificate) -> bool:
    """Whether ``ca_certificate``'s key signed ``cert`` (issuer name and signature)."""
    if cert.issuer != ca_certificate.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def person_of(cert: x509.Certificate) -> str | None:
    """The opaque user id a people certificate names (its one ``bugless:user:`` URI)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    people = [u.removeprefix(USER_URI_PREFIX) for u in uris if u.startswith(USER_URI_PREFIX)]
    return people[0] if len(people) == 1 and people[0] else None


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """A PEM CSR, or a clear error.

    Raises:
        InvalidArgument: empty, too long, or not a PEM CSR.
    """
    if not csr_pem.strip():
        raise InvalidArgument("csr_pem: required (a PEM certificate signing request)")
    if len(csr_pem.encode()) > MAX_CSR_BYTES:
        raise InvalidArgument(f"csr_pem: at most {MAX_CSR_BYTES} bytes")
    if "PRIVATE KEY" in csr_pem:
        raise InvalidArgument(
            "csr_pem: this is a private key — never send it; send the certificate signing "
            "request made from it"
        )
    try:
        return x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidArgument(
            "csr_pem: not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)"
        ) from exc


def check_csr_key(csr: x509.CertificateSigningRequest, *, field: str = "csr_pem") -> None:
    """Refuse a CSR not signed by its own key, or for a key too weak for a client certificate.

    The one rule for people's certificates and bots' (``bugless auth bot issue``).

    Raises:
        InvalidArgument: naming ``field`` and what is wrong with the key.
    """
    if not csr.is_signature_valid:
        raise InvalidArgument(f"{field}: its signature does not verify with its own public key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise InvalidArgument(f"{field}: RSA keys need at least {_MIN_RSA_BITS} bits")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise InvalidArgument(f"{field}: use an EC key on P-256, P-384 or P-521")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidArgument(f"{field}: use an EC (P-256), Ed25519 or RSA (2048+) key")


def check_csr(csr: x509.CertificateSigningRequest, *, username: str) -> None:
    """Refuse a CSR that asks for more than a person's own client certificate.

    Raises:
        InvalidArgument: naming what the CSR asked for.
    """
    check_csr_key(csr)
    attributes = list(csr.subject)
    own = [x509.NameAttribute(NameOID.COMMON_NAME, username)]
    if attributes and attributes != own:
        raise InvalidArgument(
            f"csr_pem: the subject {csr.subject.rfc4514_string()!r} is not yours; leave the "
            f"subject empty or use CN={username} (the certificate names you by your user id)"
        )
    for extension in csr.extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            raise InvalidArgument(
                "csr_pem: asks for subject alternative names; people certificates carry only "
                "the Authenticator's own name for you"
            )
        if isinstance(extension.value, x509.BasicConstraints) and extension.value.ca:
            raise InvalidArgument("csr_pem: asks to be a CA")
