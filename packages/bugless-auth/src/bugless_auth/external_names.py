"""The one check every directory's username passes before it names a bugless user.

LDAP (``username_attribute``), OIDC (``username_claims``), the certificate
mapping and the directory re-sync all hand the store an
:class:`~bugless_core.auth_backend.ExternalIdentity`, and every one goes
through :meth:`bugless_auth.store.IdentityStore.resolve`, which calls
:func:`check_external_username` first. The rule is
:func:`bugless_core.usernames.username_problem`: the local store's grammar,
no compatibility characters, no mixed scripts.

A name that does not fit is refused, not mapped to one that does. A mapping
("a b" → "a-b") would hand the person a name they never chose and nobody
searches for, could give two directory names one bugless name (then one of
them is refused anyway, or worse, takes the other's account), and would hide
from the operator a directory entry that other systems trip on too. So the
person is told why they cannot sign in, the operator's log names the
authenticator, the attribute or claim and the value, and nothing is written:
the directory is where the name is fixed, and the next sign-in then works.

Names that differ from an existing user's only by case or normal form have
that user's :func:`~bugless_core.usernames.username_key`; the store then
moves the name within one directory, or refuses it from another
(:meth:`~bugless_auth.store.IdentityStore.resolve`).
"""

from __future__ import annotations

import logging

from bugless_core.auth_backend import ExternalIdentity
from bugless_core.errors import Unauthenticated
from bugless_core.usernames import username_problem

_log = logging.getLogger("bugless.auth")

#: The ErrorInfo reason of a sign-in refused for its username (the web shows the message).
USERNAME_UNUSABLE = "USERNAME_UNUSABLE"

#: How the local backend's subjects start (``bugless_auth.local``): the store's own users.
LOCAL_SUBJECT_PREFIX = "local:"


def check_external_username(identity: ExternalIdentity, authenticator: str) -> None:
    """Refuse an identity whose username cannot be a bugless username.

    The local backend's identities (subject ``local:<user id>``) are the
    store's own records, not a directory's: their names were checked when
    they were created (:func:`bugless_auth.user_admin.check_username`), and
    one an earlier release let in keeps signing in; refusing it here would
    lock out an account nobody but a bugless administrator can rename.

    Raises:
        Unauthenticated: reason :data:`USERNAME_UNUSABLE`, with a message for
            the person signing in (their name and what is wrong with it); the
            operator's warning also names where the backend read the name.
    """
    if identity.subject.startswith(LOCAL_SUBJECT_PREFIX):
        return
    problem = username_problem(identity.username)
    if problem is None:
        return
    source = identity.username_from or "its username"
    _log.warning(
        "%s: %s of %s is %r, which %s; fix it in the directory (nothing was written)",
        authenticator,
        source,
        identity.subject,
        identity.username,
        problem,
        extra={"authenticator": authenticator, "username_from": source},
    )
    raise Unauthenticated(
        f"your username from {authenticator}, {identity.username!r}, cannot be used in "
        f"bugless: it {problem}. Ask the administrator of that directory to change it",
        reason=USERNAME_UNUSABLE,
    )


__all__ = ["USERNAME_UNUSABLE", "check_external_username"]
