"""People's client certificates: issuance, listing, revocation, device logins.

The crypto is :mod:`bugless_auth.people_ca`; this module is the bookkeeping
around it, in the Authenticator's database so every replica sees the same:

* every signed certificate is a row (the audit trail, the person's list, and
  the revocation list checked whenever the certificate is mapped to its
  person — which the API does on each new connection, with a short cache);
* issuance is limited per person per hour (counted from those rows);
* a device login (``bugless login``) is a row the CLI polls by a secret
  device code (only its hash is stored) and the person approves by the
  short user code while signed in to the web UI.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from bugless_auth.people_ca import (
    IssuedCertificate,
    PeopleCa,
    check_csr_key,
    issued_by,
    load_ca_certificate,
    normalise_serial,
    parse_csr,
    person_of,
)
from bugless_auth.sessions import end_certificate_sessions
from bugless_auth.settings import PeopleCaSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.tls import validity_problem
from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from bugless_proto import v1

_log = logging.getLogger("bugless.auth.people")
#: What a revoked people certificate is told (its owner's own: `bugless login` is the fix).
CERTIFICATE_REVOKED_MESSAGE = "this certificate has been revoked; run `bugless login` again"

#: Letters a person reads off one screen and types into another: no vowels
#: (no words), no 0/O, 1/I look-alikes.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
#: Seconds a polling CLI waits between polls.
POLL_INTERVAL_SECONDS = 2
#: Longest label.
MAX_LABEL = 100
#: Pending device logins at once (a flood of starts cannot fill the table).
MAX_PENDING_DEVICE_LOGINS = 10_000
#: Pending device logins started from one client address. Starting one needs
#: no account, so without this one address could fill the table
#: (:data:`MAX_PENDING_DEVICE_LOGINS`) and refuse ``bugless login`` to
#: everybody for as long as it kept starting them; a person runs one at a time.
MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS = 10
#: Rows of expired certificates and device logins are kept this long.
KEEP_EXPIRED = datetime.timedelta(days=30)

_COLUMNS = (
    "serial, user_id, fingerprint, label, source, issued_at, not_after, revoked_at, revoked_by"
)


def _hash(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


def _user_code() -> str:
    letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"


def normalise_user_code(text: str) -> str:
    """What a person typed as a user code, in its stored form (``ABCD-EFGH``)."""
    letters = "".join(c for c in text.upper() if c.isalpha())
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else ""


def _label(label: str) -> str:
    """``label`` as stored: spaces made one; control and format characters refused, named.

    Labels reach terminals and logs: ESC, CR or BEL would rewrite what an
    operator reads there, U+202E reorder it.
    """
    bad = next(
        (ch for ch in label if not ch.isprintable() and unicodedata.category(ch) != "Zs"), None
    )
    if bad is not None:
        kind = "a control character" if unicodedata.category(bad) == "Cc" else "not printable"
        name = unicodedata.name(bad, kind)
        shown = label if len(label) <= MAX_LABEL else label[:MAX_LABEL] + "..."
        raise InvalidArgument(
            f"label: {shown!r} contains U+{ord(bad):04X} ({name}); "
            "a label is printable text on one line"
        )
    label = " ".join(label.split())
    if len(label) > MAX_LABEL:
        raise InvalidArgument(f"label: at most {MAX_LABEL} characters")
    return label


def certificate_message(row: Any, username: str = "", pem: str = "") -> v1.PersonCertificate:
    """A ``people_certificates`` row as the wire message."""
    return v1.PersonCertificate(
        serial=row["serial"],
        user_id=row["user_id"],
        username=username,
        label=row["label"],
        source=row["source"],
        issued_at=row["issued_at"],
        not_after=row["not_after"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        fingerprint=row["fingerprint"],
        certificate_pem=pem,
    )


@dataclass(frozen=True)
class PersonFromCertificate:
    """Who a people certificate names, once checked live.

    Attributes:
        user_id: The person's opaque id.
        serial: The certificate's serial (hex).
    """

    user_id: str
    serial: str


class PeopleCertificates:
    """The people CA's bookkeeping on the Authenticator's database."""

    def __init__(self, store: IdentityStore, settings: PeopleCaSettings) -> None:
        """Load the CA when configured; without it every call is FAILED_PRECONDITION.

        Raises:
            ValueError: a CA file is unreadable or no CA, or an earlier CA
                (``previous_cert_files``) is the current one.
        """
        self.settings = settings
        self._store = store
        self.ca: PeopleCa | None = None
        #: Certificates of the CAs the current one replaced: what they signed
        #: is still accepted (:meth:`person`), and they sign nothing.
        self.previous: tuple[x509.Certificate, ...] = ()
        if settings.cert_file is None or settings.key_file is None:
            return
        self.ca = PeopleCa.load(
            settings.cert_file, settings.key_file, max_seconds=settings.max_seconds
        )
        self.previous = tuple(load_ca_certificate(p) for p in settings.previous_cert_files)
        for path, certificate in zip(settings.previous_cert_files, self.previous, strict=True):
            if certificate == self.ca.certificate:
                raise ValueError(
                    f"--people-ca-previous-cert {path} is the current people CA "
                    f"(--people-ca-cert {settings.cert_file}); name the certificate of the CA "
                    "it replaced"
                )
            _log.info(
                "people certificates signed by the earlier people CA %s are accepted until %s "
                "is removed from --people-ca-previous-cert",
                certificate.subject.rfc4514_string(),
                path,
            )

    def _require_ca(self) -> PeopleCa:
        if self.ca is None:
            raise FailedPrecondition(
                "this Authenticator has no people CA (--people-ca-cert/--people-ca-key): "
                "ask an operator for a client certificate"
            )
        return self.ca

    def _seconds(self, asked: float) -> float:
        # NaN passed every comparison here and failed signing (a 500 at the
        # web's forms, where "nan" reads as a number); infinity is capped.
        if math.isnan(asked) or asked < 0:
            raise InvalidArgument(
                f"validity_seconds: {asked} is not a number of seconds from 0 (0: the default)"
            )
        return min(asked or self.settings.default_seconds, self.settings.max_seconds)

    async def issue(
        self, person: UserRecord, csr_pem: str, *, seconds: float, label: str, source: str
    ) -> v1.PersonCertificate:
        """Sign ``csr_pem`` for ``person`` and record it.

        Raises:
            FailedPrecondition: no people CA.
            InvalidArgument: a bad CSR or label.
            ResourceExhausted: the person's hourly limit is used up.
        """
        ca = self._require_ca()
        label = _label(label)
        limit = self.settings.issue_per_hour
        recent = await self._store.run(
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM people_certificates "
                "WHERE user_id = $1 AND issued_at > now() - INTERVAL '1 hour'",
                person.user_id,
            ),
            transaction=False,
        )
        if recent >= limit:
            raise ResourceExhausted(
                f"at most {limit} certificates per person per hour; try again later",
                retry_after=600.0,
            )
        issued = ca.sign(
            csr_pem,
            user_id=person.user_id,
            username=person.username,
            seconds=self._seconds(seconds),
        )
        row = await self._store.run(lambda conn: self._insert(conn, person, issued, label, source))
        if row is None:  # disabled since ``person`` was read: the signed certificate is unknown
            raise PermissionDenied(
                f"{person.username} is disabled: no certificate is issued",
                reason="USER_DISABLED",
            )
        _log.info(
            "people CA signed certificate %s for %s (%s, %s, until %s)",
            issued.serial,
            person.username,
            source,
            label or "no label",
            issued.not_after.isoformat(),
            extra={
                "audit": "person_certificate_issued",
                "user_id": person.user_id,
                "serial": issued.serial,
                "source": source,
                "not_after": issued.not_after.isoformat(),
            },
        )
        return certificate_message(row, person.username, issued.pem)

    @staticmethod
    async def _insert(
        conn: Any, person: UserRecord, issued: IssuedCertificate, label: str, source: str
    ) -> Any:
        """Record the certificate, if its person is still enabled (else no row, None).

        ``person`` was read before: the check is made again on the user's
        row, locked against a concurrent disable as a session's insert does
        (:data:`bugless_auth._session_queries.INSERT`), so a disable either waits
        for this and then revokes the certificate, or is seen here. Only a
        recorded certificate is accepted (:meth:`person`).
        """
        return await conn.fetchrow(
            f"INSERT INTO people_certificates (serial, user_id, fingerprint, label, source, "
            f"not_after) SELECT $1, user_id, $3, $4, $5, $6 FROM users "
            f"WHERE user_id = $2 AND NOT disabled AND NOT placeholder FOR SHARE "
            f"RETURNING {_COLUMNS}",
            issued.serial,
            person.user_id,
            issued.fingerprint,
            label,
            source,
            issued.not_after,
        )

    async def list(self, user_id: str, *, include_inactive: bool) -> list[Any]:
        """A person's certificates, newest first (live ones only unless asked)."""
        live = "" if include_inactive else " AND revoked_at IS NULL AND not_after > now()"
        rows: list[Any] = await self._store.run(
            lambda conn: conn.fetch(
                f"SELECT {_COLUMNS} FROM people_certificates WHERE user_id = $1{live} "
                "ORDER BY issued_at DESC LIMIT 500",
                user_id,
            ),
            transaction=False,
        )
        return rows

    async def get(self, serial: str) -> Any:
        """One certificate's row.

        Raises:
            NotFound: no certificate has that serial.
        """
        serial = normalise_serial(serial)
        row = await self._store.run(
            lambda conn: conn.fetchrow(
                f"SELECT {_COLUMNS} FROM people_certificates WHERE serial = $1", serial
            ),
            transaction=False,
        )
        if row is None:
            raise NotFound(f"serial: no certificate {serial!r} was issued by the people CA")
        return row

    async def revoke(self, serial: str, *, by: str, reason: str) -> Any:
        """Revoke one certificate (idempotent); its row after."""
        row = await self.get(serial)

        async def work(conn: Any) -> Any:
            updated = await conn.fetchrow(
                "UPDATE people_certificates SET revoked_at = coalesce(revoked_at, now()), "
                "revoked_by = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoked_by END, "
                "revoked_reason = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_reason END "
                f"WHERE serial = $1 RETURNING {_COLUMNS}",
                row["serial"],
                by,
                reason,
            )
            # Its open connections lose their access too, not only new ones.
            await end_certificate_sessions(
                conn, row["user_id"], row["fingerprint"], f"certificate {row['serial']} revoked"
            )
            return updated

        updated = await self._store.run(work)
        _log.info(
            "people certificate %s revoked by %s (%s)",
            row["serial"],
            by,
            reason,
            extra={"audit": "person_certificate_revoked", "serial": row["serial"], "by": by},
        )
        return updated

    async def revoke_user(self, user_id: str, *, by: str, reason: str) -> int:
        """Revoke every live certificate of a person; how many."""
        return await self._store.run(
            lambda conn: revoke_user_certificates(conn, user_id, by=by, reason=reason)
        )

    async def person(self, cert: x509.Certificate) -> PersonFromCertificate | None:
        """The person a certificate of this CA names, when it is live; None if not ours.

        Raises:
            Unauthenticated: ours, but expired, revoked, unknown or malformed.
        """
        user_id = person_of(cert)
        if user_id is None or not self._ours(cert):
            # Not a person's certificate (no bugless:user: name): a bot's or a
            # service's, even from the same CA, goes to the tls mapping.
            return None
        if validity_problem(cert) is not None:
            raise Unauthenticated(
                "this people certificate has expired; run `bugless login` again",
                reason="CERTIFICATE_EXPIRED",
            )
        serial = format(cert.serial_number, "x")
        row = await self._store.run(
            lambda conn: conn.fetchrow(
                "SELECT user_id, revoked_at FROM people_certificates WHERE serial = $1", serial
            ),
            transaction=False,
        )
        if row is None or row["user_id"] != user_id:
            raise Unauthenticated(
                "this certificate is not in the people CA's records "
                "(this Authenticator did not issue it)",
                reason="CERTIFICATE_UNKNOWN",
            )
        if row["revoked_at"] is not None:
            raise Unauthenticated(CERTIFICATE_REVOKED_MESSAGE, reason="CERTIFICATE_REVOKED")
        return PersonFromCertificate(user_id=user_id, serial=serial)

    def _ours(self, cert: x509.Certificate) -> bool:
        """Whether the people CA, or one it replaced, signed ``cert``."""
        if self.ca is None:
            return False
        return self.ca.issued(cert) or any(issued_by(cert, ca) for ca in self.previous)

    # ---- device logins ----

    async def start_device_login(
        self, csr_pem: str, *, label: str, client_address: str, seconds: float
    ) -> v1.StartDeviceLoginResponse:
        """Record a device login; the CLI's device code and the person's user code.

        The CSR is checked now for what does not depend on the person (format,
        signature, key), and fully at approval.
        """
        self._require_ca()
        check_csr_key(parse_csr(csr_pem))
        label = _label(label)
        self._seconds(seconds)
        device_code = secrets.token_urlsafe(32)
        lifetime = self.settings.device_login_seconds
        address = client_address[:200]

        async def work(conn: Any) -> str:
            await conn.execute(
                "DELETE FROM device_logins WHERE expires_at < now() - $1::interval", KEEP_EXPIRED
            )
            if address:
                mine = await conn.fetchrow(
                    "SELECT count(*) AS pending, "
                    "extract(epoch FROM min(expires_at) - now())::float8 AS first_ends "
                    "FROM device_logins "
                    "WHERE client_address = $1 AND expires_at > now() AND NOT delivered",
                    address,
                )
                if mine["pending"] >= MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS:
                    raise ResourceExhausted(
                        f"{MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS} device logins from this "
                        "address are waiting for approval already; approve or deny them, "
                        "or wait until one expires",
                        retry_after=max(1.0, float(mine["first_ends"] or 1.0)),
                    )
            pending = await conn.fetchval(
                "SELECT count(*) FROM device_logins WHERE expires_at > now() AND NOT delivered"
            )
            if pending >= MAX_PENDING_DEVICE_LOGINS:
                raise ResourceExhausted(
                    "too many device logins are waiting; try again later", retry_after=30.0
                )
            while True:
                code = _user_code()
                inserted = await conn.fetchval(
                    "INSERT INTO device_logins (device_code_hash, user_code, csr_pem, label, "
                    "validity_seconds, client_address, expires_at) VALUES ($1, $2, $3, $4, $5, "
                    "$6, now() + $7::float8 * INTERVAL '1 second') "
                    "ON CONFLICT (user_code) DO NOTHING RETURNING user_code",
                    _hash(device_code),
                    code,
                    csr_pem,
                    label,
                    seconds,
                    address,
                    lifetime,
                )
                if inserted is not None:
                    return str(inserted)

        user_code = await self._store.run(work)
        return v1.StartDeviceLoginResponse(
            device_code=device_code,
            user_code=user_code,
            expires_in_seconds=int(lifetime),
            interval_seconds=POLL_INTERVAL_SECONDS,
        )

    async def _device_row(self, user_code: str) -> Any:
        code = normalise_user_code(user_code)
        row = (
            await self._store.run(
                lambda conn: conn.fetchrow(
                    "SELECT *, expires_at < now() AS expired FROM device_logins "
                    "WHERE user_code = $1",
                    code,
                ),
                transaction=False,
            )
            if code
            else None
        )
        if row is None:
            raise NotFound("user_code: no such device login; check the code `bugless login` shows")
        return row

    @staticmethod
    def _device_message(row: Any) -> v1.DeviceLogin:
        return v1.DeviceLogin(
            user_code=row["user_code"],
            label=row["label"],
            client_address=row["client_address"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            state=_state(row),
        )

    async def get_device_login(self, user_code: str) -> v1.DeviceLogin:
        """A device login as the approving person sees it."""
        return self._device_message(await self._device_row(user_code))

    async def decide_device_login(
        self, person: UserRecord, user_code: str, *, deny: bool
    ) -> v1.DeviceLogin:
        """Approve (sign the CSR for ``person``) or deny a pending device login.

        Raises:
            FailedPrecondition: not pending any more (expired, decided).
            InvalidArgument: the CSR asks for another person's name.
        """
        row = await self._device_row(user_code)
        if _state(row) != v1.DeviceLoginState.PENDING:
            raise FailedPrecondition(
                f"this device login is {_state(row).name.lower()}; run `bugless login` again"
            )
        certificate_pem = None
        if not deny:
            issued = await self.issue(
                person,
                row["csr_pem"],
                seconds=float(row["validity_seconds"]),
                label=row["label"],
                source="device",
            )
            certificate_pem = issued.certificate_pem
        updated = await self._store.run(
            lambda conn: conn.fetchrow(
                "UPDATE device_logins SET approved_by = $2, denied = $3, certificate_pem = $4 "
                "WHERE user_code = $1 AND approved_by IS NULL AND NOT denied "
                "RETURNING *, expires_at < now() AS expired",
                row["user_code"],
                person.user_id,
                deny,
                certificate_pem,
            )
        )
        if updated is None:
            raise FailedPrecondition("this device login was decided meanwhile")
        return self._device_message(updated)

    async def poll_device_login(
        self, device_code: str, username_of: Callable[[str], Awaitable[str]]
    ) -> v1.PollDeviceLoginResponse:
        """What a polling CLI gets: the state, and the certificate exactly once."""
        if not device_code:
            raise InvalidArgument("device_code: required")

        code_hash = _hash(device_code)

        async def work(conn: Any) -> tuple[Any, bool]:
            row = await conn.fetchrow(
                "SELECT *, expires_at < now() AS expired FROM device_logins "
                "WHERE device_code_hash = $1 FOR UPDATE",
                code_hash,
            )
            if row is None:
                return None, False
            if row["certificate_pem"] is not None and not row["delivered"]:
                await conn.execute(
                    "UPDATE device_logins SET delivered = true WHERE device_code_hash = $1",
                    code_hash,
                )
            return row, bool(row["delivered"])

        row, was_delivered = await self._store.run(work)
        if row is None:
            raise NotFound("device_code: no such device login")
        if was_delivered:
            return v1.PollDeviceLoginResponse(state=v1.DeviceLoginState.DELIVERED)
        state = _state(row, delivered=False)
        if state == v1.DeviceLoginState.APPROVED:
            return v1.PollDeviceLoginResponse(
                state=state,
                certificate_pem=row["certificate_pem"],
                username=await username_of(row["approved_by"]),
            )
        return v1.PollDeviceLoginResponse(state=state)


def _state(row: Any, *, delivered: bool | None = None) -> v1.DeviceLoginState:
    done = row["delivered"] if delivered is None else delivered
    if row["denied"]:
        return v1.DeviceLoginState.DENIED
    if row["certificate_pem"] is not None:
        return v1.DeviceLoginState.DELIVERED if done else v1.DeviceLoginState.APPROVED
    if row["expired"]:
        return v1.DeviceLoginState.EXPIRED
    return v1.DeviceLoginState.PENDING


def check_owner(caller_user_id: str, row: Any, *, may_manage: bool) -> None:
    """Refuse acting on someone else's certificate without manage_users.

    Raises:
        NotFound: another person's certificate (its existence is not revealed).
    """
    if row["user_id"] != caller_user_id and not may_manage:
        raise NotFound(f"serial: no certificate {row['serial']!r} of yours")


async def revoke_user_certificates(conn: Any, user_id: str, *, by: str, reason: str) -> int:
    """Revoke every live certificate of a person on ``conn`` (in its transaction); how many.

    A disable runs this in its own transaction (:mod:`bugless_auth.disabling`):
    a certificate left live by a disable that died half-way would sign the
    person in again once they were re-enabled.
    """
    status: str = await conn.execute(
        "UPDATE people_certificates SET revoked_at = now(), revoked_by = $2, "
        "revoked_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL "
        "AND not_after > now()",
        user_id,
        by,
        reason,
    )
    return int(status.rsplit(" ", 1)[-1])
