"""Search terms on who did what to an issue: its history's authors and its stars.

Apart from :mod:`._search` (which compiles the rest of a query and calls
:func:`people_term`) because none of these reads a people column of the
issue row: ``commenter:``, ``modifier:``, ``lastmodifier:`` and
``lastcommenter:`` read ``issue_history``, ``star:`` reads ``issue_stars``,
each a subquery keyed by ``i.id``; only their ``has:`` forms read the row's
counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bugless_proto import v1

F = v1.SearchField
Op = v1.SearchOperator
#: Binds a value, returns its placeholder (``Params.add`` of the compiler).
Bind = Callable[[Any, str], str]

#: Entry ``h`` wrote a comment, as ``comment_count`` counts them: no edit (an
#: edit's entry carries a comment's new text but is no new comment), with a
#: comment or one since redacted (a redaction blanks the text where it was
#: written; its author still wrote it, and the entry still shows who).
_WROTE_COMMENT = "h.edits_version = 0 AND (h.comment <> '' OR h.comment_redacted)"
#: History conditions of the people fields: an entry of the issue by one of
#: the users bound at ``{users}``; ``{upto}`` bounds a Watch state's history to its version.
_HISTORY_PEOPLE = {
    F.COMMENTER: "EXISTS (SELECT 1 FROM issue_history h WHERE h.issue_id = i.id{upto} "
    f"AND {_WROTE_COMMENT} AND h.author = ANY ({{users}}))",
    F.MODIFIER: "EXISTS (SELECT 1 FROM issue_history h WHERE h.issue_id = i.id{upto} "
    "AND h.author = ANY ({users}))",
    F.LAST_MODIFIER: "EXISTS (SELECT 1 FROM issue_history h WHERE h.issue_id = i.id "
    "AND h.version = i.version AND h.author = ANY ({users}))",
    F.LAST_COMMENTER: "coalesce((SELECT h.author FROM issue_history h "
    f"WHERE h.issue_id = i.id{{upto}} AND {_WROTE_COMMENT} "
    "ORDER BY h.version DESC LIMIT 1), '') = ANY ({users})",
    F.STARRED_BY: "EXISTS (SELECT 1 FROM issue_stars st WHERE st.issue_id = i.id "
    "AND st.user_id = ANY ({users}))",
}
#: The fields :func:`people_term` compiles.
PEOPLE_FIELDS = frozenset(_HISTORY_PEOPLE)
#: ``has:`` of the fields that can be empty, by the row's counts (the others always have one).
_SOME = {F.COMMENTER: "i.comment_count > 0", F.STARRED_BY: "i.star_count > 0"}


def people_term(
    field: v1.SearchField,
    op: v1.SearchOperator,
    values: list[Any],
    bind: Bind,
    *,
    row_state: bool = False,
) -> str:
    """A term of one of :data:`PEOPLE_FIELDS`: ``field:users``, ``has:field``, ``-has:field``.

    ``values`` are user ids. ``row_state``: the rows are a Watch's states
    (``compile_search``), each judged on the history up to its version.
    """
    if op in (Op.ANY, Op.NONE):
        some = _SOME.get(field, "TRUE")
        return some if op is Op.ANY else f"(NOT {some})"
    upto = " AND h.version <= i.version" if row_state else ""
    return _HISTORY_PEOPLE[field].format(users=bind(values, "text[]"), upto=upto)
