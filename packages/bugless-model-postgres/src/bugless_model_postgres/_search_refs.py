"""The components and hotlists a search names: each must be one the caller may see.

``componentid:999999`` or ``hotlistid:12`` of a hotlist no one made matched
nothing, silently, which reads as "no such issues" when the query itself was
wrong (a typo, an id of another deployment). A first page checks them
instead, in the statement that reads it (a column, :func:`seen_column`: no
round trip more): every component id the query names must be a component
the caller may view (``c:12+``: it, or one below it, since a
component's own entries may open it below a parent the caller may not
view), every hotlist id a hotlist the caller may see, else INVALID_ARGUMENT
naming the first that is not, at its place in the query
(``metadata["component"]`` or ``["hotlist"]`` holds the id as the query
wrote it, so a frontend can point at the term). One the caller may
not see is refused in the same words as one that does not exist: the answer
tells nothing of what they cannot see (a private hotlist's id, a restricted
component's).

Later pages are not checked again: their token binds them to the query
their first page checked, and a component or hotlist gone since matches
nothing, as anything else deleted under a reader does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import betterproto2

from bugless_core.errors import InvalidArgument
from bugless_proto import v1

F = v1.SearchField

#: The caller may view component ``{c}`` (``{admin}``, ``{viewers}``: the
#: caller's admin flag and principals): the rule of every component read
#: (``_search._VISIBLE``).
_VIEWS = "({admin} OR {c}.viewers = '{{}}' OR {c}.viewers && {viewers})"
#: Of the ids at ``{components}``, ``{subtrees}`` (components with the ones
#: below) and ``{hotlists}``, those the caller may see, as ``kind:id`` texts
#: (``{user}``: the caller's user id): a component they may view, a subtree
#: with one they may view (a component's own entries may open it below a
#: parent they may not view), a hotlist as ListHotlists shows them.
_SEEN = (
    "(ARRAY(SELECT 'component:' || c.id::text FROM components c "
    "WHERE c.id = ANY ({components}) AND " + _VIEWS.replace("{c}", "c") + ") "
    "|| ARRAY(SELECT 'subtree:' || t.id::text FROM unnest({subtrees}) AS t(id) "
    "WHERE EXISTS (SELECT 1 FROM components s WHERE s.path_ids @> ARRAY[t.id] AND "
    + _VIEWS.replace("{c}", "s")
    + ")) || ARRAY(SELECT 'hotlist:' || h.id::text FROM hotlists h "
    "WHERE h.id = ANY ({hotlists}) AND (NOT h.private OR {admin} OR h.owner = {user} "
    "OR {user} = ANY (h.editors))))"
)


@dataclass(frozen=True)
class QueryReferences:
    """The component and hotlist ids a query names, each with where it first does.

    Attributes:
        components: Component ids, to the path of the first value naming each.
        subtrees: Component ids with the components below them (``c:12+``), likewise.
        hotlists: Hotlist ids, likewise.
    """

    components: dict[int, str] = field(default_factory=dict)
    subtrees: dict[int, str] = field(default_factory=dict)
    hotlists: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """Whether the query names any (a query naming none needs no check)."""
        return bool(self.components or self.subtrees or self.hotlists)


def references_of(query: v1.StructuredQuery) -> QueryReferences:
    """The components and hotlists ``query``'s terms name, under ANDs, ORs and NOTs alike."""
    found = QueryReferences()
    if query.filter is None:
        return found
    for term, where in _terms(query.filter, "query.filter"):
        if term.field is F.HOTLIST:
            ids = found.hotlists
        elif term.field is F.COMPONENT:
            ids = found.subtrees if term.include_subtree else found.components
        else:
            continue
        for i, value in enumerate(term.values):
            kind, raw = betterproto2.which_one_of(value, "kind")
            if kind == "integer" and isinstance(raw, int):
                ids.setdefault(raw, f"{where}.values[{i}]")
    return found


def _terms(node: v1.SearchNode, where: str) -> Iterator[tuple[v1.SearchTerm, str]]:
    """Every term under ``node`` with its path, in the order the query writes them."""
    stack = [(node, where)]
    while stack:
        current, path = stack.pop()
        kind, value = betterproto2.which_one_of(current, "kind")
        if kind in {"all_of", "any_of"} and isinstance(value, v1.SearchNodeList):
            stack.extend(
                (child, f"{path}.{kind}.nodes[{i}]")
                for i, child in reversed(list(enumerate(value.nodes)))
            )
        elif kind == "negate" and isinstance(value, v1.SearchNode):
            stack.append((value, f"{path}.negate"))
        elif kind == "term" and isinstance(value, v1.SearchTerm):
            yield value, f"{path}.term"


def seen_column(admin: str, viewers: str, user: str, first: int) -> str:
    """The expression of a page's ``refs_seen`` column: which references the caller may see.

    ``admin``, ``viewers`` and ``user`` are the placeholders of the caller's
    admin flag, principals and user id in the statement; the references
    are bound at ``$first`` and the two after it (:func:`seen_arguments`).
    """
    return _SEEN.format(
        admin=admin,
        viewers=viewers,
        user=user,
        components=f"${first}::bigint[]",
        subtrees=f"${first + 1}::bigint[]",
        hotlists=f"${first + 2}::bigint[]",
    )


def seen_arguments(refs: QueryReferences) -> list[list[int]]:
    """The arguments :func:`seen_column` binds, in its order."""
    return [list(refs.components), list(refs.subtrees), list(refs.hotlists)]


def refuse_unseen(refs: QueryReferences, seen: Sequence[str]) -> None:
    """Refuse a query naming a component or hotlist its caller may not see (or none at all).

    ``seen`` is the ``refs_seen`` column of the query's first page.

    Raises:
        InvalidArgument: the first such component in the query's order
            (else hotlist), at its path, the id in ``metadata``
            (``component`` or ``hotlist``).
    """
    found = set(seen)
    named = [
        ("component", refs.components, "component", ""),
        ("subtree", refs.subtrees, "component", ", nor one below it,"),
        ("hotlist", refs.hotlists, "hotlist", ""),
    ]
    for kind, ids, what, below in named:
        for ref, where in ids.items():
            if f"{kind}:{ref}" not in found:
                raise InvalidArgument(
                    f"{where}: there is no {what} {ref}{below} that you may view",
                    metadata={"field": where, what: str(ref)},
                )
