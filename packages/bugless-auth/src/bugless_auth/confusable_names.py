"""A new username that looks like one somebody holds is refused (UTS #39 skeletons).

``check_username`` already refuses a name mixing scripts ("paul" with a
Cyrillic a, U+0430, is Latin and Cyrillic at once), but a name written
wholly in one script can still pass for another's: "ace" spelt in
Cyrillic (U+0430 U+0441 U+0435), "bi11" for "bill", "kirn" for "kim". An
administrator creating, or renaming someone to, such a name would hand out
an account that looks like a colleague's on every page, comment and
mention. So the local store (``bugless auth user add``, CreateLocalUser,
``bugless auth user rename``) refuses a name whose *skeleton* is another
user's, naming that user, as ``USERNAME_CONFUSABLE``.

The skeleton is Unicode Technical Standard #39's (section 4, "Confusable
Detection"): the name in NFD, each character replaced by its prototype from
Unicode's ``confusables.txt``, then NFD again; two names with one skeleton
are confusable. Two skeletons are compared, and either being equal refuses:

* the name as it is spelt, which is how every page shows it: "BiII" (capital
  i's) is "Bill" to a reader, and "Ian" is "lan", though their keys ("biii",
  "ian") look like neither;
* the name's key (:func:`bugless_core.usernames.username_key`), keyed again,
  since names compare case-insensitively (an ``@bi11`` mention, a search for
  ``a:bi11``): "Bill" and "bi11" collide as "bill" and "bi11" do, and "user0"
  and "usero" (the prototype of "0" is "O") as "USER0" and "USERO".

The data is Unicode's own file, shipped unchanged in ``unicode_data/``
(version in its header; the Unicode License v3 beside it), read once, at the
first check.

Only new names are checked, as ``check_username`` checks only new names:
existing accounts, and names a directory (LDAP, OIDC, a certificate mapping)
gives, which bugless does not choose, keep signing in. The check reads every
username once (a few hundred milliseconds for 100,000 users, which is fine
for an administrator's rare command, not for a sign-in), a page of users at
a time, their skeletons computed in a thread: in the Authenticator the event
loop answers sign-ins and look-ups meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import unicodedata
from importlib import resources
from typing import Any

from bugless_core.errors import AlreadyExists
from bugless_core.usernames import username_key

#: The users' ids and usernames after user id $1, $2 of them in id order (the
#: skeleton is Python's to compute, so every name is read, a page at a time).
_USERNAMES_AFTER = (
    "SELECT user_id, username FROM users WHERE user_id > $1 ORDER BY user_id LIMIT $2"
)
#: Users read and compared per step: a page's rows decoded on the event loop
#: take a few milliseconds, where every user at once held it for most of a
#: second on a large directory.
_PAGE = 5000


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each source character of ``confusables.txt`` and its prototype (one or more characters)."""
    text = (
        resources.files("bugless_auth")
        .joinpath("unicode_data/confusables.txt")
        .read_text(encoding="utf-8-sig")
    )
    table: dict[str, str] = {}
    for line in text.splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target, *_ = (field.strip() for field in data.split(";"))
        table[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def uts39_skeleton(text: str) -> str:
    """UTS #39's skeleton of ``text``: NFD, each character its prototype, NFD again."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


def skeleton(username: str) -> str:
    """What ``username`` looks like, as bugless compares names: equal for names that look alike.

    The UTS #39 skeleton of the name's key, keyed again: names compare
    case-insensitively, and some prototypes are capitals ("0" is "O"), so
    "user0" and "usero" collide as "USER0" and "USERO" would.
    """
    return username_key(uts39_skeleton(username_key(username)))


def _skeletons(username: str) -> tuple[str, str]:
    """``username``'s skeleton as spelt and :func:`skeleton` (as compared): see the module."""
    key = username_key(username)
    shown = uts39_skeleton(username)
    # Most names are their own key (lower-case ASCII): one skeleton serves both.
    keyed = shown if key == username else uts39_skeleton(key)
    return shown, username_key(keyed)


def confusable_holder(usernames: list[tuple[str, str]], new: str, user_id: str) -> str | None:
    """The username among ``(user_id, username)`` pairs that ``new`` passes for, if any.

    Either skeleton equal (as spelt, as compared) is passing for. ``user_id``'s
    own name (a rename's) does not count, nor a name that is ``new`` itself
    (by key): that one is taken, which the caller says.
    """
    (shown, keyed), key = _skeletons(new), username_key(new)
    for other_id, other in usernames:
        if other_id == user_id or username_key(other) == key:
            continue
        other_shown, other_keyed = _skeletons(other)
        if other_shown == shown or other_keyed == keyed:
            return other
    return None


async def refuse_confusable(
    conn: Any, new: str, field: str, *, lock: str | None, user_id: str = ""
) -> None:
    """Refuse ``new`` when it looks like a username some other user holds.

    Run in the transaction that writes ``new``, with the store dialect's
    ``username_check_lock`` (:mod:`bugless_auth._dialect`), taken here first:
    two look-alike names written at the same moment are then checked one
    after the other, and the second is refused, where at READ COMMITTED
    both checks read the users before either insert and both passed. (On
    the SERIALIZABLE dialect, with no lock, one of the two transactions is
    aborted and re-run instead.) Names a directory brings are not checked,
    so they take no lock.

    Raises:
        AlreadyExists: naming the field, both names and the reason
            ``USERNAME_CONFUSABLE``; the caller writes nothing.
    """
    if lock is not None:
        await conn.execute(lock)
    holder: str | None = None
    after = ""
    while holder is None:
        rows = await conn.fetch(_USERNAMES_AFTER, after, _PAGE)
        if not rows:
            break
        # Each name's skeleton is pure Python (a few microseconds; most of a
        # second for a large directory): in a thread, a page at a time, so that
        # the Authenticator's loop goes on answering sign-ins and look-ups.
        pairs = [(r["user_id"], r["username"]) for r in rows]
        holder = await asyncio.to_thread(confusable_holder, pairs, new, user_id)
        after = pairs[-1][0]
    if holder is not None:
        raise AlreadyExists(
            f"{field}: {new!r} looks like the username {holder!r} of another bugless user "
            "(the same letters to a reader, by Unicode's confusables: UTS #39), so it could "
            "pass for them; choose a name that does not",
            reason="USERNAME_CONFUSABLE",
        )
