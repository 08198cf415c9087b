"""From the parsed tree to the ``StructuredQuery`` the Model receives.

The Model never sees query text, usernames or relative dates (DESIGN §4): a
frontend parses, collects the usernames with :func:`user_terms`, resolves them
through the Authenticator in one batch call, and hands the answer to
:func:`to_structured`, which also pins ``me`` and ``today`` down. What reaches
the Model is therefore a pure function of the query, the caller and the day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

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
    Span,
    TextTerm,
    TextValue,
    TimestampValue,
    UserValue,
    Value,
    is_username,
    iter_nodes,
)
from bugless_core.search._error import QuerySyntaxError
from bugless_core.search._fields import ENUM_MEMBERS, Field, Operator, SortField, TextField
from bugless_core.search._parser import parse_query
from bugless_core.search._printer import format_query
from bugless_core.search.build import SearchScalar, all_of, any_of, negate, term
from bugless_core.search.enum_values import SearchEnum
from bugless_core.usernames import username_key
from bugless_proto import v1

_FIELDS: dict[Field | TextField, v1.SearchField] = {
    TextField.TEXT: v1.SearchField.TEXT,
    TextField.TITLE: v1.SearchField.TITLE,
    TextField.COMMENT: v1.SearchField.COMMENT,
    TextField.EXTERNAL_ID: v1.SearchField.EXTERNAL_ID,
    Field.ATTACHMENT: v1.SearchField.ATTACHMENT,
    Field.STATUS: v1.SearchField.STATUS,
    Field.STATUS_CLASS: v1.SearchField.STATUS_CLASS,
    Field.ASSIGNEE: v1.SearchField.ASSIGNEE,
    Field.REPORTER: v1.SearchField.REPORTER,
    Field.CC: v1.SearchField.CC,
    Field.VERIFIER: v1.SearchField.VERIFIER,
    Field.PRIORITY: v1.SearchField.PRIORITY,
    Field.SEVERITY: v1.SearchField.SEVERITY,
    Field.TYPE: v1.SearchField.TYPE,
    Field.COMPONENT: v1.SearchField.COMPONENT,
    # By name: text values, which the Model looks up (the frontends do not know components).
    Field.COMPONENT_NAME: v1.SearchField.COMPONENT,
    Field.HOTLIST: v1.SearchField.HOTLIST,
    Field.ID: v1.SearchField.ID,
    Field.BLOCKING: v1.SearchField.BLOCKING,
    Field.BLOCKED_BY: v1.SearchField.BLOCKED_BY,
    Field.PARENT: v1.SearchField.PARENT,
    Field.CANONICAL: v1.SearchField.CANONICAL,
    Field.CREATED: v1.SearchField.CREATED,
    Field.MODIFIED: v1.SearchField.MODIFIED,
    Field.CLOSED: v1.SearchField.CLOSED,
    Field.COMMENTER: v1.SearchField.COMMENTER,
    Field.MODIFIER: v1.SearchField.MODIFIER,
    Field.LAST_MODIFIER: v1.SearchField.LAST_MODIFIER,
    Field.LAST_COMMENTER: v1.SearchField.LAST_COMMENTER,
    Field.STARRED_BY: v1.SearchField.STARRED_BY,
    Field.STAR_COUNT: v1.SearchField.STAR_COUNT,
    Field.MENTION: v1.SearchField.MENTION,
}
_OPERATORS: dict[Operator, v1.SearchOperator] = {
    Operator.EQ: v1.SearchOperator.EQ,
    Operator.LT: v1.SearchOperator.LT,
    Operator.LE: v1.SearchOperator.LE,
    Operator.GT: v1.SearchOperator.GT,
    Operator.GE: v1.SearchOperator.GE,
    Operator.ANY: v1.SearchOperator.ANY,
    Operator.NONE: v1.SearchOperator.NONE,
}
_EQ = v1.SearchOperator.EQ
_SORT_FIELDS: dict[SortField, v1.SortField] = {
    SortField.ID: v1.SortField.ID,
    SortField.CREATED: v1.SortField.CREATED,
    SortField.MODIFIED: v1.SortField.MODIFIED,
    SortField.PRIORITY: v1.SortField.PRIORITY,
    SortField.SEVERITY: v1.SortField.SEVERITY,
    SortField.STATUS: v1.SortField.STATUS,
    SortField.TITLE: v1.SortField.TITLE,
    SortField.STARS: v1.SortField.STARS,
    SortField.CUSTOM: v1.SortField.CUSTOM,
}


def user_terms(query: Query) -> set[str]:
    """The usernames ``query`` mentions (``me`` excluded), to resolve in one batch.

    Values of custom field terms that could be usernames are included too:
    the frontend cannot know which custom fields hold people, so it resolves
    them all and the Model uses what it needs (an unknown name there is no
    error until the Model finds the field is a user field).
    """
    if query.filter is None:
        return set()
    names: set[str] = set()
    for node in iter_nodes(query.filter):
        if isinstance(node, FieldTerm):
            names |= {v.name for v in node.values if isinstance(v, UserValue) and not v.is_me}
        elif isinstance(node, CustomFieldTerm):
            names |= {v for v in node.values if is_username(v) and not _is_relative_day(v)}
    return names


def mentions_me(query: Query) -> bool:
    """Whether ``query`` has ``mention:me``: the caller's username is needed too."""
    if query.filter is None:
        return False
    return any(
        isinstance(node, FieldTerm)
        and node.field is Field.MENTION
        and any(isinstance(v, UserValue) and v.is_me for v in node.values)
        for node in iter_nodes(query.filter)
    )


