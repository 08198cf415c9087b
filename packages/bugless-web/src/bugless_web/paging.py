"""Previous/next and page numbers over the Model's keyset page tokens.

The Model pages forward only: each answer carries the token of the next page
(a signed keyset position, see :mod:`bugless_core.page_tokens`), and no token
can be made for an earlier page. So the way back travels in the URL: next to
``page_token`` (this page's token, empty on page 1) a page link carries
``trail``, the tokens of the pages between page 1 and this one, packed
(JSON, zlib, base64url). Going back to page *k* is the same request with the
*k*-th token, a keyset read like any other, and page numbers are exact.

Nothing is signed here: the tokens inside are the Model's own, and a forged
one fails there with INVALID_ARGUMENT like a forged ``page_token``. At most
:data:`MAX_TRAIL` tokens are carried (the URL stays short); pages further
back than that are reached through page 1.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from bugless_core.errors import InvalidArgument

#: Earlier pages whose tokens a URL carries (older ones are dropped, not renumbered).
MAX_TRAIL = 20
#: Largest packed trail accepted (bytes of URL).
MAX_TRAIL_CHARS = 16_384
#: Page links shown either side of the current page.
PAGE_WINDOW = 2


@dataclass(frozen=True)
class PageLink:
    """One entry of the pager: a numbered page (or a gap), and how to get there."""

    number: int
    page_token: str = ""
    trail: str = ""
    current: bool = False
    gap: bool = False


@dataclass(frozen=True)
class PageTrail:
    """Where the shown page is: this page's token and those of the pages before it.

    Attributes:
        page_token: This page's Model token; empty for page 1.
        earlier: Tokens of pages ``skipped + 2`` up to this one (exclusive).
        skipped: Pages between page 1 and ``earlier[0]`` whose tokens were dropped.
    """

    page_token: str = ""
    earlier: tuple[str, ...] = ()
    skipped: int = 0

    @classmethod
    def from_params(cls, page_token: str, trail: str) -> PageTrail:
        """Read ``page_token`` and ``trail`` as a page link wrote them.

        Raises:
            InvalidArgument: ``trail`` is not one this site wrote.
        """
        if not page_token:
            return cls()
        if not trail:
            return cls(page_token=page_token)
        earlier, skipped = _unpack(trail)
        return cls(page_token=page_token, earlier=earlier, skipped=skipped)

    @property
    def number(self) -> int:
        """This page's number, from 1."""
        return 1 if not self.page_token else 2 + self.skipped + len(self.earlier)

    def _tokens(self) -> dict[int, str]:
        """Known tokens by page number (page 1's is empty)."""
        known = {1: ""}
        for offset, token in enumerate(self.earlier):
            known[2 + self.skipped + offset] = token
        known[self.number] = self.page_token
        return known

    def link(self, number: int) -> PageLink:
        """The link to page ``number`` (which must be this one or an earlier known one)."""
        tokens = self._tokens()
        before = [tokens[n] for n in sorted(tokens) if 1 < n < number]
        skipped = max(0, number - 2 - len(before))
        return PageLink(
            number=number,
            page_token=tokens[number],
            trail=_pack(tuple(before), skipped) if number > 2 else "",
            current=number == self.number,
        )

    def next_link(self, next_page_token: str) -> PageLink:
        """The link to the page after this one, given its token from the Model."""
        carried = (*self.earlier, self.page_token) if self.page_token else ()
        skipped = self.skipped
        if len(carried) > MAX_TRAIL:
            skipped += len(carried) - MAX_TRAIL
            carried = carried[-MAX_TRAIL:]
        return PageLink(
            number=self.number + 1,
            page_token=next_page_token,
            trail=_pack(carried, skipped) if carried else "",
        )

    def previous_link(self) -> PageLink | None:
        """The link to the page before this one, or None on page 1."""
        if self.number == 1:
            return None
        known = self._tokens()
        return self.link(self.number - 1) if self.number - 1 in known else self.link(1)

    def numbered(self, next_page_token: str) -> Iterator[PageLink]:
        """Page 1, a window of known pages around this one, and the next page."""
        known = self._tokens()
        wanted = {1, *(n for n in known if abs(n - self.number) <= PAGE_WINDOW)}
        previous = 0
        for number in sorted(wanted):
            if number - previous > 1:
                yield PageLink(number=number - 1, gap=True)
            yield self.link(number)
            previous = number
        if next_page_token:
            yield self.next_link(next_page_token)


def page_count(total: int, page_size: int) -> int:
    """How many pages ``total`` results make (at least 1)."""
    return max(1, math.ceil(total / page_size))


def _pack(tokens: tuple[str, ...], skipped: int) -> str:
    raw = json.dumps({"s": skipped, "t": list(tokens)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def _unpack(trail: str) -> tuple[tuple[str, ...], int]:
    problem = "trail: not a page trail written by this site; go back to page 1"
    if len(trail) > MAX_TRAIL_CHARS:
        raise InvalidArgument(problem)
    try:
        packed = base64.urlsafe_b64decode(trail + "=" * (-len(trail) % 4))
        inflate = zlib.decompressobj()
        # Bounded: a small trail must not inflate into a large allocation.
        raw = inflate.decompress(packed, MAX_TRAIL * 1024)
        if inflate.unconsumed_tail:
            raise InvalidArgument(problem)
        data = json.loads(raw)
    except (binascii.Error, ValueError, zlib.error):
        raise InvalidArgument(problem) from None
    if not isinstance(data, dict):
        raise InvalidArgument(problem)
    tokens, skipped = data.get("t"), data.get("s")
    if (
        not isinstance(tokens, list)
        or not all(isinstance(t, str) and t for t in tokens)
        or len(tokens) > MAX_TRAIL
        or not isinstance(skipped, int)
        or skipped < 0
    ):
        raise InvalidArgument(problem)
    return tuple(tokens), skipped
