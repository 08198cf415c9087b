"""Search terms on rows kept beside the issue: attachments and mentions.

Apart from :mod:`._search` (which compiles the rest of a query and calls
these) because neither reads the issue row: each is an ``EXISTS`` over its
own table keyed by ``i.id``, with its values folded the way the rows were
when written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bugless_core.usernames import username_key
from bugless_proto import v1

Op = v1.SearchOperator
#: Binds a value, returns its placeholder (``Params.add`` of the compiler).
Bind = Callable[[Any, str], str]

#: The issue has a live attachment (deleted ones do not count).
_HAS_ATTACHMENT = "EXISTS (SELECT 1 FROM attachments a WHERE a.issue_id = i.id AND {live}{extra})"
#: An attachment is live now, or (``row_state``) at the row's version: the
#: entry that attached it is at or below it and none at or below it deleted it.
_LIVE = {
    False: "a.deleted_in_version = 0",
    True: "a.entry_version <= i.version "
    "AND (a.deleted_in_version = 0 OR a.deleted_in_version > i.version)",
}


def attachment_term(
    op: v1.SearchOperator, values: list[Any], bind: Bind, *, row_state: bool = False
) -> str:
    """``has:attachment`` and ``attachment:text`` (a name contains the text, any case).

    Any case by ``str.casefold`` on both sides: the name's folding is stored
    with it (``folded_name``, migration 0022), as SQL's ``lower()`` folds by
    the database's collation (ASCII only under the C locale). ``row_state``:
    the rows are a Watch's states (``compile_search``), each judged on the
    attachments it had at its version (attaching and deleting are history
    entries, numbered on the attachment's row).
    """
    live = _LIVE[row_state]
    if op in (Op.ANY, Op.NONE):
        some = _HAS_ATTACHMENT.format(live=live, extra="")
        return some if op is Op.ANY else f"(NOT {some})"
    bound = bind([str(v).casefold() for v in values], "text[]")
    return _HAS_ATTACHMENT.format(
        live=live,
        extra=f" AND EXISTS (SELECT 1 FROM unnest({bound}) AS n(part)"
        " WHERE strpos(a.folded_name, n.part) > 0)",
    )


def mention_term(op: v1.SearchOperator, values: list[Any], bind: Bind) -> str:
    """Mentions are rows filled on write (:mod:`._mentions`), keyed by issue and username key.

    The values are keyed the same way (``username_key``, not ``lower()``,
    which is right for ASCII only), so any spelling of a name finds its rows.
    """
    if op in (Op.ANY, Op.NONE):
        some = "EXISTS (SELECT 1 FROM issue_mentions m WHERE m.issue_id = i.id)"
        return some if op is Op.ANY else f"(NOT {some})"
    names = bind(sorted({username_key(str(v)) for v in values}), "text[]")
    return (
        "EXISTS (SELECT 1 FROM issue_mentions m WHERE m.issue_id = i.id "
        f"AND m.username = ANY ({names}))"
    )
