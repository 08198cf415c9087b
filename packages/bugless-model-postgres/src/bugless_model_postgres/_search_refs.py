"""The components and hotlists a search names: each must be one the caller may see.

Also the SQL of a component term (:func:`component_term`), where the naming
rule is used.

A component is named by id (``componentid:12``) or by name
(``component:Rocket``, a text value): its own name, or its path as the
caller is shown it (``Rocket>Engine``; ``…>Engine`` below a component they
may not view), compared as ``path_key`` folds names (:func:`name_key`,
:data:`NAMED`). A whole path through a component the caller may not view
names nothing, as a path of nothing does: were it to find the component
below, it would confirm the hidden name. A name names every component of
that name the caller may view (siblings' names differ, cousins' may not);
``+`` adds the components below each, as for an id. The name or path of a
component the caller may not view names nothing, with ``+`` too: finding the
ones below that they may view would confirm its name, which no answer shows
them. An id is no name: ``c:12+`` of a
component the caller may not view, with one below it they may, finds the
ones they may view (scripts name components so), and says nothing of 12's
name.

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
nothing, as anything else deleted under a reader does. A query watch, which
has no later page to ask for, is checked again while it runs
(:meth:`._watch.ChangeFeed.watch`): one gone from the caller's sight ends it
with the refusal a new watch would get.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import betterproto2

from bugless_core.errors import InvalidArgument
from bugless_core.search import did_you_mean
from bugless_model_postgres._components import path_key
from bugless_model_postgres._convert import Conn, principals_of
from bugless_model_postgres._visibility import (
    COMPONENT_VISIBLE,
    ELIDED,
    ELIDED_TYPED,
    HOTLIST_VISIBLE,
    SEEN_PATH,
    TYPED_PATH,
)
from bugless_proto import v1

F = v1.SearchField
#: Binds a value, returns its placeholder (``Params.add`` of the compiler).
Bind = Callable[[Any, str], str]

#: Component ``{c}`` is one key ``{k}`` names (:func:`name_key`) for the
#: caller (``{admin}``, ``{viewers}``): for a key with ``>``, a path as the
#: caller is shown it (:data:`._visibility.TYPED_PATH`: whole only when they
#: may view every component above, else shortened, ``…>Net``), else its own
#: name (the last of its path's names), as its ``path_key`` holds them
#: folded. Each arm is one an index serves, per key: the path through
#: ``components_path_key``, the own name through ``components_own_name_key``
#: (migration 0032), so a term naming a component reads the few components
#: of that name, not them all (``test_search_refs_plans``). No name holds
#: ``>``, so the path's split is its segments. Only a component the caller
#: may view is named: a hidden one's name is no name of theirs, and
#: ``component:Secret+`` finding the issues below it would confirm that
#: Secret exists. A ``str.format`` template.
NAMED = (
    "(((strpos({k}, '>') > 0 AND "
    + TYPED_PATH.replace("{principals}", "{viewers}")
    + ") OR (strpos({k}, '>') = 0 AND {c}.path_key[cardinality({c}.path_key)] = {k})) AND "
    + COMPONENT_VISIBLE.replace("{principals}", "{viewers}")
    + ")"
)


def _named(c: str, k: str) -> str:
    """:data:`NAMED` of component alias ``c`` and key ``k``, still a template of the caller."""
    return NAMED.replace("{c}", c).replace("{k}", k)


#: The caller may view component ``{c}`` (``{admin}``, ``{viewers}``: the
#: caller's admin flag and principals): the rule the search's rows use, so a
#: hidden id is refused exactly as a missing one (:mod:`._visibility`).
_VIEWS = COMPONENT_VISIBLE.replace("{principals}", "{viewers}")
#: The caller may see hotlist ``h``, likewise the rows' rule.
_HOTLIST_SEEN = HOTLIST_VISIBLE.replace("{h}", "h")
#: Of the ids or name keys at ``{values}``, those the caller may see, as
#: ``kind:value`` texts, one arm per kind of reference (``{user}``: the
#: caller's user id): a component they may view, a subtree with one they may
#: view (a component's own entries may open it below a parent they may not
#: view), a hotlist as ListHotlists shows them, a name (with the components
#: below it or not) naming one they may view (:data:`NAMED`: a hidden one's
#: name names nothing, with ``+`` too). Each arm with the type of its
#: values: an array of ids bound as one, or a name key bound each on its
#: own (:data:`_ONE_BY_ONE`).
_SEEN_ARMS: dict[str, tuple[str, str]] = {
    "component": (
        "ARRAY(SELECT 'component:' || c.id::text FROM components c "
        "WHERE c.id = ANY ({values}) AND " + _VIEWS.replace("{c}", "c") + ")",
        "bigint[]",
    ),
    "subtree": (
        "ARRAY(SELECT 'subtree:' || t.id::text FROM unnest({values}) AS t(id) "
        "WHERE EXISTS (SELECT 1 FROM components s WHERE s.path_ids @> ARRAY[t.id] AND "
        + _VIEWS.replace("{c}", "s")
        + "))",
        "bigint[]",
    ),
    "hotlist": (
        "ARRAY(SELECT 'hotlist:' || h.id::text FROM hotlists h "
        "WHERE h.id = ANY ({values}) AND " + _HOTLIST_SEEN + ")",
        "bigint[]",
    ),
    "name": (
        "ARRAY(SELECT 'name:' || n.key FROM unnest({values}) AS n(key) "
        "WHERE EXISTS (SELECT 1 FROM components nc WHERE " + _named("nc", "n.key") + "))",
        "text",
    ),
    "nametree": (
        "ARRAY(SELECT 'nametree:' || n.key FROM unnest({values}) AS n(key) "
        "WHERE EXISTS (SELECT 1 FROM components nc WHERE " + _named("nc", "n.key") + "))",
        "text",
    ),
}
#: The kinds whose values are bound one placeholder each, ``{values}``
#: being ``ARRAY[$7::text, $8::text]``: the planner then knows how many
#: rows the ``unnest`` gives (its length), in a prepared statement's
#: generic plan too. Over one array of unknown length it guessed 10, each a
#: lookup under :data:`NAMED` (the seen path of each component of that
#: name), so the generic plan of a page naming a component by name looked
#: dearer than the custom plans it could replace: the Model's prepared page
#: statement stayed on custom plans, planned at every run (~1.3 ms of a
#: ~3 ms first page at 100,000 issues, against ~1.2 ms all told on a
#: generic plan; bench/JOURNAL.md, "plan41"). A query names a handful of
#: components, so a statement per count of names is a handful too. Ids keep
#: one array: their arms cost little per id, and a script may name many.
_ONE_BY_ONE = frozenset({"name", "nametree"})
#: A ``refs_seen`` argument: an array of ids, or one name key.
SeenArgument = list[int] | str
#: Every component the caller may view ($1 admin, $2 principals), by its
#: path as they see it (:data:`._visibility.SEEN_PATH`): the names a refused
#: name is offered in its stead.
_VIEWED_PATHS = (
    "SELECT "
    + SEEN_PATH.format(c="c", admin="$1::boolean", principals="$2::text[]")
    + " AS path FROM components c WHERE "
    + _VIEWS.format(c="c", admin="$1::boolean", viewers="$2::text[]")
    + " ORDER BY c.path_key LIMIT 10000"
)


class UnseenName(Exception):
    """A component name no component the caller may view has (:func:`name_refusal` words it)."""

    def __init__(self, typed: str, where: str, *, subtree: bool) -> None:
        """The name as the query wrote it, where, and whether with the components below."""
        super().__init__(typed)
        self.typed = typed
        self.where = where
        self.subtree = subtree


def name_key(text: str) -> str:
    """What :data:`NAMED` compares: each name folded as ``path_key`` is, ``>`` between them.

    Spaces around each name are dropped (``Rocket > Engine``).
    """
    return ">".join(path_key(">".join(part.strip() for part in text.split(">"))))


@dataclass(frozen=True)
class QueryReferences:
    """The component and hotlist ids a query names, each with where it first does.

    Attributes:
        components: Component ids, to the path of the first value naming each.
        subtrees: Component ids with the components below them (``c:12+``), likewise.
        hotlists: Hotlist ids, likewise.
        names: Component names (:func:`name_key`), to the name as written
            and the path of the first value naming each.
        name_trees: Component names with the components below them, likewise.
        order: Each reference as ``(kind, id or name key)`` (kind
            ``component``, ``subtree``, ``hotlist``, ``name`` or
            ``nametree``, as ``refs_seen`` words them), in the order the
            query first names it: the first unseen one is the one refused.
    """

    components: dict[int, str] = field(default_factory=dict)
    subtrees: dict[int, str] = field(default_factory=dict)
    hotlists: dict[int, str] = field(default_factory=dict)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    name_trees: dict[str, tuple[str, str]] = field(default_factory=dict)
    order: list[tuple[str, int | str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether the query names any (a query naming none needs no check)."""
        return any((self.components, self.subtrees, self.hotlists, self.names, self.name_trees))


