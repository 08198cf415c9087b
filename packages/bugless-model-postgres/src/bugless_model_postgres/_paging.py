"""How the backend's keyset-paged list calls read a page request and answer with a token.

The list calls live in several modules (:mod:`.backend`,
:mod:`._hotlist_calls`, :mod:`._search_calls`); each turns a
``PageRequest`` into a size and a position, binds its tokens to the caller
(so a token is refused for another caller or another list), fetches one row
more than the page to learn whether another page follows, and encodes the
last row's key as the next token. That rule has its home here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bugless_core import limits
from bugless_core.page_tokens import PageTokenCodec
from bugless_proto import v1

R = TypeVar("R")


def page_of(
    page: v1.PageRequest | None, default: int = limits.DEFAULT_PAGE_SIZE
) -> tuple[int, str]:
    """The page size asked for (``default`` when none) and the page token."""
    if page is None:
        return default, ""
    return page.page_size or default, page.page_token


def caller_key(caller: v1.Caller) -> list[Any]:
    """What a page token's fingerprint names of the caller (who sees what)."""
    return [caller.user_id, sorted(caller.groups), caller.admin]


@dataclass(frozen=True)
class KeysetPage:
    """One page of a list: its size, what its tokens are bound to, where it starts.

    Attributes:
        tokens: The backend's token codec.
        size: Rows on the page (fetch ``size + 1`` to learn whether more follow).
        fingerprint: What the tokens of this list are bound to.
        position: The key after which the page starts; ``None`` on the first page.
    """

    tokens: PageTokenCodec
    size: int
    fingerprint: str
    position: list[Any] | None

    @classmethod
    def of(cls, tokens: PageTokenCodec, page: v1.PageRequest | None, *binding: Any) -> KeysetPage:
        """The page ``page`` asks for, its token checked against ``binding``."""
        size, token = page_of(page)
        fingerprint = PageTokenCodec.fingerprint(*binding)
        position = tokens.decode(token, fingerprint) if token else None
        return cls(tokens, size, fingerprint, position)

    def after(self, first: int) -> int:
        """The single integer key the page starts after (``first`` on the first page)."""
        return int(self.position[0]) if self.position else first

    def cut(self, rows: Sequence[R]) -> tuple[list[R], bool]:
        """The page's rows of ``size + 1`` fetched, and whether another page follows."""
        return list(rows[: self.size]), len(rows) > self.size

    def next_token(self, rows: Sequence[R], more: bool, key: Callable[[R], list[Any]]) -> str:
        """The token of the page after ``rows`` (its last row's ``key``), or ``""``."""
        return self.tokens.encode(key(rows[-1]), self.fingerprint) if more and rows else ""
