"""The bugless search language: parse, print, explain, and translate for the Model.

``parse_query`` turns text such as ``is:open p<p2 -assignee:none "disk full"
(c:123+ OR h:7) sort:-modified`` into an immutable :class:`Query` tree;
``format_query`` writes a tree back as canonical text (a round trip gives the
same tree); ``explain`` and ``query_to_json`` show how it was understood; and
``to_structured`` turns it into the ``bugless.v1.StructuredQuery`` the Model
executes, once ``user_terms`` have been resolved. Every problem is a
:class:`QuerySyntaxError` that says where in the query it is.
"""

from __future__ import annotations

from bugless_core.search._ast import (
    And,
    CustomFieldTerm,
    DateValue,
    EnumValue,
    FieldTerm,
    IntValue,
    Node,
    Not,
    Or,
    Query,
    RelativeDateValue,
    SortSpec,
    Span,
    TextTerm,
    TextValue,
    TimestampValue,
    UserValue,
    Value,
)
from bugless_core.search._error import QuerySyntaxError
from bugless_core.search._fields import Field, Operator, SortField, TextField
from bugless_core.search._fields import suggest as did_you_mean
from bugless_core.search._parser import MAX_NESTING, parse_query
from bugless_core.search._printer import explain, format_query, query_to_json
from bugless_core.search._refusals import refused_part
from bugless_core.search._structured import (
    mentions_me,
    required_user_terms,
    to_structured,
    user_terms,
)

__all__ = [
    "MAX_NESTING",
    "And",
    "CustomFieldTerm",
    "DateValue",
    "EnumValue",
    "Field",
    "FieldTerm",
    "IntValue",
    "Node",
    "Not",
    "Operator",
    "Or",
    "Query",
    "QuerySyntaxError",
    "RelativeDateValue",
    "SortField",
    "SortSpec",
    "Span",
    "TextField",
    "TextTerm",
    "TextValue",
    "TimestampValue",
    "UserValue",
    "Value",
    "did_you_mean",
    "explain",
    "format_query",
    "mentions_me",
    "parse_query",
    "query_to_json",
    "refused_part",
    "required_user_terms",
    "to_structured",
    "user_terms",
]
