"""What an issue read selects: a field a read mask leaves out costs no subquery.

The caller's star and mute are each a probe of another table per issue
read; a search page or a batch read whose mask names neither must not run
them (nor plan them), and a read without a mask runs both.
"""

from __future__ import annotations

from bugless_model_postgres._issue_projection import fetch_statement, projection

_PROBES = {"starred": "issue_stars", "muted": "issue_mutes"}


def test_a_mask_without_the_star_or_the_mute_reads_neither_table() -> None:
    for mask in (frozenset({"title"}), frozenset({"id", "status", "star_count"})):
        for slots in (1, 8, 0):
            statement = fetch_statement(mask, slots)
            assert "issue_stars" not in statement
            assert "issue_mutes" not in statement
            # The caller's id is still a parameter the statement uses.
            assert "$3" in statement


def test_a_mask_naming_one_reads_its_table_only() -> None:
    for name, table in _PROBES.items():
        statement = fetch_statement(frozenset({"title", name}), 1)
        assert table in statement
        (other,) = set(_PROBES.values()) - {table}
        assert other not in statement


def test_every_field_and_a_summary_read_both() -> None:
    for selected in (projection(frozenset()), projection(frozenset(), summary=True)):
        assert "issue_stars" in selected.starred
        assert "issue_mutes" in selected.muted
    statement = fetch_statement(frozenset(), 1)
    assert "issue_stars" in statement
    assert "issue_mutes" in statement
