"""Who is calling: the identity behind a connection's client certificate.

The TLS handshake has already verified the certificate against the client CA
(an unverified peer never reaches a handler); what is left is asking the
Authenticator whom the certificate's subject maps to. That answer is cached
per *connection*, not per call: a bot making a thousand calls on one
connection costs one ``AuthenticateCertificate`` (and one ``Authorize``). The
cache is keyed weakly on the connection object, so it is dropped with the
connection, and the entry expires after ``identity_ttl_seconds`` so that a
disabled user or a removed mapping stops working on a long-lived connection.

A change of the user is not left to that TTL: the users' change feed the API
follows anyway (:class:`bugless_api._users.UserDirectory`) names every user
disabled, renamed or given other groups, and their connections' entries are
dropped then (:meth:`IdentityResolver.forget_users`), so the next call asks
the Authenticator again and a disabled bot is told so within about a poll of
the feed, as a person's web session is. A Model call refused because the
assertion's session has ended (the Model can learn of it first) drops the
connection's entry too (:meth:`IdentityResolver.forget_connection`): the
gateway asks again at once. A certificate still mapped gets a new session,
and the refused Model call is sent again with its assertion (the Model
refused it before running it), so the bot sees nothing of it
(:meth:`bugless_api._gateway.Gateway.renewed_assertion`); one that is not
hears why (disabled, no longer mapped), not the Model's "sign in again".
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from bugless_core.clients import call
from bugless_core.errors import PermissionDenied, Unauthenticated
from bugless_core.grpc import PeerConnection, current_peer
from bugless_proto import v1

_log = logging.getLogger("bugless.api")

#: A connection's identity is asked for again this long before its assertion expires.
ASSERTION_MARGIN = 30.0
#: Refusals whose reason the certificate's holder is told: facts of their own certificate
#: (expired or not yet valid, revoked, signed by a CA bugless does not trust for it, a people
#: certificate the people CA has no record of) or of the account it names (disabled, gone),
#: none of which depends on what the mapping holds. The rest (not mapped; mapped to a username
#: that cannot be used or that another backend's user holds) would tell a caller which names
#: the mapping holds and what it maps them to, so they hear "not mapped" and the API's log
#: has the Authenticator's reason.
_SAY_WHY = frozenset(
    {
        "CERTIFICATE_EXPIRED",
        "CERTIFICATE_REVOKED",
        "CERTIFICATE_UNTRUSTED",
        "CERTIFICATE_UNKNOWN",
        "USER_DISABLED",
        "USER_UNKNOWN",
    }
)
#: Global permission that makes the caller an admin everywhere in the Model.
ADMIN_PERMISSION = "admin"


@dataclass(frozen=True)
class CallerIdentity:
    """The authenticated caller of one connection.

    Attributes:
        identity: What the Authenticator returned for the certificate.
        caller: The Model ``Caller`` built from it (user id, groups, admin).
        subject: The certificate subject, for logs and messages.
    """

    identity: v1.Identity
    caller: v1.Caller
    subject: str

    @property
    def user_id(self) -> str:
        """The opaque user id (the rate limit and cache key)."""
        return self.caller.user_id

    @property
    def username(self) -> str:
        """The caller's username as the Authenticator knows it now."""
        return self.identity.user.username if self.identity.user else ""

    def has_permission(self, permission: str) -> bool:
        """Whether the identity carries a global ``permission`` (admins carry all)."""
        return self.caller.admin or permission in self.identity.permissions


_CURRENT: ContextVar[CallerIdentity | None] = ContextVar("bugless_api_identity", default=None)


def current_identity() -> CallerIdentity:
    """The identity of the call being handled.

    Raises:
        Unauthenticated: Outside an authenticated call (fails closed).
    """
    identity = _CURRENT.get()
    if identity is None:
        raise Unauthenticated("this call is not authenticated")
    return identity


def set_current_identity(identity: CallerIdentity) -> None:
    """Make ``identity`` the caller of the running call (its task's context)."""
    _CURRENT.set(identity)


def describe_subject(fields: Mapping[str, object] | None) -> str:
    """``CN=bot,O=Example`` from ``ssl.getpeercert()``'s subject, for messages."""
    if not fields:
        return "(unknown subject)"
    subject = fields.get("subject")
    names = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "localityName": "L",
        "stateOrProvinceName": "ST",
        "emailAddress": "emailAddress",
    }
    parts: list[str] = []
    if isinstance(subject, tuple):
        for rdn in subject:
            for attribute in rdn:
                if isinstance(attribute, tuple) and len(attribute) == 2:
                    key, value = attribute
                    parts.append(f"{names.get(str(key), str(key))}={value}")
    return ",".join(parts) or "(empty subject)"


@dataclass
class _Entry:
    identity: CallerIdentity
    expires: float


