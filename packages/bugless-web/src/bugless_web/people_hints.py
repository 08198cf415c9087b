"""Hints for a username no one goes by, typed into a search: "did you mean alice?".

A query such as ``a:alcie`` is refused with the name marked; the refusal now
also offers the usernames closest to it. They come from the Authenticator's
``SuggestUsers``, the look-up the people fields' autocomplete already makes
for any signed-in person (:mod:`bugless_web.routes.suggest`), and disabled
accounts are left out as there, so the hint names no one the viewer could not
find by typing the start of a name into an assignee box. Typos after the
first character are found: the candidates are those starting with the typed
name's first one and first two characters (at most
:data:`~bugless_core.limits.MAX_SUGGEST_USERS` each), matched like the
language's other "did you mean" hints (:func:`bugless_core.search.did_you_mean`).
"""

from __future__ import annotations

import asyncio

from bugless_core import limits
from bugless_core.clients import call
from bugless_core.errors import BuglessError
from bugless_core.search import QuerySyntaxError, did_you_mean
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_web.backends import Backends

#: Leading characters the candidates share with the typed name (one look-up each).
PREFIXES = (1, 2)


async def closest_usernames_hint(backends: Backends, typed: str) -> str:
    """``"; did you mean 'alice'?"`` for ``typed``, or "" when no enabled username is close.

    A failed look-up gives no hint rather than an error: the refusal it
    would decorate is the answer either way.
    """
    prefixes = sorted({typed[:n] for n in PREFIXES if len(typed) >= n})
    try:
        answers = await asyncio.gather(
            *(
                call(
                    backends.auth.suggest_users,
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
    backends: Backends, error: QuerySyntaxError, unknown: set[str]
) -> QuerySyntaxError:
    """``error`` with the closest usernames added, when what it marks is an unknown person.

    ``unknown`` holds the keys (:func:`~bugless_core.usernames.username_key`)
    of the people terms' names the look-up did not find; the error marks the
    value it refuses, so only a refusal of one of those gets a hint.
    """
    marked = error.query[error.position : error.position + error.length]
    if not marked or username_key(marked) not in unknown:
        return error
    hint = await closest_usernames_hint(backends, marked)
    if not hint:
        return error
    return QuerySyntaxError(error.query, error.position, error.length, error.problem + hint)
