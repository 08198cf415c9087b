r"""Splitting a query string into tokens, each with its position.

The lexer knows the shape of the language (parentheses, ``-``, ``OR``, quoted
phrases, bare words and ``name<op>value`` terms) but not its vocabulary: whether
``asignee`` is a field, or ``p9`` a priority, is the parser's business. Keeping
the split here means every token carries exact offsets for error messages.

Rules a reader of the printer must know, because the printer relies on them:

* whitespace, ``(`` and ``)`` end a word or value; ``"`` may only open a
  phrase or a quoted value, never appear inside a bare word;
* a word containing ``:``, ``=``, ``<`` or ``>`` is a field term, split at the
  first of them;
* ``-`` at the start of a token negates; inside a word it is just a character;
* inside quotes, ``\"`` is a quote and ``\\`` a backslash; any other
  backslash is literal (so Windows paths need no escaping);
* a quoted string followed at once by an operator is a field term whose
  name is quoted (``"Found In":4.2``, custom fields by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bugless_core.search._ast import DELIMITERS, OPERATOR_CHARS, OR_KEYWORD, Span
from bugless_core.search._error import QuerySyntaxError

#: Placeholder span for the FIELD-only attributes of other tokens.
_NOWHERE = Span(0, 0)


class TokenKind(Enum):
    """What a token is; see :class:`Token` for the attributes each kind uses."""

    LPAREN = "("
    RPAREN = ")"
    NOT = "-"
    OR = "OR"
    WORD = "word"
    PHRASE = "phrase"
    FIELD = "field"


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``span`` covers all of it (quotes and operator included).

    Attributes:
        kind: What it is.
        span: Where it is.
        text: WORD: the word; PHRASE: the unescaped phrase; FIELD: the name
            as typed (before the operator).
        op: FIELD: the operator as typed (``:``, ``=``, ``<``, ``<=``, ``>``, ``>=``).
        op_span: FIELD: where the operator is.
        value: FIELD: the value as typed, or unescaped if it was quoted.
        value_span: FIELD: where the value is (quotes included).
        quoted: FIELD: whether the value was in quotes.
        name_quoted: FIELD: whether the name was in quotes (``"Found In":4.2``).
        marked: FIELD: a quoted value's closing quote had a ``+`` right after
            it (``component:"Web UI"+``, the subtree of a name with a space).
    """

    kind: TokenKind
    span: Span
    text: str = ""
    op: str = ""
    op_span: Span = _NOWHERE
    value: str = ""
    value_span: Span = _NOWHERE
    quoted: bool = False
    name_quoted: bool = False
    marked: bool = False


def tokenize(query: str) -> list[Token]:
    """Split ``query`` into tokens.

    Raises:
        QuerySyntaxError: An unterminated quote, a quote inside a word, a
            missing space after a closing quote, a term with an operator but
            no field name, or one with no value.
    """
    return _Lexer(query).run()


class _Lexer:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens: list[Token] = []

    def error(self, start: int, end: int, problem: str) -> QuerySyntaxError:
        return QuerySyntaxError(self.query, start, end - start, problem)

    def run(self) -> list[Token]:
        query, pos = self.query, 0
        while pos < len(query):
            ch = query[pos]
            if ch.isspace():
                pos += 1
            elif ch in "()-":
                kind = {"(": TokenKind.LPAREN, ")": TokenKind.RPAREN, "-": TokenKind.NOT}[ch]
                self.tokens.append(Token(kind, Span(pos, pos + 1)))
                pos += 1
            elif ch == '"':
                text, end = self.quoted(pos, name=True)
                if end < len(query) and query[end] in OPERATOR_CHARS:
                    pos = self.field_term(pos, end, quoted_name=text)
                else:
                    self.tokens.append(Token(TokenKind.PHRASE, Span(pos, end), text=text))
                    pos = end
            else:
                pos = self.word(pos)
        return self.tokens

    def quoted(self, start: int, *, name: bool = False) -> tuple[str, int]:
        """Read the quoted string opening at ``start``; return it and its end.

        With ``name``, an operator may follow the closing quote (a quoted
        field name); otherwise a space or a parenthesis must, or a ``+``
        followed by one (left for the caller: the value's subtree mark).
        """
        query, pos, chars = self.query, start + 1, []
        while pos < len(query):
            ch = query[pos]
            if ch == "\\" and query[pos + 1 : pos + 2] in ('"', "\\"):
                chars.append(query[pos + 1])
                pos += 2
            elif ch == '"':
                end = pos + 1
                allowed = "()" + ("".join(OPERATOR_CHARS) if name else "")
                mark = not name and query[end : end + 1] == "+" and _ends_value(query, end + 1)
                if not mark and end < len(query) and not _ends_value(query, end, allowed):
                    raise self.error(end, end + 1, "expected a space after the closing '\"'")
                return "".join(chars), end
            else:
                chars.append(ch)
                pos += 1
        raise self.error(start, len(query), "unterminated quote: add a closing '\"'")

    def word(self, start: int) -> int:
        """Read a free word or a ``name<op>value`` term at ``start``; return its end."""
        query, pos = self.query, start
        while pos < len(query) and not _ends_word(query[pos]) and query[pos] not in OPERATOR_CHARS:
            pos += 1
        if pos < len(query) and query[pos] in OPERATOR_CHARS:
            return self.field_term(start, pos)
        if pos < len(query) and query[pos] == '"':
            raise self.error(
                pos,
                pos + 1,
                "unexpected '\"' inside a word: put a space before the phrase, "
                "or quote the whole text",
            )
        text = query[start:pos]
        kind = TokenKind.OR if text == OR_KEYWORD else TokenKind.WORD
        self.tokens.append(Token(kind, Span(start, pos), text=text))
        return pos

    def field_term(self, start: int, op_start: int, quoted_name: str | None = None) -> int:
        query = self.query
        name = query[start:op_start] if quoted_name is None else quoted_name
        op_end = op_start + 1
        if query[op_start] in "<>" and query[op_end : op_end + 1] == "=":
            op_end += 1
        op = query[op_start:op_end]
        if not name.strip():
            raise self.error(start, op_end, f"expected a field name before '{op}'")
        marked = False
        if query[op_end : op_end + 1] == '"':
            value, end = self.quoted(op_end)
            quoted = True
            if query[end : end + 1] == "+":
                marked, end = True, end + 1
        else:
            end = op_end
            while end < len(query) and not (query[end].isspace() or query[end] in "()"):
                if query[end] == '"':
                    raise self.error(
                        end, end + 1, "unexpected '\"' inside a value: quote the whole value"
                    )
                end += 1
            value, quoted = query[op_end:end], False
            if not value:
                raise self.error(op_end, op_end + 1, f"expected a value after '{name}{op}'")
        self.tokens.append(
            Token(
                TokenKind.FIELD,
                Span(start, end),
                text=name,
                op=op,
                op_span=Span(op_start, op_end),
                value=value,
                value_span=Span(op_end, end),
                quoted=quoted,
                name_quoted=quoted_name is not None,
                marked=marked,
            )
        )
        return end


def _ends_value(query: str, at: int, allowed: str = "()") -> bool:
    """Whether a value may end before ``query[at]``: the end, a space or one of ``allowed``."""
    return at >= len(query) or query[at].isspace() or query[at] in allowed


def _ends_word(ch: str) -> bool:
    return ch.isspace() or ch in DELIMITERS