def _is_relative_day(raw: str) -> bool:
    lowered = raw.lower()
    return lowered == "today" or (
        lowered.startswith("today-") and lowered[6:].isascii() and lowered[6:].isdigit()
    )


def required_user_terms(query: Query) -> set[str]:
    """The usernames of :func:`user_terms` that must resolve (not custom field values)."""
    if query.filter is None:
        return set()
    return {
        value.name
        for node in iter_nodes(query.filter)
        if isinstance(node, FieldTerm)
        for value in node.values
        if isinstance(value, UserValue) and not value.is_me
    }


def to_structured(
    query: Query,
    *,
    me: str | None,
    users: Mapping[str, str],
    today: date,
    zone: tzinfo = UTC,
    merged: Mapping[str, Sequence[str]] | None = None,
    me_name: str | None = None,
) -> v1.StructuredQuery:
    """Translate ``query`` for the Model, resolving everything caller-relative.

    Args:
        query: A parsed (or built) query.
        me: The signed-in user's opaque id, or None for an anonymous caller.
        users: Opaque ids by username, for (at least) :func:`user_terms`.
        today: The caller's today (in ``zone``); relative dates count back from it.
        zone: The caller's time zone: every day (``today-N`` or ``2026-01-31``)
            runs from midnight to midnight there. UTC unless the caller says.
        merged: For user ids in ``users``, the ids of the placeholders merged
            into them (``User.merged_user_ids``): a user term matches those
            too, so an imported issue of a merged placeholder is found by its
            new owner's name while its history keeps the placeholder's id.
        me_name: The signed-in user's username, for ``mention:me``: a
            mention is text (``@ann``), so mention terms carry username keys
            (:func:`~bugless_core.usernames.username_key`) where every other
            people term carries user ids.

    Date semantics: a comparison with a day compares with that day's midnight
    in ``zone`` (``created>today-7`` is "after midnight seven days ago");
    equality with a day matches the whole day, sent as ``>= midnight AND <
    next midnight`` (a day with a daylight-saving change is 23 or 25 hours).
    Times with an offset (``2026-01-31T10:00:00Z``) are instants, whatever the zone.

    Raises:
        QuerySyntaxError: ``me`` is used by an anonymous caller, a username is
            not in ``users``, or a relative date falls outside the calendar;
            positioned in ``query.source`` (or, for a tree built in code, in
            its :func:`format_query` text).
    """
    if isinstance(today, datetime):
        today = today.date()
    translator = _Translator(me, users, today, zone, merged or {}, me_name=me_name)
    try:
        return translator.query(query)
    except _Unresolved as exc:
        custom_span = exc.span_of_custom(query.source) if query.source is not None else None
        if custom_span is not None and query.source is not None:
            source, span = query.source, custom_span
        elif exc.custom is None and exc.span is not None and query.source is not None:
            source, span = query.source, exc.span
        else:
            # A tree built in code has no positions: point into its canonical text.
            source = format_query(query)
            span = exc.span_in(source)
        raise QuerySyntaxError(source, span.start, span.end - span.start, exc.problem) from None


