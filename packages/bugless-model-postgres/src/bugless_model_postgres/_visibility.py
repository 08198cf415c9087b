"""Who may see a component or a hotlist: the one rule, in SQL and in Python.

A search's rows (:mod:`._search`), the references its first page checks
(:mod:`._search_refs`), the hotlists an issue is shown on (:mod:`._queries`),
the listings of components, hotlists and a hotlist's items
(:mod:`._collection_queries`) and of custom fields (:mod:`._custom_fields`)
all read these templates. Kept in one place because a difference would be
visible: were the check of a query's references to admit a component or
hotlist the rows' rule hides (or ListComponents to list one a search hides),
a hidden id would answer otherwise than a missing one, telling a caller that
something they may not see exists.

Where a row is already in hand (GetComponent's role, a hotlist read by id, a
write's checks), Python judges it: :func:`component_visible` and
:func:`hotlist_visible` are the same rule, clause for clause, kept beside
the templates so that a change to one is made to the other in the same
place; ``test_visibility_rules`` evaluates both over every kind of grant on
PostgreSQL and fails when they disagree. ``_convert.caller_role`` and
``_context.hotlist_visible`` read them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

#: The caller may view component ``{c}`` and its issues: ``{admin}`` (their
#: admin flag), an open component (no viewers), or one of their
#: ``{principals}`` among its viewers. A ``str.format`` template (``'{{}}'``
#: is the empty array).
COMPONENT_VISIBLE = "({admin} OR {c}.viewers = '{{}}' OR {c}.viewers && {principals})"


def component_visible(admin: bool, viewers: Collection[str], principals: Iterable[str]) -> bool:
    """:data:`COMPONENT_VISIBLE` of a row in hand: whether the caller may view the component.

    Args:
        admin: The caller's admin flag.
        viewers: The component's ``viewers`` (every principal its effective
            ACL names; the keys of ``effective_acl``).
        principals: The caller's (``_convert.principals_of``).
    """
    return admin or not viewers or not set(viewers).isdisjoint(principals)


#: The caller may see hotlist ``{h}``: a shared one, ``{admin}``, its owner or
#: one of its editors (``{user}``: the caller's user id), as ListHotlists
#: shows them. A ``str.format`` template.
HOTLIST_VISIBLE = "(NOT {h}.private OR {admin} OR {h}.owner = {user} OR {user} = ANY ({h}.editors))"


def hotlist_visible(
    admin: bool, user: str, *, private: bool, owner: str, editors: Collection[str]
) -> bool:
    """:data:`HOTLIST_VISIBLE` of a row in hand: whether caller ``user`` may see the hotlist."""
    return not private or admin or owner == user or user in editors


#: What a path shows in place of the components above that the caller may
#: not view (:data:`SEEN_PATH`). A whole path begins so too when its
#: top-level component is named ``…`` (a name holds no ``>``, but may be
#: that): neither is told from the other by its text, and need not be, as a
#: typed path is judged by the path the caller is shown (:data:`TYPED_PATH`),
#: so one that both kinds show them is refused as naming more than one.
ELIDED = "…>"
#: What a refusal of a path beginning :data:`ELIDED` adds (GetComponent by
#: path, a search's ``component:`` term): such a path names a component only
#: as the caller is shown it (:data:`TYPED_PATH`), so one copied from another
#: person's listing, or typed by someone who may view the whole path, names
#: none. The text depends on what was typed alone, never on what exists.
ELIDED_TYPED = (
    "; a path beginning '…>' is shown shortened where it runs below a component "
    "you may not view, and names a component only as you are shown it: "
    "give it as shown, the component's own name or its id"
)


def _seen(c: str, names: str) -> str:
    """``{c}``'s path as the caller sees it, made of ``names`` (its path's names, in order).

    The one rule behind :data:`SEEN_PATH` (the names as written) and
    :data:`SEEN_KEY` (as ``path_key`` folds them): whole when the caller may
    view every component above ``{c}``, else :data:`ELIDED` and the names
    below the lowest one they may not view (``hidden.cut``, its place on the
    path). The names below are taken by their ordinal, not by an array
    slice, which CockroachDB lacks (cockroachdb/cockroach#32551).
    """
    return (
        f"(SELECT CASE WHEN hidden.cut IS NULL THEN array_to_string({names}, '>') ELSE '"
        + ELIDED
        + f"' || array_to_string(ARRAY(SELECT n.name FROM unnest({names}) WITH ORDINALITY "
        "AS n(name, ord) WHERE n.ord > hidden.cut ORDER BY n.ord), '>') END "
        f"FROM (SELECT max(u.ord) AS cut FROM unnest({c}.path_ids) WITH ORDINALITY AS u(aid, ord) "
        "JOIN components above ON above.id = u.aid "
        f"WHERE u.aid <> {c}.id AND NOT "
        + COMPONENT_VISIBLE.replace("{c}", "above")
        + ") AS hidden)"
    )


#: The path of component ``{c}`` as the caller sees it (``{admin}``,
#: ``{principals}`` as above): whole when they may view every component
#: above it, else :data:`ELIDED` and the names below the lowest one they may
#: not view (``…>Net`` for ``Secret>Net``). A component's own entries can
#: open it below one the caller may not view (its viewers are its own and
#: its ancestors'); its whole path would tell them the names of what they
#: may not see, which no listing of theirs shows. Every path the Model gives
#: a caller (GetComponent, ListComponents, a refusal's "did you mean") is
#: this one. A ``str.format`` template, one row per component.
SEEN_PATH = _seen("{c}", "string_to_array({c}.path, '>')")
#: :data:`SEEN_PATH` as ``path_key`` folds it (``…>net>deep``), one text:
#: what a typed path is compared with (:data:`TYPED_PATH`).
SEEN_KEY = _seen("{c}", "{c}.path_key")
#: Typed path ``{k}`` (folded as ``path_key`` folds names, joined by ``>``)
#: names component ``{c}`` for the caller (``{admin}``, ``{principals}``):
#: it is :data:`SEEN_KEY`, the path they are shown. So a whole path resolves
#: only when the caller may view every component above, and ``Open>Secret>Net``
#: typed by someone who may view Net but not Secret reads as a path of
#: nothing (as GetComponent and a search then say: the same words as for an
#: unknown path), where it would confirm that Secret exists; the shortened
#: ``…>Net`` they are shown resolves. Each arm starts with what an index
#: serves (``components_path_key``; for a shortened path, the own name
#: through ``components_own_name_key``, migration 0032), so the seen path is
#: computed only for the few components of that path or name. A path of one
#: name is a top-level component's. Whether the caller may view ``{c}``
#: itself is the reader's check, as for a component named by id. A
#: ``str.format`` template.
TYPED_PATH = (
    "(({c}.path_key = string_to_array({k}, '>') OR (left({k}, "
    + str(len(ELIDED))
    + ") = '"
    + ELIDED
    + "' AND {c}.path_key[cardinality({c}.path_key)] = "
    "(string_to_array({k}, '>'))[cardinality(string_to_array({k}, '>'))])) AND "
    + SEEN_KEY
    + " = {k})"
)
