"""The Authenticator's behaviour, independent of the wire.

:class:`AuthService` owns the enabled backends and everything around them:
mapping external subjects to user ids (the store), session tokens, the login
throttle, cached look-ups and the policy. The gRPC servicer only converts
messages and checks their shape; anything a second transport would need to
repeat lives here. Its user-management calls (local accounts, disabling,
ending sessions, imported people) are a mixin in :mod:`bugless_auth.user_admin`,
its look-ups (users by id, name or prefix, the users' change feed) one in
:mod:`bugless_auth.user_lookups`.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth._cache import TtlCache
from bugless_auth.assertions import AssertionIssuer
from bugless_auth.directory import CachedUser, UserDirectory
from bugless_auth.group_loss import GroupLoss
from bugless_auth.mapped_sessions import MappedSessions
from bugless_auth.passwords import PasswordHashes
from bugless_auth.people import CERTIFICATE_REVOKED_MESSAGE, PeopleCertificates
from bugless_auth.policy import Decision, Policy
from bugless_auth.resync import DirectoryResync
from bugless_auth.sessions import (
    CERTIFICATE_REVOKED,
    PEOPLE_CA,
    SERVICE,
    NotRecorded,
    SeenCertificate,
    SessionStore,
)
from bugless_auth.settings import AuthSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.throttle import LoginThrottle
from bugless_auth.tls import parse_certificate
from bugless_auth.tokens import SessionClaims, TokenAuthority, load_key
from bugless_auth.user_admin import UserAdministration
from bugless_auth.user_feed import UserFeedFollower
from bugless_auth.user_lookups import UserLookups
from bugless_core.auth_backend import (
    AuthenticatorBackend,
    CertificateAuthenticator,
    ExternalIdentity,
    OidcAuthenticator,
    PasswordAuthenticator,
)
from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from bugless_core.outage import OutageLog
from bugless_core.plugins import Plugins
from bugless_proto import v1

_log = logging.getLogger("bugless.auth")

#: The one message for an unknown user and a wrong password (no enumeration).
WRONG_CREDENTIALS = "wrong username or password"
DISABLED = "this account is disabled; ask a bugless administrator"
SESSION_ENDED = "this session has ended (signed out, or ended by an administrator): sign in again"
_FLOW_KEYS = ("_authenticator", "_redirect_uri")


@dataclass(frozen=True)
class Authenticated:
    """A successful authentication: who, through which backend, and their token."""

    identity: v1.Identity
    token: str
    expires_at: float

    def to_message(self) -> v1.AuthenticationResult:
        """The wire form."""
        return v1.AuthenticationResult(
            identity=self.identity,
            token=self.token,
            expires_at=datetime.datetime.fromtimestamp(self.expires_at, datetime.UTC),
        )


class AuthService(UserAdministration, UserLookups):
    """Authentication, tokens, look-ups, authorisation and local user management."""

    def __init__(
        self,
        settings: AuthSettings,
        store: IdentityStore,
        backends: Sequence[AuthenticatorBackend],
        *,
        tokens: TokenAuthority,
        hashes: PasswordHashes,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """Assemble from open parts (see :meth:`open`); ``metrics_registry``: the service's."""
        self.settings = settings
        self.store = store
        self.backends = list(backends)
        #: A password backend's outage, logged once however many sign-ins meet it.
        self._sign_in_outages = {
            backend.name: OutageLog(
                f"{backend.name} authenticator",
                logger=_log,
                meanwhile="sign-ins it would answer fail as unavailable",
                loop=f"auth.sign_in:{backend.name}",
                unit="sign-ins",
            )
            for backend in self.backends
        }
        self.tokens = tokens
        self.hashes = hashes
        self.policy = Policy(settings.policy)
        self.throttle = LoginThrottle(settings.throttle, store)
        self.sessions = SessionStore(store)
        self.mapped_sessions = MappedSessions(store, backends, metrics_registry=metrics_registry)
        self.people = PeopleCertificates(store, settings.people_ca)
        self.directory = UserDirectory(
            store,
            ttl_seconds=settings.cache_ttl_seconds,
            max_entries=settings.cache_max_entries,
            backstop_seconds=settings.cache_backstop_seconds,
        )
        self.user_feed = UserFeedFollower(
            store,
            self.directory,
            poll_seconds=settings.user_changes_seconds,
            retention_seconds=settings.user_changes_retention_seconds,
            metrics_registry=metrics_registry,
        )
        self.assertions = AssertionIssuer(
            tokens.keys, issuer=settings.token_issuer, ttl_seconds=settings.assertion_ttl_seconds
        )
        self._valid_tokens: TtlCache[str, SessionClaims] = TtlCache(
            ttl_seconds=settings.cache_ttl_seconds, max_entries=settings.cache_max_entries
        )
        #: One directory re-sync per backend that has a directory (LDAP).
        self.resyncs = [
            DirectoryResync(
                backend,
                store,
                self.directory,
                matters=self._matters,
                interval=interval,
                metrics_registry=metrics_registry,
            )
            for backend in self.backends
            if (interval := backend.resync_seconds) is not None
        ]

    @classmethod
    async def open(
        cls,
        settings: AuthSettings,
        plugins: Plugins,
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> AuthService:
        """Connect the store, load the keys and open every enabled backend, in order.

        Raises:
            UnknownBackendError: an enabled name no installed plugin registered.
            ValueError: unusable keys, backend options or people CA files.
            FailedPrecondition, Unavailable: the database is not ready.
        """
        classes = [plugins.authenticators.get(name) for name in settings.authenticators]
        tokens = TokenAuthority(
            [load_key(path) for path in settings.token_keys],
            issuer=settings.token_issuer,
            ttl_seconds=settings.token_ttl_seconds,
        )
        hashes = PasswordHashes(settings.hashing)
        store = await IdentityStore.open(
            settings.database_url,
            settings.schema,
            pool_max_size=settings.pool_max_size,
            dialect=settings.database_dialect,
            metrics_registry=metrics_registry,
        )
        backends: list[AuthenticatorBackend] = []
        try:
            for backend_cls in classes:
                config: dict[str, Any] = {
                    **settings.authenticator_options.get(backend_cls.name, {}),
                    "identity_store": store,
                    "password_hashes": hashes,
                }
                backends.append(await backend_cls.open(config))
            # Construction reads the people CA's files: a refusal closes what opened.
            service = cls(
                settings,
                store,
                backends,
                tokens=tokens,
                hashes=hashes,
                metrics_registry=metrics_registry,
            )
        except BaseException:
            for backend in backends:
                await backend.close()
            await store.close()
            raise
        for resync in service.resyncs:
            resync.start()
        service.user_feed.start()
        service.mapped_sessions.start()
        return service

    async def close(self) -> None:
        """Stop the background loops (feed, re-syncs, mapping sweep), close backends, then store."""
        await self.user_feed.stop()
        await self.mapped_sessions.stop()
        for resync in self.resyncs:
            await resync.stop()
        for backend in self.backends:
            try:
                await backend.close()
            except Exception:
                _log.exception("closing the %s authenticator failed", backend.name)
        await self.store.close()

    # ---- authentication ----

    def list_authenticators(self) -> list[v1.AuthenticatorInfo]:
        """The enabled backends, in configured order."""
        return [
            v1.AuthenticatorInfo(name=b.name, kind=b.kind.value, display_name=b.display_name)
            for b in self.backends
        ]

    async def authenticate_password(
        self, username: str, password: str, client_address: str
    ) -> Authenticated:
        """Try the password backends in order; the first that knows the user wins.

        Raises:
            ResourceExhausted: too many recent failures for the user or address.
            Unauthenticated: :data:`WRONG_CREDENTIALS`, for unknown users too.
            Unavailable: no backend accepted and at least one could not be
                asked (so the failure is not reported as a wrong password).
        """
        backends = [b for b in self.backends if isinstance(b, PasswordAuthenticator)]
        if not backends:
            raise FailedPrecondition("no password authenticator is enabled on this server")
        await self.throttle.check(username, client_address)
        if not password:
            raise Unauthenticated(WRONG_CREDENTIALS)
        unavailable: Unavailable | None = None
        for backend in backends:
            try:
                found = await backend.authenticate(username, password)
            except Unavailable as exc:
                self._sign_in_outages[backend.name].failed(exc.message)
                unavailable = exc
                continue
            self._sign_in_outages[backend.name].recovered()
            if found is not None:
                await self.throttle.succeeded(username, client_address)
                return await self._signed_in(found, backend.name, client_address)
        if unavailable is not None:
            raise unavailable
        await self.throttle.failed(username, client_address)
        raise Unauthenticated(WRONG_CREDENTIALS)

    async def authenticate_certificate(self, certificate_der: bytes) -> Authenticated:
        """Ask the certificate backends in order.

        Raises:
            InvalidArgument: not a DER certificate.
            Unauthenticated: no backend maps the certificate's subject.
        """
        backends = [b for b in self.backends if isinstance(b, CertificateAuthenticator)]
        if not backends and self.people.ca is None:
            raise FailedPrecondition("no certificate authenticator is enabled on this server")
        cert = parse_certificate(certificate_der)
        # Its connections share a session (.sessions), ended with it or its mapping.
        seen = SeenCertificate(
            cert.fingerprint(hashes.SHA256()).hex(), cert.not_valid_after_utc.timestamp()
        )
        await self.mapped_sessions.end_unmapped()  # a removed entry's sessions first
        person = await self.people.person(cert)
        if person is not None:  # signed by the people CA: named by user id, no mapping
            record = await self.record_of(person.user_id)
            return await self._session(record, PEOPLE_CA, certificate=seen)
        for backend in backends:
            found = await backend.authenticate(certificate_der)
            if found is not None:
                return await self._signed_in(found, backend.name, certificate=seen)
        raise Unauthenticated(
            f"certificate subject {cert.subject.rfc4514_string()} is not mapped to a bugless user",
            reason="CERTIFICATE_NOT_MAPPED",
        )

    def _oidc_backend(self, name: str) -> OidcAuthenticator:
        candidates = [b for b in self.backends if isinstance(b, OidcAuthenticator)]
        if name:
            candidates = [b for b in candidates if b.name == name]
        if len(candidates) != 1:
            enabled = ", ".join(b.name for b in self.backends if isinstance(b, OidcAuthenticator))
            raise InvalidArgument(
                f"authenticator: {name!r} does not name one enabled oidc authenticator "
                f"(enabled: {enabled or 'none'})"
            )
        return candidates[0]

    async def begin_oidc(self, authenticator: str, redirect_uri: str) -> tuple[str, str]:
        """Start a browser flow; return the authorization URL and sealed flow state."""
        backend = self._oidc_backend(authenticator)
        start = await backend.begin(redirect_uri)
        reserved = set(_FLOW_KEYS) & set(start.flow_data)
        if reserved:
            raise RuntimeError(f"{backend.name} flow data uses reserved keys {reserved}")
        sealed = self.tokens.seal_flow(
            {**start.flow_data, "_authenticator": backend.name, "_redirect_uri": redirect_uri}
        )
        return start.authorization_url, sealed

    async def complete_oidc(
        self,
        authenticator: str,
        flow_state: str,
        code: str,
        state: str,
        redirect_uri: str,
        *,
        client_address: str = "",
    ) -> Authenticated:
        """Finish a browser flow begun on any replica (the session records ``client_address``).

        Raises:
            Unauthenticated: the flow state is invalid, expired, for another
                backend or redirect URI, or the backend refuses the response.
        """
        data = self.tokens.open_flow(flow_state)
        backend = self._oidc_backend(authenticator or data.get("_authenticator", ""))
        if data.get("_authenticator") != backend.name or data.get("_redirect_uri") != redirect_uri:
            raise Unauthenticated("flow_state belongs to another sign-in; start again")
        flow_data = {k: v for k, v in data.items() if k not in _FLOW_KEYS}
        found = await backend.complete(flow_data, code, state, redirect_uri)
        return await self._signed_in(found, backend.name, client_address)

    async def _signed_in(
        self,
        found: ExternalIdentity,
        authenticator: str,
        client_address: str = "",
        *,
        certificate: SeenCertificate | None = None,
    ) -> Authenticated:
        # Fewer groups: it ends the sessions as the re-sync would have, which
        # after this refresh finds nothing lost (bugless_auth.group_loss).
        loss = GroupLoss(self._matters, f"(seen at a sign-in with {authenticator})")
        record, released = await self.store.resolve(found, authenticator, then=loss)
        loss.logged(record.user_id)
        for user_id in released:
            self.directory.forget(user_id)
        return await self._session(record, authenticator, client_address, certificate=certificate)

    def _matters(self, group: str) -> bool:
        """Whether losing ``group`` ends a user's sessions: the policy grants it a permission."""
        return bool(self.policy.rules.get(group))

    async def record_of(self, user_id: str) -> UserRecord:
        """The store's record of a user id (current name, groups, disabled).

        Raises:
            Unauthenticated: nobody has that id (any more).
        """
        found = await self.store.users_by_ids([user_id])
        if not found:
            raise Unauthenticated("this certificate names no bugless user", reason="USER_UNKNOWN")
        return found[0]

    async def _session(
        self,
        record: UserRecord,
        authenticator: str,
        client_address: str = "",
        *,
        certificate: SeenCertificate | None = None,
    ) -> Authenticated:
        """A session for a user the caller authenticated (refused when disabled).

        ``record`` was read before: the session's insert checks again, on the
        user's row (:meth:`SessionStore.record`), so a disable committed since
        is not outlived by a session recorded after it ended the user's.

        With ``certificate`` the session is that certificate's, shared by its
        connections (:meth:`SessionStore.for_certificate`): the token names it
        and expires with it, at the latest when the certificate does. A
        disable that ended the user's sessions leaves none to reuse.
        """
        cached = self.directory.remember(record)
        if record.placeholder:  # never mapped by a sign-in flow; refused all the same
            raise Unauthenticated(DISABLED, reason="USER_DISABLED")
        if record.disabled:
            raise Unauthenticated(DISABLED, reason="USER_DISABLED")
        if certificate is None:
            issued = self.tokens.issue(record.user_id, authenticator)
            refused = await self.sessions.record(
                issued.session_id,
                user_id=record.user_id,
                authenticator=authenticator,
                client_address=client_address,
                expires_at=issued.expires_at,
            )
            new = True
        else:
            found = await self.sessions.for_certificate(
                certificate,
                user_id=record.user_id,
                authenticator=authenticator,
                client_address=client_address,
                lifetime=self.tokens.ttl_seconds,
            )
            refused, new = (found, False) if isinstance(found, NotRecorded) else (None, found[2])
            if not isinstance(found, NotRecorded):
                issued = self.tokens.issue(record.user_id, authenticator, session=found[:2])
        if refused is not None:  # disabled (or gone, or revoked) since ``record`` was read
            if refused.reason == "USER_UNKNOWN":
                raise Unauthenticated("this user no longer exists", reason="USER_UNKNOWN")
            if refused is CERTIFICATE_REVOKED:
                raise Unauthenticated(CERTIFICATE_REVOKED_MESSAGE, reason="CERTIFICATE_REVOKED")
            raise Unauthenticated(DISABLED, reason="USER_DISABLED")
        if new:
            _log.info(
                "%s signed in with %s",
                record.user_id,
                authenticator,
                extra={"user_id": record.user_id, "authenticator": authenticator},
            )
        identity = self.assertions.with_assertion(
            self._identity(cached, authenticator), issued.session_id
        )
        return Authenticated(identity, issued.token, issued.expires_at)

    def _identity(self, cached: CachedUser, authenticator: str) -> v1.Identity:
        groups = list(cached.record.groups)
        return v1.Identity(
            user=cached.message,
            groups=groups,
            authenticator=authenticator,
            permissions=self.policy.permissions(groups),
        )

    # ---- tokens ----

    async def validate_token(self, token: str, *, with_assertion: bool = False) -> v1.Identity:
        """The identity a token stands for, as the store knows it now.

        With ``with_assertion`` it carries a fresh identity assertion for the
        token's session, for the frontend to forward to the Model.

        The signature check is cached; whether the token's session is still
        live is asked of the database every time (the revocation list every
        replica shares), so an ended session is refused at once.

        Raises:
            Unauthenticated: invalid or expired token, an ended session
                (reason ``SESSION_ENDED``), or a disabled or vanished user.
        """
        if not token:
            raise Unauthenticated("token: required; sign in to get one", reason="INVALID_TOKEN")
        claims = self._valid_tokens.get(token)
        if claims is None:
            claims = self.tokens.verify(token)
            self._valid_tokens.put(token, claims)
        elif claims.expires_at <= datetime.datetime.now(datetime.UTC).timestamp():
            self._valid_tokens.discard(token)
            claims = self.tokens.verify(token)  # raises "expired"
        if not await self.sessions.is_live(claims.token_id):
            raise Unauthenticated(SESSION_ENDED, reason="SESSION_ENDED")
        cached = await self.directory.get(claims.user_id)
        if cached is None:
            raise Unauthenticated("the token's user no longer exists", reason="INVALID_TOKEN")
        if cached.record.disabled:
            raise Unauthenticated(DISABLED, reason="USER_DISABLED")
        identity = self._identity(cached, claims.authenticator)
        if with_assertion:
            return self.assertions.with_assertion(identity, claims.token_id)
        return identity

    # ---- identity assertions ----

    async def issue_assertion(self, user_id: str, *, requested_by: str = "") -> v1.Identity:
        """An identity with an assertion for ``user_id``, for a service acting for them.

        For services acting for a user without that user's session (the
        notifier as a recipient, an import job); who may ask is the ACCESS
        table's business. The assertion gets a session of its own, recorded
        like a sign-in's (authenticator ``service``, the asking service as
        its client address) and as long-lived as the assertion: whatever
        ends all of the user's sessions — disabling them (by an admin, the
        CLI or a directory re-sync), "sign out everywhere", an admin ending
        their sessions — ends it too, and the Model refuses it within its
        ``--assertion-refresh-seconds``. A disabled user gets none. For a
        placeholder merged into an account (who answers as that account),
        the session is the account's: ending the account's ends it.

        Whether the user may have one is decided on their row in the
        database as the session is recorded, not on this replica's cached
        record, which may not have heard of a disable yet (a feed poll,
        1-2 s; up to ``cache_ttl_seconds`` if its follower stalls): a session
        recorded after the disable had ended the user's sessions would have
        outlived it, and the Model would have taken the assertion for its
        whole lifetime. The cache still answers for whom it already knows to
        be refused, without a query.

        Raises:
            NotFound: no such user.
            PermissionDenied: the user (a merged placeholder: its account) is
                disabled, or is a placeholder merged into no account; the
                message says which.
        """
        cached = await self.directory.get(user_id)
        if cached is None:
            raise NotFound(f"user_id: no user has the id {user_id!r}")
        if cached.record.disabled or cached.record.placeholder:
            what = "disabled" if cached.record.disabled else "a placeholder"
            raise PermissionDenied(
                f"user {user_id!r} is {what}: no assertion is issued",
                reason="USER_DISABLED" if cached.record.disabled else "USER_PLACEHOLDER",
            )
        session_id = secrets.token_urlsafe(18)
        identity = self.assertions.with_assertion(self._identity(cached, SERVICE), session_id)
        expires = identity.assertion_expires_at
        refused = await self.sessions.record(
            session_id,
            user_id=user_id,
            authenticator=SERVICE,
            client_address=requested_by,
            expires_at=expires.timestamp() if expires is not None else time.time(),
        )
        if refused is not None:
            if refused.reason == "USER_UNKNOWN":
                raise NotFound(f"user_id: no user has the id {user_id!r}")
            raise PermissionDenied(
                f"user {user_id!r} {refused.detail}: no assertion is issued",
                reason=refused.reason,
            )
        return identity

    async def verification_keys(self) -> v1.VerificationKeys:
        """The assertion keys and the sessions ended within an assertion's lifetime."""
        revoked = await self.sessions.revoked_within(self.assertions.ttl_seconds)
        return self.assertions.verification_keys(revoked)

    # ---- authorisation ----

    async def authorize(
        self, token: str, user_id: str, groups: Sequence[str], permission: str
    ) -> Decision:
        """Whether the identity (by token, or by user id and groups) holds ``permission``.

        With a user id and no groups, the user's groups as last seen are used.
        A disabled user is never allowed anything.
        """
        if token:
            identity = await self.validate_token(token)
            return self.policy.decide(identity.groups, permission)
        if groups:
            return self.policy.decide(groups, permission)
        cached = await self.directory.get(user_id)
        if cached is None or cached.record.disabled:
            return Decision(False)
        return self.policy.decide(cached.record.groups, permission)

    async def caller_record(self, token: str) -> tuple[v1.Identity, UserRecord]:
        """The identity behind a token, and its user's record."""
        identity = await self._caller(token)
        return identity, await self.record_of(identity.user.user_id if identity.user else "")

    def may(self, identity: v1.Identity, permission: str) -> bool:
        """Whether an identity's groups grant a global permission."""
        return self.policy.decide(identity.groups, permission).allowed

    async def _caller(self, token: str) -> v1.Identity:
        if not token:
            raise Unauthenticated("token: required for this call; sign in first")
        return await self.validate_token(token)

    async def _require(self, token: str, permission: str, action: str) -> v1.Identity:
        caller = await self._caller(token)
        if not self.policy.decide(caller.groups, permission).allowed:
            raise PermissionDenied(f"{action} needs the {permission} permission")
        return caller
