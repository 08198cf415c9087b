"""The Authenticator backend contract: how one kind of credential is checked.

A backend only says who an external subject is (an LDAP entryUUID, an OIDC
``iss``+``sub``, a certificate CN). The Authenticator service maps that subject
to a stable opaque user id of its own, so renaming a user in the directory
never changes an id in the Model. Three kinds exist, each its own ABC, because
a password check, a browser redirect flow and a certificate have nothing in
common but their result.

What ``open(config)`` receives (the Authenticator service, bugless-auth, builds
it; no change to the ABC itself):

* the backend's own options, as strings, from ``--authenticator-option
  NAME.KEY=VALUE`` flags and ``BUGLESS_AUTH_<NAME>_<KEY>`` environment
  variables (``BUGLESS_AUTH_LDAP_URL`` arrives as ``config["url"]``);
* ``config["identity_store"]``: the service's ``bugless_auth.store.IdentityStore``
  (the local backend keeps its users there; others may ignore it).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from bugless_core.setting_files import FileContent


class AuthenticatorKind(enum.StrEnum):
    """What a backend accepts; also AuthenticatorInfo.kind on the wire."""

    PASSWORD = "password"
    OIDC = "oidc"
    CERTIFICATE = "certificate"


@dataclass(frozen=True)
class ExternalIdentity:
    """Who a backend says the subject is, before id mapping.

    Attributes:
        subject: Stable key in the backend's own namespace (never the username
            where the directory has something steadier), e.g.
            ``ldap:<entryUUID>`` or ``oidc:<iss>#<sub>``.
        username: Login name as the directory spells it today.
        display_name: Name shown on user chips.
        email: Mail address, possibly empty.
        groups: Group names, used as ACL principals and for policy.
        bot: Whether this is a machine account (certificate bots).
        username_from: Where the backend read ``username`` ("LDAP attribute
            uid", "OIDC claim preferred_username"), for the operator's log
            line when the name cannot be used
            (:func:`bugless_core.usernames.username_problem`).
        username_names_user: The username *is* who the subject is (a tls
            mapping entry names a bugless user), rather than what a directory
            calls a subject today. A subject seen for the first time whose
            username a user of the same backend holds becomes another subject
            of that user (a second entry for a bot's new certificate), and one
            whose username is now another such user's moves to that user;
            a directory's subject would instead take the name from its stale
            holder. Either way a user of another backend keeps its name.
    """

    subject: str
    username: str
    display_name: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()
    bot: bool = False
    username_from: str = ""
    username_names_user: bool = False


@dataclass(frozen=True)
class OidcStart:
    """What Begin returns: the URL to send the browser to and the flow state."""

    authorization_url: str
    #: Data the backend needs back in :meth:`OidcAuthenticator.complete`
    #: (state, nonce, PKCE verifier). The service signs and encrypts it.
    flow_data: Mapping[str, str] = field(default_factory=dict)


class AuthenticatorBackend(ABC):
    """Base of every authenticator backend.

    Attributes:
        name: What a deployment lists in ``--authenticator``.
        kind: Which credential it checks.
        file_options: The options that name a file, and what it must hold
            (:mod:`bugless_core.setting_files`): ``bugless auth serve`` reads
            and checks them before it connects anywhere, so a wrong file is
            refused in one line naming the option, not in :meth:`open`.
    """

    name: ClassVar[str]
    kind: ClassVar[AuthenticatorKind]
    file_options: ClassVar[Mapping[str, FileContent]] = {}

    @classmethod
    @abstractmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build the backend from its settings (flags / BUGLESS_* env vars)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, default is nothing to release
        """Release connections (LDAP pools, HTTP clients)."""

    @property
    def display_name(self) -> str:
        """Label for a sign-in button; the name unless configured."""
        return self.name

    @property
    def resync_seconds(self) -> float | None:
        """How often the service re-reads this backend's users (directory re-sync).

        ``None`` (the default): the backend has no directory to ask between
        sign-ins, and :meth:`current_identities` is never called. A backend
        that returns a number must implement it.
        """
        return None

    async def current_identities(self, subjects: Sequence[str]) -> Mapping[str, ExternalIdentity]:
        """Who each of ``subjects`` is in the directory now.

        A subject missing from the answer is no longer a user there (deleted,
        or locked out of the sign-in filter): the service disables it and ends
        its sessions. So an outage must raise, never answer with fewer users.

        Raises:
            bugless_core.errors.Unavailable: the directory cannot be asked now.
        """
        raise NotImplementedError(f"{self.name} has no directory to re-read")

    async def group_member_counts(self, groups: Sequence[str]) -> Mapping[str, int | None]:
        """How many enabled users of this backend's directory are in each of ``groups``.

        For CountGroupMembers, which otherwise knows only the people who
        signed in. A group the directory does not hold is absent from the
        answer; None: the directory may hold it but cannot count it now
        (down, slow, not configured to find groups by name). Never raises
        for an outage: the count is advisory. The default: no directory.
        """
        del groups
        return {}


class PasswordAuthenticator(AuthenticatorBackend):
    """Checks a username and password (local store, LDAP)."""

    kind = AuthenticatorKind.PASSWORD

    @abstractmethod
    async def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """Return the identity, or None for a wrong password or unknown user.

        Raises:
            bugless_core.errors.Unavailable: the directory cannot be reached
                (never reported as a wrong password).
        """


class OidcAuthenticator(AuthenticatorBackend):
    """Runs the OAuth 2.0 / OpenID Connect authorization-code flow with PKCE."""

    kind = AuthenticatorKind.OIDC

    @abstractmethod
    async def begin(self, redirect_uri: str) -> OidcStart:
        """Start a flow: authorization URL with state, nonce and S256 challenge."""

    @abstractmethod
    async def complete(
        self, flow_data: Mapping[str, str], code: str, state: str, redirect_uri: str
    ) -> ExternalIdentity:
        """Exchange the code, validate the ID token, return who signed in.

        Raises:
            bugless_core.errors.Unauthenticated: state or nonce mismatch, or an
                invalid, expired or foreign-signed ID token.
        """


class CertificateAuthenticator(AuthenticatorBackend):
    """Maps a client certificate the frontend already verified to an identity."""

    kind = AuthenticatorKind.CERTIFICATE

    @abstractmethod
    async def authenticate(self, certificate_der: bytes) -> ExternalIdentity | None:
        """Return the mapped identity, or None when the subject is not mapped."""

    async def mapped_subjects(self) -> Mapping[str, str] | None:
        """Every subject the backend maps now, with the username each maps to.

        For a backend that maps a fixed list (a file re-read while serving):
        the Authenticator ends the certificate sessions whose subject is not
        among these any more, or whose username here is no longer their
        user's (an entry renamed to another user, or to a new name), so a
        removed or re-pointed entry takes its sessions with it rather than
        leaving them live, as the old user's, until they expire or its
        certificate signs in again. The same object while the list is
        unchanged (the caller compares by identity, so a call costs what the
        backend's own change check costs). None (the default): no such list.
        """
        return None

    async def untrusted(self, certificate_der: bytes) -> str | None:
        """Why the backend does not trust a certificate, or None.

        Asked only after no backend took the certificate, so that the refusal
        names the fix: a certificate this backend's CAs did not sign sends
        the operator to the CA, not to a mapping that may well name it. The
        answer must not depend on the backend's mapping: the API tells the
        certificate's holder this reason, and an answer that did would tell
        them which names are mapped. Worded to follow "certificate subject
        CN=...". None (the default): the backend's only reason to refuse is
        its mapping.
        """
        return None
