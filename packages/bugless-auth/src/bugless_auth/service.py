"""The Authenticator's behaviour, independent of the wire.

:class:`AuthService` owns the enabled backends and everything around them:
mapping external subjects to user ids (the store), session tokens, the login
throttle, cached look-ups and the policy. The gRPC servicer only converts
messages and checks their shape; anything a second transport would need to
repeat lives here. Its user-management calls (local accounts, disabling,
ending sessions, imported people) are a mixin in :mod:`bugless_auth.user_admin`,
its look-ups (users by id, name or prefix, the users' change feed) one in
:mod:`bugless_auth.user_lookups`, and what every request after a sign-in asks
(token validation, assertions for services, authorisation) one in
:mod:`bugless_auth.identity_checks`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import hashes
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth._cache import TtlCache
from bugless_auth.assertions import AssertionIssuer
from bugless_auth.directory import UserDirectory
from bugless_auth.group_loss import GroupLoss
from bugless_auth.identity_checks import DISABLED, IdentityChecks
from bugless_auth.mapped_sessions import MappedSessions
from bugless_auth.passwords import PasswordHashes
from bugless_auth.people import CERTIFICATE_REVOKED_MESSAGE, PeopleCertificates
from bugless_auth.people_ca import person_of
from bugless_auth.policy import Policy
from bugless_auth.resync import DirectoryResync
from bugless_auth.session_kinds import PEOPLE_CA
from bugless_auth.sessions import (
    CERTIFICATE_REVOKED,
    NotRecorded,
    SeenCertificate,
    SessionStore,
)
from bugless_auth.settings import AuthSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.throttle import LoginThrottle
from bugless_auth.tls import parse_certificate, validity_problem
from bugless_auth.tokens import SessionClaims, TokenAuthority, load_key
from bugless_auth.unsubscribe import UnsubscribeTokens
from bugless_auth.user_admin import UserAdministration
from bugless_auth.user_feed import UserFeedFollower
from bugless_auth.user_lookups import UserLookups
from bugless_auth.username_holders import ENTRIES_DISAGREE
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
    Unauthenticated,
    Unavailable,
)
from bugless_core.outage import OutageLog
from bugless_core.plugins import Plugins
from bugless_proto import v1

_log = logging.getLogger("bugless.auth")

#: The one message for an unknown user and a wrong password (no enumeration).
WRONG_CREDENTIALS = "wrong username or password"
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


class AuthService(UserAdministration, UserLookups, IdentityChecks):
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
        self.unsubscribe_tokens_signer = UnsubscribeTokens(tokens.keys, issuer=tokens.issuer)
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
            Unauthenticated: no backend maps the certificate's subject (the
                sessions made for the certificate are ended first:
                :meth:`MappedSessions.end_refused`). The reason says why:
                ``CERTIFICATE_EXPIRED`` outside its validity window,
                ``CERTIFICATE_UNTRUSTED`` signed by no CA the backend trusts
                (the tls backend's ``ca_file``; for a person's certificate,
                the people CAs), whether or not it is mapped,
                ``USERNAME_TAKEN`` mapped to a username a user of another
                backend holds (never taken over), ``MAPPING_ENTRIES_DISAGREE``
                mapped to a new username while another entry still names its
                user (:func:`bugless_auth.username_holders.entry_user`), else
                ``CERTIFICATE_NOT_MAPPED``.
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
        subject = f"certificate subject {cert.subject.rfc4514_string()} "
        for backend in backends:
            found = await backend.authenticate(certificate_der)
            if found is None:
                continue
            try:
                return await self._signed_in(
                    found, backend.name, certificate=seen, mapped=await backend.mapped_subjects()
                )
            except FailedPrecondition as exc:
                if exc.reason == ENTRIES_DISAGREE:  # its user's other entries name it otherwise
                    raise Unauthenticated(subject + exc.message, reason=exc.reason) from exc
                # its username is another backend's user's
                raise Unauthenticated(
                    f"{subject}is mapped to username {found.username!r}, which is not the "
                    f"{backend.name} mapping's to give: {exc.message}",
                    reason="USERNAME_TAKEN",
                ) from exc
        # Nothing maps it any more: the sessions it made end now, not when they expire.
        await self.mapped_sessions.end_refused(seen.fingerprint)
        expired = validity_problem(cert)  # why no backend took it, the first that applies
        if expired:
            raise Unauthenticated(subject + expired, reason="CERTIFICATE_EXPIRED")
        if person_of(cert) is not None:  # a person's, of a CA no longer (or never) a people CA
            raise Unauthenticated(
                f"{subject}is a person's certificate, but its issuer "
                f"({cert.issuer.rfc4514_string()}) is not a people CA this Authenticator "
                "trusts; run `bugless login` for a new one",
                reason="CERTIFICATE_UNTRUSTED",
            )
        for backend in backends:
            untrusted = await backend.untrusted(certificate_der)
            if untrusted:
                raise Unauthenticated(subject + untrusted, reason="CERTIFICATE_UNTRUSTED")
        raise Unauthenticated(
            subject + "is not mapped to a bugless user", reason="CERTIFICATE_NOT_MAPPED"
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
        mapped: Mapping[str, str] | None = None,
    ) -> Authenticated:
        # Fewer groups: it ends the sessions as the re-sync would have, which
        # after this refresh finds nothing lost (bugless_auth.group_loss).
        loss = GroupLoss(self._matters, f"(seen at a sign-in with {authenticator})")
        record, released = await self.store.resolve(found, authenticator, then=loss, mapped=mapped)
        loss.logged(record.user_id)
        for user_id in released:
            self.directory.forget(user_id)
        if released and certificate is not None:  # a mapping entry's subject changed user
            await self.mapped_sessions.recheck()
        if certificate is not None:  # the session ends with the entry that admitted it
            certificate = replace(certificate, subject=found.subject)
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
