"""The help page's reference covers every field the parser knows, and its examples parse."""

from __future__ import annotations

from bugless_core.search import CustomFieldTerm, FieldTerm, Node, TextTerm, parse_query
from bugless_core.search._fields import FIELD_NAMES, SORT_NAMES, Field, TextField
from bugless_core.search.reference import example_queries, field_reference, sort_keys


def _fields(node: Node | None) -> set[Field | TextField | str]:
    match node:
        case None:
            return set()
        case FieldTerm():
            return {node.field}
        case TextTerm():
            return {node.field}
        case CustomFieldTerm():
            return {"custom"}
    children = getattr(node, "children", None) or (getattr(node, "child", None),)
    return set().union(*(_fields(c) for c in children))


def test_every_example_parses() -> None:
    for example in example_queries():
        parse_query(example)  # raises QuerySyntaxError with the position


def test_every_field_and_name_the_parser_takes_is_listed_with_an_example_using_it() -> None:
    """A field added to the vocabulary without an example fails here, not silently."""
    listed = field_reference()
    names = {name for entry in listed for name in entry.names}
    assert set(FIELD_NAMES) <= names
    used: set[Field | TextField | str] = set()
    for entry in listed:
        for example in entry.examples:
            used |= _fields(parse_query(example).filter)
    used |= _fields(parse_query("free words").filter)
    assert set(Field) | set(TextField) | {"custom"} <= used


def test_sort_keys_name_every_key_and_alias_the_parser_takes() -> None:
    shown = " ".join(sort_keys())
    for name in SORT_NAMES:
        assert name in shown
    assert "customfield<ID>" in shown
