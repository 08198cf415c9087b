"""Who may see a component or a hotlist: the one SQL rule every statement uses.

A search's rows (:mod:`._search`), the references its first page checks
(:mod:`._search_refs`), the hotlists an issue is shown on (:mod:`._queries`),
the listings of components, hotlists and a hotlist's items
(:mod:`._collection_queries`) and of custom fields (:mod:`._custom_fields`)
all read these templates. Kept in one place because a difference would be
visible: were the check of a query's references to admit a component or
hotlist the rows' rule hides (or ListComponents to list one a search hides),
a hidden id would answer otherwise than a missing one, telling a caller that
something they may not see exists.
"""

from __future__ import annotations

#: The caller may view component ``{c}`` and its issues: ``{admin}`` (their
#: admin flag), an open component (no viewers), or one of their
#: ``{principals}`` among its viewers. A ``str.format`` template (``'{{}}'``
#: is the empty array).
COMPONENT_VISIBLE = "({admin} OR {c}.viewers = '{{}}' OR {c}.viewers && {principals})"
#: The caller may see hotlist ``{h}``: a shared one, ``{admin}``, its owner or
#: one of its editors (``{user}``: the caller's user id), as ListHotlists
#: shows them. A ``str.format`` template.
HOTLIST_VISIBLE = "(NOT {h}.private OR {admin} OR {h}.owner = {user} OR {user} = ANY ({h}.editors))"
#: What a path shows in place of the components above that the caller may
#: not view (:data:`SEEN_PATH`): no name holds ``>``, so no path begins so.
ELIDED = "…>"
#: What a refusal of a path typed as it is shown (:data:`ELIDED` first) adds:
#: copied from a listing, it names no component (GetComponent by path, a
#: search's ``component:`` term), and the reader is told why and what does.
ELIDED_TYPED = (
    "; a path beginning '…>' is shown shortened where it runs below a component "
    "you may not view, and names no component: give the component's own name or its id"
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
SEEN_PATH = (
    "(SELECT CASE WHEN max(u.ord) IS NULL THEN {c}.path ELSE '"
    + ELIDED
    + "' || array_to_string((string_to_array({c}.path, '>'))[max(u.ord) + 1:], '>') END "
    "FROM unnest({c}.path_ids) WITH ORDINALITY AS u(aid, ord) "
    "JOIN components above ON above.id = u.aid "
    "WHERE u.aid <> {c}.id AND NOT " + COMPONENT_VISIBLE.replace("{c}", "above") + ")"
)
