"""Which of a Trac environment's tickets its permission policies hide from its readers.

Core Trac stores no "private" flag on a ticket: a ticket is restricted when
a permission policy (``[trac] permission_policies``) refuses ``TICKET_VIEW``
on that ticket to someone who may view tickets otherwise. Trac's own
``AuthzPolicy`` (``tracopt.perm.authz_policy``) does it from its authz file
(``[ticket:12]`` ``* =``), and plugins such as SensitiveTicketsPlugin or
PrivateTicketsPlugin are policies too. Rather than read each one's
configuration, the importer asks Trac, as Trac's web pages do: whether a
reader holds ``TICKET_VIEW`` on ``Resource('ticket', N)`` through every
configured policy. The reader is any signed-in user (a name no account has,
so that only the ``authenticated`` group's permissions, which include
anonymous's, and the policies' rules for everyone apply: bugless has no
anonymous readers, so a ticket hidden from anonymous visitors alone is not
restricted), or the user ``--option reader=NAME`` names, for an environment
whose tickets only a group reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bugless_core.errors import FailedPrecondition, InvalidArgument

#: A user name no Trac account has: "any signed-in user" to the policies,
#: in the ``authenticated`` group and nothing more.
ANY_SIGNED_IN = "(bugless import: any signed-in reader)"


def ticket_restrictions(env: Any, reader: str) -> Callable[[int], str]:
    """A function telling, per ticket number, whom Trac hides it from ("" for no one).

    Args:
        env: The open ``trac.env.Environment``.
        reader: ``--option reader``: the Trac user whose view counts as a
            reader's ("" for any signed-in user).

    Raises:
        FailedPrecondition: Trac cannot load a configured policy (a plugin or
            library missing from this Python): nothing could be judged.
        InvalidArgument: the reader (or, without one, a signed-in user as
            such) may view no ticket at all, so hidden tickets cannot be
            told from the others.
    """
    from trac.perm import PermissionCache  # noqa: PLC0415 (Trac is an optional dependency)
    from trac.resource import Resource  # noqa: PLC0415

    user, who = (
        (reader, f"the reader {reader!r} (--option reader)")
        if reader
        else (ANY_SIGNED_IN, "every signed-in user")
    )
    if not _views_tickets(env, user):
        names = f"the user {reader!r}" if reader else "no signed-in user as such"
        raise InvalidArgument(
            f"--option reader: Trac gives TICKET_VIEW to {names}, so the tickets its "
            "permission policies hide from the environment's readers cannot be told apart; "
            "give --option reader=USERNAME, a user who reads the tickets as any of their "
            "readers does"
        )
    perm = PermissionCache(env, user)
    policies = ", ".join(env.config.getlist("trac", "permission_policies"))

    def restricted(number: int) -> str:
        if "TICKET_VIEW" in perm(Resource("ticket", number)):
            return ""
        return (
            f"a ticket Trac's permission policies ({policies}) hide from {who}, who may view "
            "its other tickets"
        )

    return restricted


def _views_tickets(env: Any, user: str) -> bool:
    """Whether ``user`` holds ``TICKET_VIEW`` on tickets in general."""
    from trac.perm import PermissionCache  # noqa: PLC0415

    try:
        return "TICKET_VIEW" in PermissionCache(env, user)("ticket")
    except Exception as exc:  # Trac's ConfigurationError: a policy it cannot load
        raise FailedPrecondition(
            f"Trac cannot check its permission policies ({exc}); install into this "
            "Python what the environment's policies need (Trac's AuthzPolicy needs "
            "configobj: pip install 'bugless-import[trac]'), then run again"
        ) from exc
