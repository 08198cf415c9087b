"""Sort links of a result table come from the query's tree, parsed once per page; links are kept."""

from __future__ import annotations

from bugless_core.search import parse_query
from bugless_web import searching
from bugless_web.frontend import _quote_query
from bugless_web.paging import PageLink
from bugless_web.routes.search import _export_href, search_href
from bugless_web.searching import SORTABLE, SearchResults


def test_sort_links_toggle_the_direction_of_the_first_key() -> None:
    text = "is:open p<p2 sort:priority"
    results = SearchResults(query=text, parsed=parse_query(text))
    assert results.sort_link_query("priority") == "is:open priority<p2 sort:-priority"
    assert results.sort_link_query("modified") == "is:open priority<p2 sort:modified"
    assert results.sort_direction("priority") == "asc"
    assert results.sort_direction("modified") == ""


def test_every_header_link_is_written_from_the_one_tree_not_the_text() -> None:
    # The text is never read again: the tree parsed for the page decides.
    results = SearchResults(query="(unbalanced", parsed=parse_query("zebra"))
    links = {column: results.sort_link_query(column) for column in SORTABLE}
    assert links["title"] == "zebra sort:title"
    assert all(link.startswith("zebra sort:") for link in links.values())


def test_a_query_that_did_not_parse_links_to_itself() -> None:
    results = SearchResults(query="(unbalanced")
    assert results.sort_link_query("id") == "(unbalanced"
    assert results.sort == ()


def test_a_query_text_is_parsed_once_and_its_sort_links_made_once_per_process() -> None:
    # The same few queries fill most pages: the tree, and each header's link from it, are kept.
    text = "is:open zebra sort:-priority"
    tree = searching._parsed(text)
    assert searching._parsed(text) is tree
    first = SearchResults(query=text, parsed=tree).sort_link_query("priority")
    assert first == "is:open zebra sort:priority"
    assert SearchResults(query=text, parsed=tree).sort_link_query("priority") is first
    # Another tree of the same text (parsed elsewhere) gets its own, equal links.
    other = SearchResults(query=text, parsed=parse_query(text)).sort_link_query("priority")
    assert other == first


def test_a_lists_links_are_made_once_per_query_and_link() -> None:
    # The pager's, the export's and the headers' links: pure functions of the
    # query, kept per process rather than URL-encoded again on every page.
    first = search_href("is:open p<p2", ("id", "title"), 50, PageLink(number=2, page_token="t"))
    assert first == "/search?q=is%3Aopen+p%3Cp2&columns=id%2Ctitle&page_size=50&page_token=t"
    again = search_href("is:open p<p2", ("id", "title"), 50, PageLink(number=2, page_token="t"))
    assert again is first
    assert search_href("is:open p<p2", ("id",), 50, None) != first
    export = _export_href("a&b", ("id",))
    assert export == "/search.csv?q=a%26b&columns=id"
    assert _export_href("a&b", ("id",)) is export
    quoted = _quote_query("is:open sort:-priority")
    assert quoted == "is%3Aopen+sort%3A-priority"
    assert _quote_query("is:open sort:-priority") is quoted
