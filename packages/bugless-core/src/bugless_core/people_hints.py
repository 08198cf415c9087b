"""Hints for a username no one goes by, typed into a search: "did you mean alice?".

A query such as ``a:alcie`` is refused with the name marked; the refusal also
offers the usernames closest to it, in the web's search page and in the API's
(so the CLI's) alike. They come from the Authenticator's ``SuggestUsers``, the
look-up the web's people fields' autocomplete makes for any signed-in person,
and disabled accounts are left out as there, so the hint names no one the
caller could not find by typing the start of a name into an assignee box. A
frontend offers hints only to callers who may make that look-up (a bot, which
has no web session, gets none from the API). Typos after the first character
are found: the candidates are those starting with the typed name's first one
and first two characters (at most :data:`~bugless_core.limits.MAX_SUGGEST_USERS`
each), matched like the language's other "did you mean" hints
(:func:`bugless_core.search.did_you_mean`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bugless_core import limits
from bugless_core.clients import call
from bugless_core.errors import BuglessError
from bugless_core.search import QuerySyntaxError, did_you_mean
from bugless_core.usernames import username_key
from bugless_proto import v1

#: Leading characters the candidates share with the typed name (one look-up each).
PREFIXES = (1, 2)


def unknown_names(required: Iterable[str], found: Iterable[v1.User]) -> set[str]:
    """The keys of the ``required`` usernames (people terms) that none of ``found`` goes by.

    What a frontend notes while resolving a query
    (:func:`bugless_core.search.required_user_terms`, the users its
    ``users_by_name`` answered), for :func:`with_people_hint`.
    """
    known = {username_key(user.username) for user in found}
    return {username_key(name) for name in required} - known


async def closest_usernames_hint(auth: v1.AuthenticatorStub, typed: str) -> str:
    """``"; did you mean 'alice'?"`` for ``typed``, or "" when no enabled username is close.

    A failed look-up gives no hint rather than an error: the refusal it
    would decorate is the answer either way.
    """
    prefixes = sorted({typed[:n] for n in PREFIXES if len(typed) >= n})
    try:
        answers = await asyncio.gather(
            *(
                call(
                    auth.suggest_users,
                    v1.SuggestUsersRequest(prefix=p, limit=limits.MAX_SUGGEST_USERS),
                )
                for p in prefixes
            )
        )
    except BuglessError:
        return ""
    candidates = {
        username_key(u.username) for a in answers for u in a.users if not u.disabled and u.username
    }
    candidates.discard(username_key(typed))
    return did_you_mean(username_key(typed), sorted(candidates))


async def with_people_hint(
    auth: v1.AuthenticatorStub, error: QuerySyntaxError, unknown: set[str]
) -> QuerySyntaxError:
    """``error`` with the closest usernames added, when what it marks is an unknown person.

    ``unknown`` holds the keys (:func:`unknown_names`) of the people terms'
    names the look-up did not find; the error marks the value it refuses, so
    only a refusal of one of those gets a hint (``status:alcie`` gets none).
    """
    marked = error.query[error.position : error.position + error.length]
    if not marked or username_key(marked) not in unknown:
        return error
    hint = await closest_usernames_hint(auth, marked)
    if not hint:
        return error
    return QuerySyntaxError(error.query, error.position, error.length, error.problem + hint)


__all__ = ["PREFIXES", "closest_usernames_hint", "unknown_names", "with_people_hint"]
