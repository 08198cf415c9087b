"""Building ``bugless.v1.StructuredQuery`` trees in code.

A frontend gets its tree from the query language (:func:`~bugless_core.search.to_structured`,
which builds with these functions too); everything else that asks the Model a
question in code (the API joining a query string with a structured query, the
Model's own watch filter, the conformance suite, tests and benchmarks) builds
it here, so a node is made one way everywhere::

    all_of(term(F.STATUS_CLASS, Op.EQ, "open"), negate(term(F.ASSIGNEE, Op.NONE)))

Nothing is checked here: the Model validates every query it receives (and the
conformance suite relies on building queries it must refuse).
"""

from __future__ import annotations

from datetime import datetime

from bugless_core.search.enum_values import SearchEnum, enum_search_value
from bugless_proto import v1

#: A value as Python holds it: text, an integer, or an instant.
SearchScalar = str | int | datetime


def search_value(raw: SearchScalar | SearchEnum) -> v1.SearchValue:
    """The ``SearchValue`` of the kind that matches ``raw``'s type.

    A status, type, priority or severity member is written as ``search.proto``
    says (:func:`~bugless_core.search.enum_values.enum_search_value`: ``"FIXED"``,
    ``1`` for P1), so code passes members and never their numbers. Otherwise
    text for a ``str`` (words, user references, ``"open"``), ``integer`` for
    an ``int`` (ids), ``time`` for a ``datetime``.
    """
    if isinstance(raw, SearchEnum):
        return enum_search_value(raw)
    if isinstance(raw, datetime):
        return v1.SearchValue(time=raw)
    if isinstance(raw, int):
        return v1.SearchValue(integer=int(raw))
    return v1.SearchValue(text=raw)


def term(
    field: v1.SearchField,
    op: v1.SearchOperator = v1.SearchOperator.EQ,
    *values: SearchScalar | SearchEnum,
    include_subtree: bool = False,
    phrase: bool = False,
) -> v1.SearchNode:
    """One term as a node: ``field op values`` (ANY and NONE take no values).

    Args:
        field: What is compared.
        op: How; EQ matches any of the values (a comma list).
        values: The values, each made with :func:`search_value`.
        include_subtree: COMPONENT only: also every component below.
        phrase: TEXT, TITLE, COMMENT only: the words adjacent and in order.
    """
    return v1.SearchNode(
        term=v1.SearchTerm(
            field=field,
            op=op,
            values=[search_value(v) for v in values],
            include_subtree=include_subtree,
            phrase=phrase,
        )
    )


def all_of(*nodes: v1.SearchNode) -> v1.SearchNode:
    """A node that matches what every one of ``nodes`` matches (none: everything)."""
    return v1.SearchNode(all_of=v1.SearchNodeList(nodes=list(nodes)))


def any_of(*nodes: v1.SearchNode) -> v1.SearchNode:
    """A node that matches what any of ``nodes`` matches (none: nothing)."""
    return v1.SearchNode(any_of=v1.SearchNodeList(nodes=list(nodes)))


def negate(node: v1.SearchNode) -> v1.SearchNode:
    """A node that matches what ``node`` does not."""
    return v1.SearchNode(negate=node)


__all__ = ["SearchScalar", "all_of", "any_of", "negate", "search_value", "term"]
