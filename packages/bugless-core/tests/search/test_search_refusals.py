"""refused_part: the part of a query's text a Model refusal names."""

from __future__ import annotations

import pytest

from bugless_core.search import parse_query, refused_part


@pytest.mark.parametrize(
    ("text", "metadata", "marked"),
    [
        ('is:open "Found In":4.2', {"custom_field": "found in"}, '"Found In":4.2'),
        ("is:open sort:customfield12", {"custom_field": "12"}, "customfield12"),
        ("p:p1 OR -c:12+,99+", {"component": "99"}, "99"),
        ('is:open component:"Web UI"+', {"component": "Web UI"}, '"Web UI"'),
        ("component:rocket>engine", {"component": "rocket>engine"}, "rocket>engine"),
        ("(h:7 OR h:8) is:open", {"hotlist": "8"}, "8"),
    ],
)
def test_the_part_a_refusal_names_is_found(
    text: str, metadata: dict[str, str], marked: str
) -> None:
    span = refused_part(parse_query(text), metadata)
    assert span is not None
    assert text[span.start : span.end] == marked


@pytest.mark.parametrize(
    ("text", "metadata"),
    [
        ("is:open c:12", {"component": "13"}),  # the structured part's, not the text's
        ("h:12", {"component": "12"}),  # a hotlist's id is no component's
        ("is:open", {"field": "query.filter"}),  # names no part
    ],
)
def test_a_refusal_naming_no_part_of_the_text_is_placed_nowhere(
    text: str, metadata: dict[str, str]
) -> None:
    assert refused_part(parse_query(text), metadata) is None
