"""The relation pass runs changes of different issues at once (``--concurrency``).

Before, it sent one change at a time: ~40-60 s per 10,000 issues, each
BatchChangeIssues waiting for the one before it. A Jira export whose groups
of sub-issues are tied together by blocking links (so some changes share an
issue and must wait, and some holders are read at a version another change
makes stale) is imported into the real Model over gRPC; every relation is
set, none twice, and a second run writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest
from import_support import MakeSettings
from relation_support import _issue, _jira_issue, _link

from bugless_import import run_import
from bugless_import.relations import Link, RelationSetter, _Member
from bugless_import.sources.jira import JiraImporter
from bugless_proto import v1

_BLOCKS = ("Blocks", "blocks", "is blocked by")


def _export(directory: Path) -> None:
    """Five groups of four issues, 2-4 sub-issues of 1; each group's 4 blocks the next's 2."""
    issues = []
    for group in range(5):
        first = group * 4 + 1
        issues.append(_jira_issue(f"CONC-{first}"))
        for n in range(first + 1, first + 4):
            last = n == first + 3 and group < 4
            links = [_link(*_BLOCKS, outward=f"CONC-{n + 2}")] if last else []
            issues.append(_jira_issue(f"CONC-{n}", parent={"key": f"CONC-{first}"},
                                      issuelinks=links))  # fmt: skip
    (directory / "search-0000.json").write_text(json.dumps({"issues": issues}), encoding="utf-8")


async def test_changes_of_different_issues_run_at_once_and_set_every_relation_once(
    tmp_path: Path,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_flight: list[frozenset[int]] = []
    most = 0
    shared: list[tuple[frozenset[int], frozenset[int]]] = []
    original: Callable[..., Awaitable[None]] = RelationSetter._change_together

    async def watched(
        self: RelationSetter, by_holder: Mapping[str, Sequence[Link]], members: Sequence[_Member]
    ) -> None:
        nonlocal most
        touched = frozenset(
            [issue.id for issue, _, _ in members]
            + [self.issue_ids[link.target] for _, _, sent in members for link in sent]
        )
        shared.extend((touched, other) for other in in_flight if touched & other)
        in_flight.append(touched)
        most = max(most, len(in_flight))
        try:
            await original(self, by_holder, members)
        finally:
            in_flight.remove(touched)

    monkeypatch.setattr(RelationSetter, "_change_together", watched)
    _export(tmp_path)
    report = await run_import(JiraImporter(str(tmp_path), {}), make_settings(concurrency=3))
    assert report.created == 20
    relations = report.relations
    assert relations is not None
    assert (relations.set, relations.present, relations.refused) == (15 + 4, 0, [])
    assert most == 3, "before, one change at a time"
    assert shared == [], "two changes on one issue ran at once"
    issues = [await _issue(model, f"jira:CONC-{n}") for n in range(1, 21)]
    for group in range(5):
        epic, *children = issues[group * 4 : group * 4 + 4]
        assert [c.parent_id for c in children] == [epic.id] * 3
        if group < 4:
            assert children[2].blocking_ids == [issues[group * 4 + 5].id]
    again = await run_import(JiraImporter(str(tmp_path), {}), make_settings(concurrency=3))
    assert again.relations is not None
    assert (again.relations.set, again.relations.present) == (0, 19)
