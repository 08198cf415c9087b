"""The ``tls`` backend: identities of bots (and people) from client certificates.

The frontend terminates mutual TLS and verifies the chain; it passes the DER of
the client certificate. Verification alone is not authorisation — a cluster
CA signs certificates for many workloads — so the backend accepts only
certificates its *mapping* names, by SHA-256 fingerprint, SAN email or CN, only
within their validity period, and (when ``ca_file`` is configured) only ones
issued directly by one of its CAs, so a certificate from another CA that
happens to carry a mapped CN is refused even if a frontend was misconfigured.
``ca_file`` is a PEM bundle: during a rotation of the CA that signs the bots'
certificates it holds the old CA and the new one, and a certificate either
key signed is accepted. The validity window is checked with or without
``ca_file``: a frontend that passes on an expired certificate (or one not yet
valid) maps it to nobody.

Mapping (JSON or TOML; ``mapping_file`` or inline ``mapping``)::

    ["deploy-bot"]                 # a CN
    username = "deploy-bot"
    groups = ["bots"]

    ["alice@example.com"]          # a SAN email
    username = "alice"
    bot = false

    ["sha256:3f9a..."]             # one exact certificate
    username = "release-bot"

Entries default to ``bot = true``; ``display_name`` defaults to the username.
An entry names a bugless user by its username: two entries with one username
(a bot's old and new certificate during a rotation) are one user, and a
username another backend's user holds is refused, never taken over
(:mod:`bugless_auth.username_holders`).

A ``mapping_file`` is re-read when it changes (its modification time or size,
looked at most once every :data:`RELOAD_CHECK_SECONDS`, or the config key
``reload_check_seconds``), so adding a bot needs
no restart; that is also how a Kubernetes ConfigMap update arrives. A file
that no longer parses is logged and ignored: the last good mapping stays in
force rather than locking every certificate user out. The ``ca_file`` is
re-read the same way, so adding the new CA of a rotation and later removing
the old one (whose certificates are then refused) needs no restart either; a
replacement holding no certificate, or one that is not a CA's, is logged and
ignored alike, the last good bundle staying in force (at start-up either is
refused).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from bugless_core.auth_backend import CertificateAuthenticator, ExternalIdentity
from bugless_core.errors import InvalidArgument
from bugless_core.setting_files import FileContent, pem_certificates
from bugless_core.usernames import username_key, username_problem

_log = logging.getLogger("bugless.auth.tls")

#: At most this often the mapping and CA files are checked for changes (a ``stat`` each).
RELOAD_CHECK_SECONDS = 2.0


@dataclass(frozen=True)
class CertificateMapping:
    """Who a mapped certificate is."""

    username: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    bot: bool


def mapping_content(data: bytes) -> dict[str, CertificateMapping]:
    """What ``mapping_file`` must hold (checked when ``bugless auth serve`` starts).

    Raises:
        ValueError: not UTF-8, or not a mapping :func:`parse_mapping` reads.
    """
    origin = "not a usable mapping"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{origin}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_mapping(text, origin=origin)


def parse_mapping(text: str, *, origin: str) -> dict[str, CertificateMapping]:
    """Read a mapping from JSON or TOML; keys are normalised to lower case.

    Raises:
        ValueError: naming the entry and the field at fault.
    """
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{origin}: neither JSON nor TOML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a mapping of CN/email/sha256:… to a user")
    mapping: dict[str, CertificateMapping] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str):
            raise ValueError(f"{origin}: {key!r} needs at least a username")
        groups = entry.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{origin}: {key!r}: groups must be a list of names")
        if problem := username_problem(entry["username"]):
            raise ValueError(f"{origin}: {key!r}: username {entry['username']!r} {problem}")
        mapping[str(key).strip().lower()] = CertificateMapping(
            username=entry["username"],
            display_name=str(entry.get("display_name") or entry["username"]),
            email=str(entry.get("email", "")),
            groups=tuple(groups),
            bot=bool(entry.get("bot", True)),
        )
    _check_entries_of_one_user(mapping, origin)
    return mapping


def _check_entries_of_one_user(mapping: Mapping[str, CertificateMapping], origin: str) -> None:
    """Entries naming one username must say the same of that user.

    They are one user (:mod:`bugless_auth.username_holders`), and each sign-in
    writes its own entry's groups, display name, email and bot flag: entries
    that disagree would flip the user between them with every certificate that
    signs in, and one with fewer groups would end the user's sessions each time
    (:mod:`bugless_auth.group_loss`).

    Raises:
        ValueError: naming both entries and the first field they disagree on.
    """
    first: dict[str, tuple[str, CertificateMapping]] = {}
    for key, entry in mapping.items():
        seen = first.setdefault(username_key(entry.username), (key, entry))
        other_key, other = seen
        if other_key == key:
            continue
        fields = {
            "username": (other.username, entry.username),
            "groups": (sorted(other.groups), sorted(entry.groups)),
            "display_name": (other.display_name, entry.display_name),
            "email": (other.email, entry.email),
            "bot": (other.bot, entry.bot),
        }
        for field, (was, now) in fields.items():
            if was != now:
                raise ValueError(
                    f"{origin}: {other_key!r} and {key!r} name one user ({entry.username!r}) "
                    f"but differ in {field} ({was!r} and {now!r}): entries of one user must "
                    "agree, or each sign-in would change the user to its own entry's"
                )


def ca_bundle_content(data: bytes) -> list[x509.Certificate]:
    """What ``ca_file`` must hold: the PEM certificates of the CAs bot certificates come from.

    Checked when ``bugless auth serve`` starts and whenever the file is re-read.
    Each certificate must be a CA's (basicConstraints ``CA:TRUE``, and
    ``keyCertSign`` when it has a key usage): a leaf put there by mistake (a
    bot's own certificate, the API's server certificate) would make every
    certificate issued by it "trusted" in name only, since a leaf signs
    nothing, and would leave the bots' real CA out, so it is refused, naming
    the certificate, rather than found out when every bot is refused.

    Raises:
        ValueError: it holds no certificate, one that does not parse, or one
            that is not a CA's.
    """
    what = (
        "give the PEM certificate of the CA that signs the bots' certificates "
        "(or of each CA, one after the other, while one replaces another)"
    )
    try:
        certificates = pem_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{exc}; {what}") from exc
    for number, certificate in enumerate(certificates, start=1):
        if problem := _not_a_ca(certificate):
            raise ValueError(
                f"certificate {number} of {len(certificates)} "
                f"(subject {certificate.subject.rfc4514_string()}) is not a CA: {problem}; {what}"
            )
    return certificates


#: The extensions :func:`_not_a_ca` reads, by name for its reasons.
_CA_EXTENSIONS = {
    x509.oid.ExtensionOID.BASIC_CONSTRAINTS: "basicConstraints",
    x509.oid.ExtensionOID.KEY_USAGE: "keyUsage",
}


def _not_a_ca(certificate: x509.Certificate) -> str | None:
    """Why ``certificate`` cannot sign certificates, or None when it is a CA's.

    Extensions that do not read (one of them twice, which cryptography
    raises as DuplicateExtension, not a ValueError; or a value that does
    not parse) are a reason too: raised from here, they were a traceback at
    start-up and escaped the reload's "keeping the last good one".
    """
    try:
        extensions = certificate.extensions
    except x509.DuplicateExtension as exc:
        named = _CA_EXTENSIONS.get(exc.oid)
        which = f"{exc.oid.dotted_string} ({named})" if named else exc.oid.dotted_string
        return f"its extensions do not read: it holds extension {which} twice"
    except ValueError as exc:
        return f"its extensions do not read: {exc}"
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return "it has no basicConstraints extension (a CA's says CA:TRUE)"
    if not constraints.value.ca:
        return "its basicConstraints say CA:FALSE (a leaf's certificate)"
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not usage.key_cert_sign:
        return "its key usage leaves out keyCertSign (it may not sign certificates)"
    return None


def parse_certificate(der: bytes) -> x509.Certificate:
    """Decode DER, with an error a caller can act on.

    Raises:
        InvalidArgument: not a DER X.509 certificate.
    """
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise InvalidArgument(
            "certificate_der: not a DER-encoded X.509 certificate (send the raw DER bytes, not PEM)"
        ) from exc


def certificate_names(cert: x509.Certificate) -> list[str]:
    """Mapping keys a certificate can match, most specific first."""
    names = ["sha256:" + cert.fingerprint(hashes.SHA256()).hex()]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.extend(e.lower() for e in san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    names.extend(
        str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    return names


def validity_problem(cert: x509.Certificate) -> str | None:
    """What puts ``cert`` outside its validity window now, or None when it is within it.

    Worded to follow "certificate subject CN=...": ``expired at ...`` or
    ``is not valid until ...`` (UTC, to the minute).
    """
    now = datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        return f"expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


class TlsAuthenticator(CertificateAuthenticator):
    """Maps client certificates to users through a configured allow-list."""

    name = "tls"
    file_options: ClassVar[Mapping[str, FileContent]] = {
        "mapping_file": mapping_content,
        "ca_file": ca_bundle_content,
    }

    def __init__(
        self,
        mapping: Mapping[str, CertificateMapping],
        cas: Sequence[x509.Certificate] = (),
        *,
        mapping_file: Path | None = None,
        ca_file: Path | None = None,
        reload_check_seconds: float = RELOAD_CHECK_SECONDS,
    ) -> None:
        """Accept certificates named in ``mapping`` (issued by one of ``cas``, if any).

        With ``mapping_file`` (the file ``mapping`` was read from) and
        ``ca_file`` (the bundle ``cas`` were read from), changes to either
        file replace what it gave while serving.
        """
        self.mapping = dict(mapping)
        self.cas = tuple(cas)
        self._file = mapping_file
        self._ca_file = ca_file
        self._check_every = reload_check_seconds
        self._next_check = time.monotonic() + reload_check_seconds
        self._seen = _file_state(mapping_file) if mapping_file is not None else None
        self._seen_ca = _file_state(ca_file) if ca_file is not None else None
        #: Held while the files are re-read: a caller that finds a reload under
        #: way waits for it rather than take the mapping it replaces.
        self._reloading = asyncio.Lock()
        #: The mapping's subjects and usernames (:meth:`mapped_subjects`), and the
        #: mapping they are of.
        self._subjects: tuple[dict[str, CertificateMapping], Mapping[str, str]] | None = None

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build from ``mapping_file`` or ``mapping``, ``ca_file``, ``reload_check_seconds``.

        Raises:
            ValueError: no mapping, or one that cannot be read or parsed.
        """
        if config.get("mapping_file"):
            path = Path(str(config["mapping_file"]))
            try:
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"tls mapping_file {path}: {exc.strerror or exc}") from exc
            mapping = parse_mapping(text, origin=str(path))
            mapping_file: Path | None = path
        elif config.get("mapping"):
            mapping = parse_mapping(str(config["mapping"]), origin="tls mapping")
            mapping_file = None
        else:
            raise ValueError(
                "the tls authenticator needs a mapping: set BUGLESS_AUTH_TLS_MAPPING_FILE "
                "(or --authenticator-option tls.mapping_file=PATH)"
            )
        cas: list[x509.Certificate] = []
        ca_file: Path | None = None
        if config.get("ca_file"):
            ca_file = Path(str(config["ca_file"]))
            cas = await _read_ca_bundle(ca_file)
        try:
            check = float(config.get("reload_check_seconds", RELOAD_CHECK_SECONDS))
        except (TypeError, ValueError) as exc:
            raise ValueError("tls reload_check_seconds: give a number of seconds") from exc
        if check < 0:
            raise ValueError("tls reload_check_seconds: give 0 or more seconds")
        return cls(
            mapping,
            cas,
            mapping_file=mapping_file,
            ca_file=ca_file,
            reload_check_seconds=check,
        )

    async def _reload_if_changed(self) -> None:
        """Re-read the mapping and CA files if they changed since they were last read.

        One reload at a time: a reload records the file's state before it
        reads the file (in a thread), so a second caller meanwhile found the
        state unchanged and went on with the mapping being replaced (the
        sessions page listed a certificate session the new mapping had just
        dropped). It now waits for the reload under way and then sees its
        mapping.
        """
        if (self._file is None and self._ca_file is None) or time.monotonic() < self._next_check:
            return
        async with self._reloading:
            if time.monotonic() < self._next_check:
                return  # a reload finished while this call waited
            self._next_check = time.monotonic() + self._check_every
            if self._file is not None:
                await self._reload_mapping(self._file)
            if self._ca_file is not None:
                await self._reload_cas(self._ca_file)

    async def _reload_mapping(self, path: Path) -> None:
        """Replace the mapping by ``path``'s if the file changed and still parses."""
        state = _file_state(path)
        if state == self._seen:
            return
        self._seen = state
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            mapping = parse_mapping(text, origin=str(path))
        except (OSError, ValueError) as exc:
            _log.error(
                "tls mapping_file %s changed but cannot be used (%s); keeping the last good one",
                path,
                exc,
                extra={"mapping_file": str(path)},
            )
            return
        self.mapping = mapping
        _log.info(
            "tls mapping_file %s reloaded: %d entries",
            path,
            len(mapping),
            extra={"mapping_file": str(path), "entries": len(mapping)},
        )

    async def _reload_cas(self, path: Path) -> None:
        """Replace the CA bundle by ``path``'s if the file changed and still holds a certificate.

        A bundle that cannot be used keeps the last good one in force, as a
        broken mapping does: refusing every bot over a bad edit would be worse
        than trusting for a while longer a CA the operator meant to remove,
        and the error says so.
        """
        state = _file_state(path)
        if state == self._seen_ca:
            return
        self._seen_ca = state
        try:
            cas = await _read_ca_bundle(path)
        except ValueError as exc:
            _log.error(
                "tls ca_file %s changed but cannot be used (%s); keeping the last good one "
                "(%d CA certificates)",
                path,
                exc,
                len(self.cas),
                extra={"ca_file": str(path)},
            )
            return
        self.cas = tuple(cas)
        _log.info(
            "tls ca_file %s reloaded: %d CA certificates",
            path,
            len(cas),
            extra={"ca_file": str(path), "certificates": len(cas)},
        )

    async def mapped_subjects(self) -> Mapping[str, str]:
        """The mapping's subjects and their usernames (re-read first if its file changed).

        One object per mapping, so the caller sees a change by identity.
        """
        await self._reload_if_changed()
        if self._subjects is None or self._subjects[0] is not self.mapping:
            subjects = {f"tls:{name}": entry.username for name, entry in self.mapping.items()}
            self._subjects = (self.mapping, subjects)
        return self._subjects[1]

    @property
    def display_name(self) -> str:
        """Label in ListAuthenticators."""
        return "TLS client certificate"

    def _trusted(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` is within its validity window and (with ``cas``) issued by one."""
        if validity_problem(cert) is not None:
            return False
        return not self.cas or any(_directly_issued_by(cert, ca) for ca in self.cas)

    async def untrusted(self, certificate_der: bytes) -> str | None:
        """That no CA of ``ca_file`` signed the certificate, or None.

        Whatever the mapping says of its names: the API tells the
        certificate's holder this reason (their certificate's issuer is no
        secret to them), so it must not depend on the mapping, or anyone the
        API's client CA bundle lets through could learn which CNs are mapped
        by choosing the CN of a certificate another CA signed. Nor does it
        say what ``ca_file`` holds (how many CAs, which): the holder of an
        untrusted certificate learns nothing of the configuration from it.
        The operator's log says both, with the file, at each refusal.
        """
        cert = parse_certificate(certificate_der)
        await self._reload_if_changed()
        if not self.cas or any(_directly_issued_by(cert, ca) for ca in self.cas):
            return None
        issuer = cert.issuer.rfc4514_string()
        count = len(self.cas)
        # What the bundle holds is the operator's to know, not the holder's.
        _log.info(
            "certificate subject %s refused: its issuer %s signed it, and none of the %d CA "
            "certificate%s of tls ca_file %s did (%s)",
            cert.subject.rfc4514_string(),
            issuer,
            count,
            "" if count == 1 else "s",
            self._ca_file or "(inline)",
            "; ".join(ca.subject.rfc4514_string() for ca in self.cas),
            extra={"issuer": issuer, "ca_file": str(self._ca_file), "certificates": count},
        )
        return f"is not signed by a CA in the tls authenticator's ca_file (its issuer is {issuer})"

    async def authenticate(self, certificate_der: bytes) -> ExternalIdentity | None:
        """The mapped identity, or None for an unmapped or untrusted certificate."""
        cert = parse_certificate(certificate_der)
        await self._reload_if_changed()
        if not self._trusted(cert):
            return None
        for name in certificate_names(cert):
            entry = self.mapping.get(name)
            if entry is not None:
                return ExternalIdentity(
                    subject=f"tls:{name}",
                    username=entry.username,
                    display_name=entry.display_name,
                    email=entry.email,
                    groups=entry.groups,
                    bot=entry.bot,
                    username_from=f"the certificate mapping's entry {name!r}",
                    username_names_user=True,
                )
        return None


async def _read_ca_bundle(path: Path) -> list[x509.Certificate]:
    """The CA certificates of the PEM bundle ``path`` (one or more).

    Raises:
        ValueError: it cannot be read, or holds no certificate, or one that does not parse.
    """
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise ValueError(f"tls ca_file {path}: {exc.strerror or exc}") from exc
    try:
        return ca_bundle_content(data)
    except ValueError as exc:
        raise ValueError(f"tls ca_file {path}: {exc}") from exc


def _directly_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s key signed ``cert`` (its issuer name is ``ca``'s subject)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _file_state(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of ``path``, None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)