def references_of(query: v1.StructuredQuery) -> QueryReferences:
    """The components and hotlists ``query``'s terms name, under ANDs, ORs and NOTs alike."""
    found = QueryReferences()
    if query.filter is None:
        return found
    for term, where in _terms(query.filter, "query.filter"):
        if term.field is F.HOTLIST:
            id_kind, ids = "hotlist", found.hotlists
        elif term.field is F.COMPONENT and term.include_subtree:
            id_kind, ids = "subtree", found.subtrees
        elif term.field is F.COMPONENT:
            id_kind, ids = "component", found.components
        else:
            continue
        name_kind = "nametree" if term.include_subtree else "name"
        names = found.name_trees if term.include_subtree else found.names
        for i, value in enumerate(term.values):
            kind, raw = betterproto2.which_one_of(value, "kind")
            if kind == "integer" and isinstance(raw, int) and raw not in ids:
                ids[raw] = f"{where}.values[{i}]"
                found.order.append((id_kind, raw))
            elif kind == "text" and isinstance(raw, str) and name_key(raw) not in names:
                names[name_key(raw)] = (raw, f"{where}.values[{i}]")
                found.order.append((name_kind, name_key(raw)))
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


def seen_column(admin: str, viewers: str, user: str, first: int, refs: QueryReferences) -> str:
    """The expression of a page's ``refs_seen`` column: which of ``refs`` the caller may see.

    ``admin``, ``viewers`` and ``user`` are the placeholders of the caller's
    admin flag, principals and user id in the statement; the references
    are bound at ``$first`` and after it (:func:`seen_arguments`). Only the
    kinds ``refs`` holds have an arm: each arm is planned with the page
    (InitPlans of subqueries under the visibility rule), so the four arms a
    ``c:12+`` query has no use for cost it planning time, and their
    estimates kept its prepared statement on custom plans, planned at every
    run (bench/JOURNAL.md, "perf41"). A name's arm binds each name on its
    own for the same reason (:data:`_ONE_BY_ONE`).
    """
    arms = []
    n = first
    for kind, values in _seen_values(refs):
        sql, typed = _SEEN_ARMS[kind]
        if kind in _ONE_BY_ONE:
            held = [f"${n + i}::{typed}" for i in range(len(values))]
            placeholders, n = "ARRAY[" + ", ".join(held) + "]", n + len(values)
        else:
            placeholders, n = f"${n}::{typed}", n + 1
        arms.append(sql.format(admin=admin, viewers=viewers, user=user, values=placeholders))
    return "(" + " || ".join(arms) + ")" if arms else "ARRAY[]::text[]"


