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