class IdentityResolver:
    """Turns the current connection's certificate into a :class:`CallerIdentity`.

    Concurrent first calls on one connection share one look-up; failures are
    not cached (a mapping added a moment later works on the next call).

    Attributes:
        lookups: How many times the Authenticator was asked (for metrics and
            tests: it grows per connection, not per call).
    """

    def __init__(
        self,
        auth: v1.AuthenticatorStub,
        *,
        ttl_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Resolve through ``auth``; reuse answers for ``ttl_seconds``."""
        self._auth = auth
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._cache: weakref.WeakKeyDictionary[PeerConnection, _Entry] = weakref.WeakKeyDictionary()
        self.lookups = 0
        self._pending: weakref.WeakKeyDictionary[
            PeerConnection, asyncio.Future[tuple[CallerIdentity, int]]
        ] = weakref.WeakKeyDictionary()
        #: Grows with every :meth:`forget_users`: a look-up that began before
        #: one may hold what it dropped, and is used once, not kept.
        self._forgets = 0

    def forget_users(self, user_ids: Collection[str] | None) -> None:
        """Drop the identities of connections whose user is in ``user_ids`` (None: all).

        The users' change feed calls it with the users it names; their
        connections' next call asks the Authenticator again. A look-up under
        way now is not kept either (it may have been answered before the change).
        """
        self._forgets += 1
        if user_ids is None:
            self._cache.clear()
            return
        changed = set(user_ids)
        for connection, entry in list(self._cache.items()):
            if entry.identity.user_id in changed:
                self._cache.pop(connection, None)

    def forget_connection(self, assertion: str | None = None) -> None:
        """Drop the current call's connection's identity: its next look-up asks again.

        With ``assertion`` (the one a service refused), only while the
        connection's identity still carries it: of several calls refused at
        once, the first renews the identity and the others use its answer.
        """
        connection = current_peer()
        if connection is None:
            return
        entry = self._cache.get(connection)
        if entry is not None and (
            assertion is None or entry.identity.identity.assertion == assertion
        ):
            self._cache.pop(connection, None)

    def cached(self) -> CallerIdentity | None:
        """The identity of the current call's connection if known and unexpired, else None.

        Every call but a connection's first (and the first after its entry
        expires) is answered here without awaiting anything: :meth:`identify`
        is a coroutine, and making and running one per call is work the
        cached answer does not need (bench/JOURNAL.md, "Session 21").
        """
        connection = current_peer()
        if connection is None:
            return None
        entry = self._cache.get(connection)
        if entry is not None and entry.expires > self._clock():
            return entry.identity
        return None

    async def identify(self) -> CallerIdentity:
        """The identity of the current call's connection.

        Raises:
            Unauthenticated: No verified certificate (cannot happen behind a
                mutual-TLS listener, but fails closed), or its subject maps to
                no bugless user.
            Unavailable: The Authenticator cannot be reached.
        """
        connection = current_peer()
        if connection is None or connection.certificate is None:
            raise Unauthenticated("a TLS client certificate is required")
        entry = self._cache.get(connection)
        if entry is not None and entry.expires > self._clock():
            return entry.identity
        pending = self._pending.get(connection)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(connection))
            self._pending[connection] = pending
            pending.add_done_callback(lambda _: self._pending.pop(connection, None))
        identity, forgets = await asyncio.shield(pending)
        if forgets != self._forgets:  # the feed named someone meanwhile: maybe this user
            return identity
        keep = self._ttl
        expires_at = identity.identity.assertion_expires_at
        if expires_at is not None:
            # Ask again before the assertion the Model needs runs out.
            keep = max(0.0, min(keep, expires_at.timestamp() - time.time() - ASSERTION_MARGIN))
        self._cache[connection] = _Entry(identity, self._clock() + keep)
        return identity

    async def _look_up(self, connection: PeerConnection) -> tuple[CallerIdentity, int]:
        """The identity, and how many times users were forgotten when the look-up began."""
        forgets = self._forgets
        return await self._authenticate(connection), forgets

    async def _authenticate(self, connection: PeerConnection) -> CallerIdentity:
        assert connection.certificate is not None
        self.lookups += 1
        subject = describe_subject(connection.certificate_fields)
        try:
            result = await call(
                self._auth.authenticate_certificate,
                v1.AuthenticateCertificateRequest(certificate_der=connection.certificate),
                timeout=self._timeout,
            )
        except Unauthenticated as exc:
            _log.info(
                "certificate %s refused: %s",
                subject,
                exc.message,
                extra={"subject": subject, "connection_id": connection.id},
            )
            if exc.reason in _SAY_WHY:  # their own certificate's or account's fault: the fix
                raise Unauthenticated(exc.message, reason=exc.reason) from exc
            raise Unauthenticated(
                f"certificate subject {subject} is not mapped to a bugless user",
                reason="CERTIFICATE_NOT_MAPPED",
            ) from exc
        identity = result.identity
        if identity is None or identity.user is None or not identity.user.user_id:
            raise Unauthenticated(
                f"certificate subject {subject} is not mapped to a bugless user",
                reason="CERTIFICATE_NOT_MAPPED",
            )
        if identity.user.disabled:
            raise Unauthenticated(
                f"the bugless user of certificate subject {subject} is disabled",
                reason="USER_DISABLED",
            )
        admin = ADMIN_PERMISSION in identity.permissions
        if not admin:
            admin = await self._authorized(identity, ADMIN_PERMISSION)
        caller = v1.Caller(user_id=identity.user.user_id, groups=list(identity.groups), admin=admin)
        _log.info(
            "certificate %s is %s",
            subject,
            identity.user.username,
            extra={
                "subject": subject,
                "username": identity.user.username,
                "connection_id": connection.id,
                "admin": admin,
            },
        )
        return CallerIdentity(identity=identity, caller=caller, subject=subject)

    async def _authorized(self, identity: v1.Identity, permission: str) -> bool:
        assert identity.user is not None
        reply = await call(
            self._auth.authorize,
            v1.AuthorizeRequest(
                user_id=identity.user.user_id,
                groups=list(identity.groups),
                permission=permission,
            ),
            timeout=self._timeout,
        )
        return reply.allowed

    async def require_permission(self, identity: CallerIdentity, permission: str) -> None:
        """Check a global permission with the Authenticator (admins have all).

        Raises:
            PermissionDenied: The policy does not grant it.
        """
        if identity.has_permission(permission):
            return
        if not await self._authorized(identity.identity, permission):
            raise PermissionDenied(
                f"the {permission} permission is needed; ask an administrator "
                f"(user {identity.username})"
            )