def seen_statement(refs: QueryReferences) -> str:
    """A statement of ``refs``' ``refs_seen`` alone: $1 admin, $2 principals, $3 user id.

    The caller's three are typed in a row of their own: an arm may use none
    of them (only the hotlists' reads the user id).
    """
    seen = seen_column("caller.admin", "caller.viewers", "caller.user_id", 4, refs)
    return (
        f"SELECT {seen} AS refs_seen "
        "FROM (SELECT $1::boolean AS admin, $2::text[] AS viewers, $3::text AS user_id) AS caller"
    )


def seen_arguments(refs: QueryReferences) -> list[SeenArgument]:
    """The arguments :func:`seen_column` of ``refs`` binds, in its order.

    An array of ids per kind of id, each name key on its own (:data:`_ONE_BY_ONE`).
    """
    out: list[SeenArgument] = []
    for kind, values in _seen_values(refs):
        if kind in _ONE_BY_ONE:
            out.extend(str(value) for value in values)
        else:
            out.append([int(value) for value in values])
    return out


def _seen_values(refs: QueryReferences) -> list[tuple[str, list[int] | list[str]]]:
    """The kinds of reference ``refs`` holds with their values, in :data:`_SEEN_ARMS`' order."""
    held: dict[str, list[int] | list[str]] = {
        "component": list(refs.components),
        "subtree": list(refs.subtrees),
        "hotlist": list(refs.hotlists),
        "name": list(refs.names),
        "nametree": list(refs.name_trees),
    }
    return [(kind, held[kind]) for kind in _SEEN_ARMS if held[kind]]


