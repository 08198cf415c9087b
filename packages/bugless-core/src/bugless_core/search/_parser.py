"""Turning query text into a :class:`~bugless_core.search.Query` tree.

A recursive-descent parser over the lexer's tokens::

    query   := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary+                  # juxtaposition is AND; sort: is lifted out
    unary   := "-" unary | primary
    primary := "(" or_expr ")" | word | "phrase" | name<op>value

``-`` binds tightest and ``OR`` loosest, as in Google Issue Tracker: ``a b OR c``
is ``(a b) OR c``. Parentheses group but are not kept: ``(a)`` is ``a``, while
``(a b) c`` stays nested so the printer can write back exactly what it got.

Nesting (parentheses plus negations) is limited to :data:`MAX_NESTING` so that
no query, however hostile, can exhaust the stack of the parser or of anything
that walks the tree afterwards.
"""

from __future__ import annotations

import dataclasses

from bugless_core.search._ast import (
    FOREIGN_OPERATORS,
    And,
    CustomFieldTerm,
    FieldTerm,
    Node,
    Not,
    Or,
    Query,
    SortSpec,
    Span,
    TextTerm,
    Value,
)
from bugless_core.search._error import QuerySyntaxError
from bugless_core.search._fields import (
    COMPARISONS,
    CUSTOM_FIELD_ALIASES,
    CUSTOM_FIELD_PREFIX,
    FIELD_NAMES,
    FIELD_SPECS,
    HAS,
    IS_STARRED,
    OPERATOR_SYMBOLS,
    SORT,
    SORT_NAMES,
    STATUS_CLASS_NAMES,
    SUBTREE_FIELDS,
    Field,
    FieldSpec,
    Operator,
    SortField,
    TextField,
    join_alternatives,
    nullable_field_names,
    ordered_field_names,
    suggest,
)
from bugless_core.search._lexer import Token, TokenKind, tokenize
from bugless_core.search._values import BadValue, read_value

#: How deeply parentheses and ``-`` may nest, together. Far beyond what a person
#: writes, and low enough that the ``SearchNode`` message (two protobuf levels per
#: group) stays under the usual decoder recursion limit of 100.
MAX_NESTING = 32

_NULL_WORDS = {"none": Operator.NONE, "any": Operator.ANY}


