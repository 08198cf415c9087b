"""The one error every problem with a query string becomes.

A query is typed by a person into a search box or a shell, so every error says
*where* it is (a 0-based offset and a length, which the web UI highlights and
:meth:`QuerySyntaxError.render_caret` draws) and *what* would have been
accepted there. Being an :class:`~bugless_core.errors.InvalidArgument`, it
reaches API callers as INVALID_ARGUMENT with the position in the ErrorInfo
metadata.
"""

from __future__ import annotations

import unicodedata

from bugless_core.errors import InvalidArgument


class QuerySyntaxError(InvalidArgument):
    """A query string that cannot be parsed, or whose terms cannot be resolved.

    Attributes:
        query: The query text the position refers to.
        position: 0-based character offset of the fault; may equal
            ``len(query)`` when something is missing at the end.
        length: How many characters the fault spans (at least 1).
        problem: The message without the column prefix, e.g.
            ``"expected a value after 'status:'"``.
    """

    default_reason = "QUERY_SYNTAX"

    def __init__(self, query: str, position: int, length: int, problem: str) -> None:
        position = min(max(position, 0), len(query))
        length = max(length, 1)
        super().__init__(
            f"at column {position + 1}: {problem}",
            metadata={"position": str(position), "length": str(length)},
        )
        self.query = query
        self.position = position
        self.length = length
        self.problem = problem

    def render_caret(self) -> str:
        """The query line holding the fault, and a line of carets under the fault.

        Only the line containing the position is shown (queries pasted from
        elsewhere may span lines); tabs and other invisible characters are shown
        as spaces and wide characters are counted as two columns, so the carets
        line up in a terminal with a monospace font.
        """
        text = self.query
        line_start = text.rfind("\n", 0, self.position) + 1
        line_end = text.find("\n", self.position)
        if line_end == -1:
            line_end = len(text)
        line = text[line_start:line_end]
        column = self.position - line_start
        fault = text[self.position : min(self.position + self.length, line_end)]
        indent = " " * sum(_width(ch) for ch in line[:column])
        carets = "^" * max(1, sum(_width(ch) for ch in fault))
        shown = "".join(ch if ch.isprintable() else " " for ch in line)
        return f"{shown}\n{indent}{carets}"


def _width(ch: str) -> int:
    """Terminal columns ``ch`` takes (0 for combining marks, 2 for wide)."""
    if not ch.isprintable():
        return 1
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
