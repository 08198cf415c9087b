"""Bot client certificates: an operator signs a team's CSR and maps its name.

A bot calls the API with a TLS client certificate that (1) the API's
``--client-ca`` bundle trusts and (2) the ``tls`` authenticator's mapping
names (by CN). The team makes the key and a certificate signing request, so
the private key never leaves the bot's machine; the operator signs the
request with the CA the API trusts for bots and adds the CN to the mapping
file, which a serving Authenticator re-reads without a restart
(``bugless auth bot issue``: :func:`sign_bot_csr`, then :func:`mapping_with_bot`).

The certificate carries ``CN=<name>``, ``clientAuth`` only, no CA rights and
no subject alternative name: in particular no ``bugless:user:`` URI, so even
signed by the people CA it is not taken for a person's certificate, and no
``spiffe://bugless/`` URI, so it names no service. A CSR asking for any other
subject, a SAN, CA rights or a weak key is refused, not rewritten.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from bugless_auth.people_ca import (
    ca_certificate_from_pem,
    ca_key_from_pem,
    check_csr_key,
    client_only,
    parse_csr,
)
from bugless_auth.tls import CertificateMapping, parse_mapping
from bugless_core.errors import AlreadyExists, InvalidArgument
from bugless_core.usernames import username_problem

#: The longest a bot certificate may be valid (the CA/Browser Forum's old cap).
MAX_DAYS = 825
#: Certificates start this much in the past, for clocks slightly behind.
_BACKDATE = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class BotCertificate:
    """A bot certificate signed here.

    Attributes:
        pem: The certificate, PEM.
        common_name: The CN the mapping names it by.
        serial: Serial number, lower-case hex.
        not_after: End of validity.
        fingerprint: SHA-256 of the DER, hex (a mapping may name it ``sha256:<hex>``).
    """

    pem: str
    common_name: str
    serial: str
    not_after: datetime.datetime
    fingerprint: str


def sign_bot_csr(
    csr_pem: str, *, name: str, ca_cert_pem: bytes, ca_key_pem: bytes, days: float
) -> BotCertificate:
    """Sign a team's CSR as the client certificate of bot ``name`` for ``days``.

    Raises:
        InvalidArgument: naming the part at fault: the CSR (malformed, not
            signed by its own key, a weak key, another subject, a SAN, CA
            rights), the CA (not a CA, a key that is not its own) or ``days``.
    """
    if not name or name != name.strip() or any(c in name for c in "\n\r\x00"):
        raise InvalidArgument("NAME: give the bot's certificate name (its CN), e.g. release-bot")
    if not 0 < days <= MAX_DAYS:
        raise InvalidArgument(f"--days: give more than 0 and at most {MAX_DAYS} days")
    try:
        csr = parse_csr(csr_pem)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message.replace("csr_pem:", "--csr:", 1)) from None
    check_csr_key(csr, field="--csr")
    subject = list(csr.subject)
    if subject and subject != [x509.NameAttribute(NameOID.COMMON_NAME, name)]:
        raise InvalidArgument(
            f"--csr: asks for the subject {csr.subject.rfc4514_string()!r}, not CN={name}; "
            "make the request with an empty subject or that one"
        )
    for extension in csr.extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            raise InvalidArgument(
                "--csr: asks for subject alternative names; a bot certificate is named by "
                "its CN alone"
            )
        if isinstance(extension.value, x509.BasicConstraints) and extension.value.ca:
            raise InvalidArgument("--csr: asks to be a CA")
    try:
        ca_certificate = ca_certificate_from_pem(ca_cert_pem)
    except ValueError as exc:
        raise InvalidArgument(f"--ca-cert: {exc}") from exc
    try:
        ca_key = ca_key_from_pem(ca_key_pem)
    except ValueError as exc:
        raise InvalidArgument(f"--ca-key: {exc}") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if ca_key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != ca_certificate.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise InvalidArgument("--ca-key: not the key of the --ca-cert certificate")
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(csr.public_key())
        .serial_number(secrets.randbits(127) | 1)
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    builder = client_only(builder, ca_key.public_key())
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = builder.sign(ca_key, algorithm)
    return BotCertificate(
        pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        common_name=name,
        serial=format(certificate.serial_number, "x"),
        not_after=certificate.not_valid_after_utc,
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def mapping_with_bot(
    mapping_file: Path,
    name: str,
    *,
    username: str,
    groups: Sequence[str] = (),
    display_name: str = "",
) -> str | None:
    """The mapping file's text with ``name`` mapped to bot ``username``; None if it already is.

    A JSON file is rewritten as JSON; a TOML file keeps every line it has
    and gains one table at the end (comments survive). A name already mapped
    to the same user is a renewal: the file stays as it is (the user id
    follows the name, so the bot keeps its id). The text returned is checked
    by the Authenticator's own parser before the caller writes it.

    Raises:
        AlreadyExists: the name is mapped to another user (the name is
            taken: ``bot issue`` exits 4, as a username taken does).
        InvalidArgument: the file cannot be read or parsed, the name is
            mapped to this user with other ``groups`` or ``display_name``
            (when given), or ``username`` cannot be a bugless name.
    """
    if problem := username_problem(username):
        raise InvalidArgument(f"--username: {username!r} {problem}")
    try:
        text = mapping_file.read_text(encoding="utf-8") if mapping_file.exists() else ""
        current = parse_mapping(text, origin=str(mapping_file)) if text.strip() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"--mapping-file: {exc}") from exc
    found = current.get(name.lower())
    if found is not None:
        if found.username == username:
            _check_renewal(found, mapping_file, groups=groups, display_name=display_name)
            return None
        raise AlreadyExists(
            f"--mapping-file: {name!r} is mapped to {found.username!r} in {mapping_file}; "
            "give the bot another name, or edit that entry yourself"
        )
    entry: dict[str, object] = {"username": username, "groups": list(groups), "bot": True}
    if display_name:
        entry["display_name"] = display_name
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) or not text.strip():
        updated = json.dumps({**(data or {}), name: entry}, indent=2) + "\n"
    else:
        lines = [f"\n[{_toml_value(name)}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        updated = text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    try:
        updated.encode("utf-8")
        parse_mapping(updated, origin=str(mapping_file))
    except ValueError as exc:  # UnicodeEncodeError too: a name that is no text
        raise InvalidArgument(
            f"--mapping-file: the entry for {name!r} would not read back: {exc}"
        ) from exc
    return updated


def _check_renewal(
    found: CertificateMapping, mapping_file: Path, *, groups: Sequence[str], display_name: str
) -> None:
    """A renewal keeps the entry: refuse ``--groups``/``--display-name`` that differ from it.

    They would otherwise be dropped without a word while the command said the
    name was "already in" the mapping, and the bot would lack the groups the
    operator meant to give it.

    Raises:
        InvalidArgument: an option given that the mapped entry does not hold.
    """
    if groups and sorted(set(groups)) != sorted(set(found.groups)):
        raise InvalidArgument(
            f"--groups: {found.username!r} is mapped with the groups "
            f"{', '.join(found.groups) or '(none)'} in {mapping_file}; a renewal keeps its "
            "entry: change the groups there, or leave --groups out"
        )
    if display_name and display_name != found.display_name:
        raise InvalidArgument(
            f"--display-name: {found.username!r} is mapped as {found.display_name!r} in "
            f"{mapping_file}; a renewal keeps its entry: change it there, or leave "
            "--display-name out"
        )


def _toml_value(value: object) -> str:
    """``value`` (text, a bool, a list of texts) written as TOML.

    JSON's notation is TOML's for these, except that JSON writes a character
    past U+FFFF (an emoji in a display name) as two surrogate escapes,
    which TOML refuses: such characters are written as they are instead
    (TOML files are UTF-8), and DEL, which TOML allows only escaped, as one.
    """
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
