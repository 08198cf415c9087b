"""Where in a query's text the Model's refusal of it points.

A frontend parses the text, the Model checks what only it knows (a custom
field no one defined, a value its type refuses, a component or hotlist the
caller may not name) and refuses with the part at fault in its metadata:
``custom_field`` (an id or a name), ``component`` (an id, or a name as
sent), ``hotlist`` (an id). :func:`refused_part` finds that part in the
parsed text, so the web page and the API (and so the command line) mark it
as they mark their own syntax errors, in one way.
"""

from __future__ import annotations

from collections.abc import Mapping

from bugless_core.search._ast import (
    And,
    CustomFieldTerm,
    FieldTerm,
    IntValue,
    Node,
    Not,
    Or,
    Query,
    Span,
    TextValue,
)
from bugless_core.search._fields import Field

#: The Model's metadata key naming the component or hotlist a query may not name.
_REFERENCE_KEYS = {
    Field.COMPONENT: "component",
    Field.COMPONENT_NAME: "component",
    Field.HOTLIST: "hotlist",
}


def refused_part(query: Query, metadata: Mapping[str, str]) -> Span | None:
    """The span of the term or value the Model's refusal names, if ``query`` has it.

    A custom field term or sort key (``metadata["custom_field"]``), or the
    value of a component or hotlist (``["component"]``, ``["hotlist"]``);
    the first in the query's order. None when the refusal names none of
    them, or names one the text does not hold (a part of a query that was
    not parsed from it, or a tree built in code, which has no spans).
    """
    named = metadata.get("custom_field", "").casefold()
    referenced = {f: metadata.get(key, "") for f, key in _REFERENCE_KEYS.items()}
    for spec in query.sort:
        if named and str(spec.custom_field_id) == named and spec.span:
            return spec.span
    nodes: list[Node] = [query.filter] if query.filter is not None else []
    while nodes:
        node = nodes.pop()
        if isinstance(node, And | Or):
            nodes.extend(reversed(node.children))
        elif isinstance(node, Not):
            nodes.append(node.child)
        elif isinstance(node, CustomFieldTerm) and named and node.span:
            key = str(node.field_id) if node.field_id else node.name.casefold()
            if key == named:
                return node.span
        elif isinstance(node, FieldTerm) and referenced.get(node.field):
            for value in node.values:
                written = (
                    str(value.value)
                    if isinstance(value, IntValue)
                    else value.text
                    if isinstance(value, TextValue)
                    else None
                )
                if written == referenced[node.field] and value.span:
                    return value.span
    return None