def parse_query(text: str) -> Query:
    """Parse a search query.

    An empty (or all-whitespace) query parses to ``Query(filter=None, sort=())``,
    which matches every issue.

    Raises:
        QuerySyntaxError: The text is not a valid query; the error carries the
            position and says what would have been accepted there.
    """
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.nesting = 0
        self.sort: tuple[SortSpec, ...] = ()
        self.sort_token: Token | None = None

    # --- token stream ---------------------------------------------------------

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, span: Span, problem: str) -> QuerySyntaxError:
        return QuerySyntaxError(self.text, span.start, span.end - span.start, problem)

    def enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(
                token.span,
                f"the query nests too deeply: at most {MAX_NESTING} levels of parentheses and '-'",
            )

    # --- grammar --------------------------------------------------------------

    def parse(self) -> Query:
        node = self.or_expr(grouped=False)
        extra = self.peek()
        if extra is not None:  # or_expr stops only at the end or at ')'
            raise self.error(extra.span, "unexpected ')': there is no '(' to close")
        return Query(node, self.sort, source=self.text)

    def or_expr(self, *, grouped: bool) -> Node | None:
        operands: list[Node] = []
        previous_or: Token | None = None
        while True:
            sort_before = self.sort_token
            node = self.and_expr(grouped=grouped)
            after = self.peek()
            beside_or = previous_or is not None or (
                after is not None and after.kind is TokenKind.OR
            )
            if node is not None:
                operands.append(node)
            elif beside_or and self.sort_token is not sort_before and self.sort_token is not None:
                raise self.error(
                    self.sort_token.span,
                    "sort: is not a term, so it cannot be one side of OR; put it next to the terms",
                )
            elif previous_or is not None:
                raise self.error(previous_or.span, "expected a term after 'OR'")
            elif after is not None and after.kind is TokenKind.OR:
                raise self.error(after.span, "expected a term before 'OR'")
            if after is None or after.kind is not TokenKind.OR:
                break
            previous_or = self.advance()
        if len(operands) <= 1:
            return operands[0] if operands else None
        return Or(tuple(operands), span=_cover(operands))

    def and_expr(self, *, grouped: bool) -> Node | None:
        children: list[Node] = []
        while (token := self.peek()) is not None and token.kind not in (
            TokenKind.OR,
            TokenKind.RPAREN,
        ):
            if token.kind is TokenKind.FIELD and token.text.lower() == SORT:
                if grouped:
                    raise self.error(
                        token.span,
                        "sort: applies to the whole query: put it outside the parentheses",
                    )
                self.take_sort(self.advance())
            else:
                children.append(self.unary())
        if len(children) <= 1:
            return children[0] if children else None
        return And(tuple(children), span=_cover(children))

    def unary(self) -> Node:
        token = self.peek()
        if token is None or token.kind is not TokenKind.NOT:
            return self.primary()
        self.advance()
        following = self.peek()
        if following is None or following.kind in (TokenKind.OR, TokenKind.RPAREN):
            raise self.error(token.span, "expected a term after '-'")
        if following.kind is TokenKind.FIELD and following.text.lower() == SORT:
            raise self.error(following.span, "sort: cannot be negated")
        self.enter(token)
        child = self.unary()
        self.nesting -= 1
        return Not(child, span=Span(token.span.start, _span_of(child).end))

    def primary(self) -> Node:
        token = self.advance()
        match token.kind:
            case TokenKind.LPAREN:
                return self.group(token)
            case TokenKind.WORD:
                instead = FOREIGN_OPERATORS.get(token.text)
                if instead is not None:
                    raise self.error(
                        token.span,
                        f"'{token.text}' is not an operator here: {instead} "
                        f'(to search for the word, quote it: "{token.text}")',
                    )
                return TextTerm(token.text, span=token.span)
            case TokenKind.PHRASE:
                if not token.text.strip():
                    raise self.error(token.span, "expected some text inside the quotes")
                return TextTerm(token.text, phrase=True, span=token.span)
            case TokenKind.FIELD:
                return self.field_term(token)
            case TokenKind.NOT | TokenKind.OR | TokenKind.RPAREN:  # pragma: no cover
                raise AssertionError(f"unary/and_expr never pass {token.kind} here")

    def group(self, opening: Token) -> Node:
        self.enter(opening)
        inner = self.or_expr(grouped=True)
        closing = self.peek()
        if closing is None:
            raise self.error(opening.span, "'(' is never closed: add a ')'")
        self.advance()
        if inner is None:
            raise self.error(
                Span(opening.span.start, closing.span.end), "expected a term inside '()'"
            )
        self.nesting -= 1
        # The group's span includes its parentheses, for highlighting.
        return dataclasses.replace(inner, span=Span(opening.span.start, closing.span.end))

    # --- sort: and has: -------------------------------------------------------

    def take_sort(self, token: Token) -> None:
        if self.sort_token is not None:
            column = self.sort_token.span.start + 1
            raise self.error(
                token.span, f"sort: may appear only once (it already did at column {column})"
            )
        if token.op not in (":", "="):
            raise self.error(token.op_span, "sort takes ':', as in sort:priority,-modified")
        self.sort_token = token
        specs: list[SortSpec] = []
        for raw, span in self.items(token):
            descending = raw.startswith("-")
            name = raw[1:] if descending else raw
            if not name:
                raise self.error(span, "expected a sort key after '-'")
            custom_id = self.custom_field_id(name, span)
            if custom_id:
                if any(s.custom_field_id == custom_id for s in specs):
                    raise self.error(span, f"sort key '{name}' is given twice")
                specs.append(SortSpec(SortField.CUSTOM, descending, custom_id, span=span))
                continue
            field = SORT_NAMES.get(name.lower())
            if field is None:
                hint = suggest(name, SORT_NAMES) or (
                    f"; expected {join_alternatives(SORT_NAMES, 'or')}"
                )
                raise self.error(span, f"unknown sort key '{name}'{hint}")
            if any(s.field is field for s in specs):
                raise self.error(span, f"sort key '{field.value}' is given twice")
            specs.append(SortSpec(field, descending, span=span))
        self.sort = tuple(specs)

    def has_term(self, token: Token) -> FieldTerm | CustomFieldTerm:
        if token.op not in (":", "="):
            raise self.error(token.op_span, "has takes ':', as in has:assignee")
        if token.quoted:
            if not token.value.strip():
                raise self.error(token.value_span, "expected a custom field name in the quotes")
            return self.custom_term(token, Operator.ANY, name=token.value.strip(), values=())
        name = token.value.lower()
        custom = self.custom_key(name, token.value_span)
        if custom is not None:
            field_id, field_name = custom
            return self.custom_term(token, Operator.ANY, field_id=field_id, name=field_name)
        target = FIELD_NAMES.get(name)
        if not isinstance(target, Field) or not FIELD_SPECS[target].nullable:
            fields = join_alternatives(nullable_field_names(), "and")
            hint = suggest(name, nullable_field_names()) or f"; it works for {fields}"
            what = "unknown field" if target is None else "has: does not apply to"
            raise self.error(token.value_span, f"{what} '{token.value}'{hint}")
        return FieldTerm(target, Operator.ANY, span=token.span)

    # --- field terms ----------------------------------------------------------

    def field_term(self, token: Token) -> Node:
        name = token.text.lower()
        if token.marked and FIELD_NAMES.get(name) not in SUBTREE_FIELDS:
            end = token.span.end
            raise self.error(
                Span(end - 1, end),
                "'+' (subtree) goes with componentid, component and parentid only",
            )
        if token.name_quoted:
            return self.custom_field_term(token, 0, token.text.strip())
        if name == HAS:
            return self.has_term(token)
        custom = self.custom_key(name, Span(token.span.start, token.op_span.start))
        if custom is not None:
            return self.custom_field_term(token, *custom)
        target = FIELD_NAMES.get(name)
        name_span = Span(token.span.start, token.op_span.start)
        if target is None:
            hint = suggest(name, [*FIELD_NAMES, HAS, SORT]) or (
                "; to search for the text itself, put it in double quotes"
            )
            raise self.error(name_span, f"unknown field '{token.text}'{hint}")
        op = OPERATOR_SYMBOLS[token.op]
        if isinstance(target, TextField):
            return self.text_field_term(token, target, op)
        spec = FIELD_SPECS[target]
        if op in COMPARISONS and not spec.ordered:
            fields = join_alternatives(ordered_field_names(), "and")
            raise self.error(
                token.op_span,
                f"'{token.text}' cannot be compared with '{token.op}': "
                f"only {fields} can; use ':' here",
            )
        items = self.items(token)
        null_op = self.null_operator(token, items, op, target)
        if null_op is not None:
            return FieldTerm(target, null_op, span=token.span)
        if op is not Operator.EQ and len(items) > 1:
            raise self.error(items[1][1], f"'{token.op}' compares with one value, not a list")
        subtree = token.marked
        if subtree:  # "Web UI"+: the value is what the quotes hold
            items = [(raw, Span(span.start, span.end - 1)) for raw, span in items]
        if target in SUBTREE_FIELDS and not token.quoted:
            items, subtree = self.subtree_marks(items)
        if subtree and op is not Operator.EQ:
            raise self.error(token.op_span, f"'+' (subtree) goes with ':', not '{token.op}'")
        if target is Field.STATUS and [raw.lower() for raw, _ in items] == [IS_STARRED]:
            target, items = Field.STARRED_BY, [("me", items[0][1])]
        if target is Field.STATUS:
            target = self.status_or_class(items)
        values: list[Value] = []
        for raw, span in items:
            try:
                values.append(read_value(target, _spec_for_reading(target), raw, span))
            except BadValue as exc:
                raise self.error(span, exc.problem) from None
        return FieldTerm(target, op, tuple(values), subtree, span=token.span)

    # --- custom fields ------------------------------------------------------

    def custom_field_id(self, name: str, span: Span) -> int:
        """The id in ``customfield<ID>``, or 0 when ``name`` is not of that form."""
        lowered = name.lower()
        if not lowered.startswith(CUSTOM_FIELD_PREFIX):
            return 0
        digits = lowered[len(CUSTOM_FIELD_PREFIX) :]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 18 or int(digits) == 0:
            raise self.error(
                span, f"expected {CUSTOM_FIELD_PREFIX}<ID> with a positive id, not '{name}'"
            )
        return int(digits)

    def custom_key(self, name: str, span: Span) -> tuple[int, str] | None:
        """(id, "") for ``customfield<ID>``, (0, name) for an alias; None otherwise."""
        field_id = self.custom_field_id(name, span)
        if field_id:
            return field_id, ""
        alias = CUSTOM_FIELD_ALIASES.get(name.lower())
        return (0, alias) if alias is not None else None

    def custom_term(
        self,
        token: Token,
        op: Operator,
        *,
        field_id: int = 0,
        name: str = "",
        values: tuple[str, ...] = (),
    ) -> CustomFieldTerm:
        try:
            return CustomFieldTerm(op, values, field_id, name, span=token.span)
        except ValueError as exc:
            raise self.error(token.span, str(exc)) from None

    def custom_field_term(self, token: Token, field_id: int, name: str) -> CustomFieldTerm:
        """``customfield12:a,b``, ``"Found In">=4``, ``foundin:none``."""
        if '"' in name or "\\" in name:
            raise self.error(token.span, "a quoted field name cannot hold quotes or backslashes")
        op = OPERATOR_SYMBOLS[token.op]
        items = self.items(token)
        nulls = [raw for raw, _ in items if raw.strip().lower() in _NULL_WORDS]
        if nulls and not token.quoted:
            if len(items) > 1 or op is not Operator.EQ:
                raise self.error(token.value_span, f"'{nulls[0].lower()}' stands alone, after ':'")
            null_op = _NULL_WORDS[nulls[0].strip().lower()]
            return self.custom_term(token, null_op, field_id=field_id, name=name)
        if op is not Operator.EQ and len(items) > 1:
            raise self.error(items[1][1], f"'{token.op}' compares with one value, not a list")
        values = []
        for raw, span in items:
            if not raw.strip() or '"' in raw or "\\" in raw:
                raise self.error(span, "expected a value (without quotes or backslashes)")
            if raw.strip().lower() in _NULL_WORDS:
                raise self.error(span, f"'{raw}' means no value: write it without quotes")
            values.append(raw.strip())
        return self.custom_term(token, op, field_id=field_id, name=name, values=tuple(values))

    def text_field_term(self, token: Token, field: TextField, op: Operator) -> TextTerm:
        if op is not Operator.EQ:
            fields = join_alternatives(ordered_field_names(), "and")
            raise self.error(
                token.op_span,
                f"'{token.text}' cannot be compared with '{token.op}': "
                f"only {fields} can; use ':' here",
            )
        if not token.value.strip():
            raise self.error(token.value_span, "expected some text inside the quotes")
        return TextTerm(token.value, phrase=token.quoted, field=field, span=token.span)

    def items(self, token: Token) -> list[tuple[str, Span]]:
        """The comma-separated items of a value, each with its span.

        A quoted value is one item, commas and all.
        """
        if token.quoted:
            if not token.value.strip():
                raise self.error(token.value_span, "expected a value inside the quotes")
            return [(token.value, token.value_span)]
        items: list[tuple[str, Span]] = []
        start = token.value_span.start
        for index, raw in enumerate(token.value.split(",")):
            if not raw:
                if index == 0:
                    raise self.error(Span(start, start + 1), "expected a value before ','")
                raise self.error(Span(start - 1, start), "expected a value after ','")
            items.append((raw, Span(start, start + len(raw))))
            start += len(raw) + 1
        return items

    def null_operator(
        self, token: Token, items: list[tuple[str, Span]], op: Operator, field: Field
    ) -> Operator | None:
        """ANY/NONE for ``field:any``/``field:none``, after checking they fit."""
        nulls = [(raw, span) for raw, span in items if raw.lower() in _NULL_WORDS]
        if not nulls:
            return None
        raw, span = nulls[0]
        if len(items) > 1:
            raise self.error(span, f"'{raw.lower()}' cannot be combined with other values")
        if op is not Operator.EQ:
            raise self.error(token.op_span, f"'{raw.lower()}' takes ':', not '{token.op}'")
        if not FIELD_SPECS[field].nullable:
            fields = join_alternatives(nullable_field_names(), "and")
            raise self.error(
                span,
                f"'{token.text}' always has a value, so '{raw.lower()}' does not apply; "
                f"it works for {fields}",
            )
        return _NULL_WORDS[raw.lower()]

    def subtree_marks(self, items: list[tuple[str, Span]]) -> tuple[list[tuple[str, Span]], bool]:
        """Strip the ``+`` of ``componentid:123+``; every item or none must have it."""
        marked = [raw.endswith("+") for raw, _ in items]
        for (raw, span), mark in zip(items, marked, strict=True):
            if mark != marked[0]:
                raise self.error(
                    span,
                    f"mark every component in the list with '+' (subtree) or none; "
                    f"split the list with OR to mix them ('{raw}')",
                )
        if not marked[0]:
            return items, False
        return [(raw[:-1], Span(span.start, span.end - 1)) for raw, span in items], True

    def status_or_class(self, items: list[tuple[str, Span]]) -> Field:
        """STATUS_CLASS for ``is:open``/``is:closed``; STATUS for status names."""
        classes = [raw.lower() in STATUS_CLASS_NAMES for raw, _ in items]
        for (raw, span), is_class in zip(items, classes, strict=True):
            if is_class != classes[0]:
                raise self.error(
                    span,
                    f"'open'/'closed' and status names cannot share a list ('{raw}'); "
                    "use OR between them",
                )
        return Field.STATUS_CLASS if classes[0] else Field.STATUS


def _spec_for_reading(field: Field) -> FieldSpec:
    """The spec values are read with; STATUS also suggests 'open'/'closed'."""
    spec = FIELD_SPECS[field]
    if field is Field.STATUS:
        return dataclasses.replace(spec, choices=spec.choices + STATUS_CLASS_NAMES)
    return spec


def _span_of(node: Node) -> Span:
    return node.span if node.span is not None else Span(0, 0)


def _cover(nodes: list[Node]) -> Span:
    return Span(_span_of(nodes[0]).start, _span_of(nodes[-1]).end)
