"""Each figure of the run's report says what it counts: issues, history entries, files, people.

Before, one line mixed units with nothing to tell them apart: "imported: 3
new, 1 with newer history, ...; 40 entries written" (issues, then history
entries), "attachments: 4 on 1 issue", "files copied: 2 (300 bytes);
skipped: 1", "people matched to accounts: 2 by email", "source: 1 issues",
and an unmapped value's "3 times" counted issues for a label but every
mention for a status. The source's history entries leave out each issue's
creation, which the written count includes, so "2 history entries" stood next
to "history entries written: 4" with nothing to say why: both now say it.
The report of a dry run and of a real one are rendered whole and compared
line by line.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bugless_import.report import ImportReport, counted


@pytest.mark.parametrize(
    ("count", "one", "many", "shown"),
    [
        (1, "issue", "", "1 issue"),
        (0, "issue", "", "0 issues"),
        (2, "person", "people", "2 people"),
        (1, "history entry", "history entries", "1 history entry"),
        (7, "history entry", "history entries", "7 history entries"),
    ],
)
def test_a_count_carries_its_unit_in_the_right_number(
    count: int, one: str, many: str, shown: str
) -> None:
    assert counted(count, one, many) == shown


def test_every_figure_of_a_run_says_what_it_counts() -> None:
    report = ImportReport(
        source="trac", dry_run=False, issues=1, entries=40, comments=12, people=3,
        attachments=4, attachment_issues=1, attachment_bytes=2048, files_sent=2,
        bytes_sent=300, files_skipped=[("trac:1", "core.dump", "too large")],
        matched=Counter({"email": 1, "username": 1}),
        matches=[("ann", "ann", "email"), ("bob", "bob", "username")],
        placeholders=["zed@trac"], skipped=["#7: listed, then gone (404) when read"],
        unmapped=[("labels", "regression", 2), ("statuses", "closed/wontfix", 5)],
        created=1, extended=0, unchanged=0, done_before=2, entries_written=41, seconds=2.0,
    )  # fmt: skip
    assert report.render().splitlines() == [
        "bugless import trac",
        "  source: 1 issue, 40 history entries after creation (12 with a comment), 3 people",
        "  people matched to accounts: 2 people (1 by email, 1 by username)",
        "    ann -> ann (by email)",
        "    bob -> bob (by username)",
        "  placeholder accounts created or reused: 1",
        "    zed@trac",
        "  issues skipped, gone from the source while reading: 1",
        "    #7: listed, then gone (404) when read",
        "  attachments: 4 files on 1 issue, 2 KiB (2048 bytes)",
        "  files copied: 2 (300 bytes); files skipped: 1",
        "    trac:1: 'core.dump' not copied: too large",
        "  unmapped values (add them to the mapping file):",
        "    [labels] 'regression': on 2 issues",
        "    [statuses] 'closed/wontfix': 5 times in issues and their changes",
        "  issues imported: 1 new, 0 with newer history, 0 unchanged, 2 done in an earlier run"
        "; history entries written: 41 (1 creating a new issue, 40 after creation)",
        "  2.0 s, 0.5 issues/s",
    ]


def test_a_dry_run_counts_files_and_issues_by_name() -> None:
    report = ImportReport(
        source="redmine", dry_run=True, issues=2, entries=1, comments=0, people=1,
        attachments=1, attachment_issues=1, attachment_bytes=12,
        unmapped=[("priorities", "urgent", 1)],
    )  # fmt: skip
    assert report.render().splitlines() == [
        "bugless import redmine (dry run)",
        "  source: 2 issues, 1 history entry after creation (0 with a comment), 1 person",
        "  attachments: 1 file on 1 issue, 12 bytes would be copied",
        "  unmapped values (add them to the mapping file):",
        "    [priorities] 'urgent': 1 time in issues and their changes",
    ]
