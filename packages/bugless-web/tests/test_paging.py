"""Page trails: every page link carries the Model token of the page it names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.errors import InvalidArgument
from bugless_web.paging import MAX_TRAIL, PageLink, PageTrail


def _walk(pages: int) -> list[PageTrail]:
    """The trails a person sees clicking Next from page 1 (page k's token is ``t<k>``)."""
    trails = [PageTrail()]
    for number in range(2, pages + 1):
        link = trails[-1].next_link(f"t{number}")
        trails.append(PageTrail.from_params(link.page_token, link.trail))
    return trails


def _token(number: int) -> str:
    return "" if number == 1 else f"t{number}"


@given(st.integers(min_value=1, max_value=MAX_TRAIL + 8))
def test_every_numbered_link_leads_to_its_page(pages: int) -> None:
    for number, trail in enumerate(_walk(pages), start=1):
        assert trail.number == number
        for link in trail.numbered(next_page_token=f"t{number + 1}"):
            if link.gap:
                continue
            assert link.page_token == _token(link.number)
            followed = PageTrail.from_params(link.page_token, link.trail)
            assert followed.number == link.number


@given(st.integers(min_value=2, max_value=MAX_TRAIL + 8))
def test_previous_goes_one_back_or_to_page_one_past_the_trail(pages: int) -> None:
    last = _walk(pages)[-1]
    previous = last.previous_link()
    assert isinstance(previous, PageLink)
    assert previous.number in (pages - 1, 1)
    assert previous.page_token == _token(previous.number)
    if pages - 1 <= MAX_TRAIL + 1:
        assert previous.number == pages - 1


def test_first_page_has_no_previous_and_links_next() -> None:
    first = PageTrail()
    assert first.previous_link() is None
    links = list(first.numbered("t2"))
    assert [(link.number, link.current) for link in links] == [(1, True), (2, False)]


@pytest.mark.parametrize("trail", ["%%%", "AAAA", "eJzLSM3JyQcABiwCFQ", "x" * 20_000])
def test_a_trail_this_site_did_not_write_is_refused(trail: str) -> None:
    with pytest.raises(InvalidArgument, match="not a page trail"):
        PageTrail.from_params("t9", trail)
