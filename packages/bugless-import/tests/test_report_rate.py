"""The run's rate in the report and the progress bar: singular for one, decimals when slow."""

from __future__ import annotations

import io

import pytest

from bugless_import.progress import Progress
from bugless_import.report import ImportReport, issue_rate


@pytest.mark.parametrize(
    ("count", "seconds", "shown"),
    [
        (1, 1.0, "1 issue/s"),
        (2, 2.0, "1 issue/s"),
        (2, 1.0, "2 issues/s"),
        (1, 2.5, "0.4 issues/s"),
        (3, 2.0, "1.5 issues/s"),
        (99, 10.0, "9.9 issues/s"),
        (1000, 8.0, "125 issues/s"),
        (0, 1.0, "0 issues/s"),
        (5, 0.0, "0 issues/s"),
    ],
)
def test_a_rate_reads_as_english(count: int, seconds: float, shown: str) -> None:
    assert issue_rate(count, seconds) == shown


def test_the_summary_of_one_issue_in_a_second_says_issue() -> None:
    report = ImportReport(source="trac", dry_run=False, created=1, seconds=1.0)
    assert "  1.0 s, 1 issue/s" in report.render().splitlines()


def test_a_slow_run_does_not_read_as_zero_a_second() -> None:
    report = ImportReport(source="jira", dry_run=False, created=2, extended=1, seconds=12.0)
    assert "  12.0 s, 0.2 issues/s" in report.render().splitlines()


def test_the_bar_uses_the_same_words() -> None:
    stream = io.StringIO()
    bar = Progress(1, "importing trac", stream)
    bar.advance()
    assert stream.getvalue().startswith(f"\rimporting trac [{'#' * 30}] 1/1 ")
    assert stream.getvalue().endswith(" issues/s"), "one issue in well under a second"