def refuse_unseen(refs: QueryReferences, seen: Sequence[str]) -> None:
    """Refuse a query naming a component or hotlist its caller may not see (or none at all).

    ``seen`` is the ``refs_seen`` column of the query's first page.

    Raises:
        InvalidArgument: the first such component or hotlist id in the
            query's order, at its path, the id in ``metadata``
            (``component`` or ``hotlist``).
        UnseenName: the first is a component name (:func:`name_refusal`
            words it, with the names the caller may mean).
    """
    found = set(seen)
    ids = {"component": refs.components, "subtree": refs.subtrees, "hotlist": refs.hotlists}
    names = {"name": refs.names, "nametree": refs.name_trees}
    for kind, ref in refs.order:
        if f"{kind}:{ref}" in found:
            continue
        if kind in names and isinstance(ref, str):
            typed, where = names[kind][ref]
            raise UnseenName(typed, where, subtree=kind == "nametree")
        if isinstance(ref, int):
            what = "hotlist" if kind == "hotlist" else "component"
            below = _BELOW if kind == "subtree" else ""
            where = ids[kind][ref]
            raise InvalidArgument(
                f"{where}: there is no {what} {ref}{below} that you may view",
                metadata={"field": where, what: str(ref)},
            )


_BELOW = ", nor one below it,"


async def name_refusal(conn: Conn, unseen: UnseenName, caller: v1.Caller) -> InvalidArgument:
    """The refusal of a name no component the caller may view has, with the ones it may mean.

    The close names are those of components the caller may view (their own
    names, or their paths for a path), each path as they are shown it
    (``…>Net`` below a component they may not view: the path that names it
    for them, :data:`NAMED`), so it offers nothing they may not see. What is
    offered depends on what they may view and what they typed, never on
    what exists beyond: a whole path through a component they may not view
    is refused in the words of a path of nothing.
    """
    paths = [
        row["path"] for row in await conn.fetch(_VIEWED_PATHS, caller.admin, principals_of(caller))
    ]
    offered = paths if ">" in unseen.typed else sorted({p.rsplit(">", 1)[-1] for p in paths})
    hint = did_you_mean(unseen.typed, offered)
    if unseen.typed.startswith(ELIDED):
        hint += ELIDED_TYPED
    below = _BELOW if unseen.subtree else ""
    return InvalidArgument(
        f"{unseen.where}: there is no component named {unseen.typed!r}{below} "
        f"that you may view{hint}",
        metadata={"field": unseen.where, "component": unseen.typed},
    )


async def check_references(conn: Conn, query: v1.StructuredQuery, caller: v1.Caller) -> None:
    """Refuse ``query`` as a search's first page would (:func:`refuse_unseen`), in a statement.

    For a query watch, before its ``subscribed`` marker: a search checks in
    its page's own statement.

    Raises:
        InvalidArgument: see :func:`refuse_unseen` and :func:`name_refusal`.
    """
    refs = references_of(query)
    if not refs:
        return
    row = await conn.fetchrow(
        seen_statement(refs),
        caller.admin,
        principals_of(caller),
        caller.user_id,
        *seen_arguments(refs),
    )
    try:
        refuse_unseen(refs, row["refs_seen"] if row is not None else [])
    except UnseenName as unseen:
        raise await name_refusal(conn, unseen, caller) from None


def component_term(term: v1.SearchTerm, bind: Bind, column: str, admin: str, viewers: str) -> str:
    """SQL of a COMPONENT term on ``column``: ids, names, or both, each with its subtree or not.

    ``bind`` binds a value and returns its placeholder (``Params.add`` of the
    compiler); ``admin`` and ``viewers`` are the placeholders of the caller's
    admin flag and principals, which a path names a component by (the path
    they are shown, :data:`NAMED`). Ids compare directly; names are looked up
    in the statement, so a kept plan follows a rename.
    """
    values = [betterproto2.which_one_of(v, "kind")[1] for v in term.values]
    keys = [name_key(v) for v in values if isinstance(v, str)]
    if keys:
        named = _named("nc", "n.key").format(admin=admin, viewers=viewers)
        # Each key bound on its own: the planner knows how many (_ONE_BY_ONE).
        held = ", ".join(bind(key, "text") for key in keys)
        found = (
            f"ARRAY(SELECT nc.id FROM components nc, unnest(ARRAY[{held}]) AS n(key) WHERE {named})"
        )
        ids = [v for v in values if not isinstance(v, str)]
        if ids:
            found = f"({bind(ids, 'bigint[]')} || {found})"
        if term.include_subtree:
            found = f"ARRAY(SELECT sc.id FROM components sc WHERE sc.path_ids && {found})"
        return f"{column} = ANY ({found})"
    if term.include_subtree:
        # A list of ids (not a filter on the joined row) so the planner can
        # narrow the issues scan by component before joining.
        subtree = bind(values, "bigint[]")
        return (
            f"{column} = ANY (ARRAY(SELECT sc.id FROM components sc "
            f"WHERE sc.path_ids && {subtree}))"
        )
    return f"{column} = ANY ({bind(values, 'bigint[]')})"
