"""Days in the caller's time zone: ``today`` and ``2026-01-31`` run midnight to midnight there."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from bugless_core.search import explain, parse_query, to_structured
from bugless_proto import v1

PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 3, 10)


def _times(text: str, zone: ZoneInfo | None = None) -> list[datetime]:
    """Every instant the structured query compares with, in order."""
    parsed = parse_query(text)
    query = (
        to_structured(parsed, me=None, users={}, today=TODAY)
        if zone is None
        else to_structured(parsed, me=None, users={}, today=TODAY, zone=zone)
    )
    found: list[datetime] = []

    def walk(node: v1.SearchNode) -> None:
        if node.term is not None:
            found.extend(v.time for v in node.term.values if v.time is not None)
        for group in (node.all_of, node.any_of):
            if group is not None:
                for child in group.nodes:
                    walk(child)
        if node.negate is not None:
            walk(node.negate)

    assert query.filter is not None
    walk(query.filter)
    return [t.astimezone(UTC) for t in found]


def test_relative_days_start_at_midnight_in_the_callers_zone() -> None:
    # Paris is UTC+1 in early March: its midnight is 23:00 UTC the day before.
    assert _times("created>today-7", PARIS) == [datetime(2026, 3, 2, 23, 0, tzinfo=UTC)]
    assert _times("modified<today", PARIS) == [datetime(2026, 3, 9, 23, 0, tzinfo=UTC)]


def test_without_a_zone_days_are_utc_days() -> None:
    assert _times("created>today-7") == [datetime(2026, 3, 3, tzinfo=UTC)]


def test_a_whole_day_across_a_daylight_saving_change_is_23_hours() -> None:
    start, end = _times("created:2026-03-29", PARIS)  # clocks go forward that night
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_an_instant_with_an_offset_ignores_the_zone() -> None:
    assert _times("created>2026-03-01T10:00:00Z", PARIS) == [
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    ]


def test_explain_names_the_zone_days_are_counted_in() -> None:
    text = explain(parse_query("created>today-7 modified:today"), zone_name="Europe/Paris")
    assert "7 days ago (Europe/Paris)" in text
    assert "today (Europe/Paris)" in text
    assert "(UTC)" in explain(parse_query("created>today"))
