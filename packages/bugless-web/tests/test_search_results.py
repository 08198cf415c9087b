"""Sort links of a result table come from the query's tree, parsed once per page."""

from __future__ import annotations

from bugless_core.search import parse_query
from bugless_web import searching
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