class _Unresolved(Exception):
    """A value the caller's context cannot resolve; positioned by the caller.

    ``custom`` is the custom field term and the raw value at fault, for
    values of custom terms (whose span covers the whole term).
    """

    def __init__(
        self, problem: str, value: Value, custom: tuple[CustomFieldTerm, str] | None = None
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.value = value
        self.custom = custom
        self.span = value.span

    def span_in(self, source: str) -> Span:
        """Where the same value is in ``source``, found by reparsing it."""
        try:
            reparsed = parse_query(source)
        except QuerySyntaxError:  # pragma: no cover - format_query output always parses
            return Span(0, len(source))
        for node in iter_nodes(reparsed.filter) if reparsed.filter is not None else ():
            if isinstance(node, FieldTerm):
                for value in node.values:
                    if value == self.value and value.span is not None:
                        return value.span
            elif self.custom is not None and node == self.custom[0] and node.span is not None:
                found = _value_span(source, node.span, self.custom[1])
                if found is not None:
                    return found
        return Span(0, len(source))

    def span_of_custom(self, source: str) -> Span | None:
        """The raw value's place inside its custom term's own span, when it has one."""
        if self.custom is None or self.custom[0].span is None:
            return None
        return _value_span(source, self.custom[0].span, self.custom[1])


def _value_span(source: str, term: Span, raw: str) -> Span | None:
    """Where ``raw`` is written after the operator of the term at ``term``."""
    text = source[term.start : term.end]
    # After a quoted name's closing quote, else after the first operator.
    name_end = text.index('"', 1) + 1 if text.startswith('"') else 0
    ops = [i for i in (text.find(c, name_end) for c in ":=<>") if i >= 0]
    at = text.find(raw, min(ops) if ops else name_end)
    return None if at < 0 else Span(term.start + at, term.start + at + len(raw))


class _Translator:
    def __init__(
        self,
        me: str | None,
        users: Mapping[str, str],
        today: date,
        zone: tzinfo,
        merged: Mapping[str, Sequence[str]],
        *,
        me_name: str | None = None,
    ) -> None:
        self.me = me
        self.me_name = me_name
        self.users = users
        self.merged = merged
        self.today = today
        self.zone = zone

    def query(self, query: Query) -> v1.StructuredQuery:
        return v1.StructuredQuery(
            filter=None if query.filter is None else self.node(query.filter),
            order_by=[
                v1.SortKey(
                    field=_SORT_FIELDS[s.field],
                    descending=s.descending,
                    custom_field_id=s.custom_field_id,
                )
                for s in query.sort
            ],
        )

    def node(self, node: Node) -> v1.SearchNode:
        match node:
            case And(children=children):
                return all_of(*(self.node(c) for c in children))
            case Or(children=children):
                return any_of(*(self.node(c) for c in children))
            case Not(child=child):
                return negate(self.node(child))
            case TextTerm():
                return term(_FIELDS[node.field], _EQ, node.text, phrase=node.phrase)
            case FieldTerm():
                return self.field_term(node)
            case CustomFieldTerm():
                return self.custom_term(node)

    def custom_term(self, term: CustomFieldTerm) -> v1.SearchNode:
        """Values as typed, with ``me`` and ``today[-N]`` pinned down, and users resolved."""
        values: list[v1.SearchValue] = []
        resolved: list[str] = []
        for raw in term.values:
            lowered = raw.lower()
            if lowered == "me":
                if self.me is None:
                    raise _Unresolved("sign in to use 'me'", UserValue("me"), (term, raw))
                values.append(v1.SearchValue(text=self.me))
                resolved.append(self.me)
                continue
            if _is_relative_day(raw):
                days = lowered[len("today-") :] if "-" in lowered else "0"
                if len(days) <= 7:
                    try:
                        day = self.today - timedelta(days=int(days))
                    except OverflowError:
                        raise _Unresolved(
                            f"{raw} is before the year 1; use a smaller number",
                            UserValue("me"),
                            (term, raw),
                        ) from None
                    values.append(v1.SearchValue(text=day.isoformat()))
                    resolved.append("")
                    continue
            values.append(v1.SearchValue(text=raw))
            resolved.append(self.users.get(raw, ""))
        return v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.CUSTOM,
                op=_OPERATORS[term.op],
                values=values,
                custom_field_id=term.field_id,
                custom_field_name=term.name,
                resolved_users=resolved if any(resolved) else [],
            )
        )

    def field_term(self, term: FieldTerm) -> v1.SearchNode:
        field = _FIELDS[term.field]
        if term.field in (Field.CREATED, Field.MODIFIED, Field.CLOSED):
            return self.date_term(field, term)
        if term.field is Field.MENTION:
            return _term(field, term.op, *(self.mentioned(v) for v in term.values))
        values = [self.value(term.field, v) for v in term.values]
        # A named user's merged placeholders are more values of the same OR.
        values += [
            alias
            for v in term.values
            if isinstance(v, UserValue) and not v.is_me
            for alias in self.merged.get(self.users.get(v.name, ""), ())
            if alias not in values
        ]
        return _term(field, term.op, *values, include_subtree=term.include_subtree)

    def mentioned(self, value: Value) -> str:
        """The username key a mention term looks for (the user must exist).

        Mentions are kept by :func:`~bugless_core.usernames.username_key`
        (:mod:`bugless_core.mentions`), so ``mention:Ölaf``, ``mention:ölaf``
        and the decomposed spelling find the same issues.
        """
        if isinstance(value, UserValue) and value.is_me:
            if self.me is None:
                raise _Unresolved("sign in to use 'me'", value)
            if self.me_name is None:
                raise _Unresolved("'mention:me' needs your username; name yourself", value)
            return username_key(self.me_name)
        if isinstance(value, UserValue):
            if value.name not in self.users:
                raise _Unresolved(f"no user named '{value.name}'", value)
            return username_key(value.name)
        raise TypeError(f"not a user value: {value!r}")  # pragma: no cover - USER fields only

    def date_term(self, field: v1.SearchField, term: FieldTerm) -> v1.SearchNode:
        if term.op is not Operator.EQ:
            values = [_utc(self.instant(v)) for v in term.values]
            return _term(field, term.op, *values)
        # Equality with a day means the whole day; with an instant, that instant.
        nodes: list[v1.SearchNode] = []
        instants: list[datetime] = []
        for value in term.values:
            if isinstance(value, TimestampValue):
                instants.append(_utc(value.at))
                continue
            start = self.instant(value)
            ge = _term(field, Operator.GE, _utc(start))
            if start.date() == date.max:
                nodes.append(ge)
            else:
                # The next midnight on the zone's clock, not 24 hours on.
                next_day = _midnight(start.date() + timedelta(days=1), start.tzinfo or UTC)
                nodes.append(all_of(ge, _term(field, Operator.LT, _utc(next_day))))
        if instants:
            nodes.append(_term(field, Operator.EQ, *instants))
        return nodes[0] if len(nodes) == 1 else any_of(*nodes)

    def instant(self, value: Value) -> datetime:
        match value:
            case TimestampValue(at=at):
                return at
            case DateValue(day=day):
                return _midnight(day, self.zone)
            case RelativeDateValue(days_ago=days):
                try:
                    return _midnight(self.today - timedelta(days=days), self.zone)
                except OverflowError:
                    raise _Unresolved(
                        f"today-{days} is before the year 1; use a smaller number", value
                    ) from None
            case _:  # pragma: no cover - FieldTerm admits only dates here
                raise TypeError(f"not a date value: {value!r}")

    def value(self, field: Field, value: Value) -> SearchScalar | SearchEnum:
        match value:
            case UserValue(is_me=True):
                if self.me is None:
                    raise _Unresolved("sign in to use 'me'", value)
                return self.me
            case UserValue(name=name):
                user_id = self.users.get(name)
                if user_id is None:
                    raise _Unresolved(f"no user named '{name}'", value)
                return user_id
            case IntValue(value=number):
                return number
            case TextValue(text=text):
                return text
            case EnumValue(name=name):
                # Statuses and types as their proto members; status classes as
                # the proto documents them ("open").
                return name if field is Field.STATUS_CLASS else ENUM_MEMBERS[field][name]
            case _:  # pragma: no cover - dates go through date_term
                raise TypeError(f"unexpected value: {value!r}")


def _term(
    field: v1.SearchField,
    op: Operator,
    *values: SearchScalar | SearchEnum,
    include_subtree: bool = False,
) -> v1.SearchNode:
    return term(field, _OPERATORS[op], *values, include_subtree=include_subtree)


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)
