"""The states a query watch judges a change on are the issue as it was at each version.

``_watch_query.state_fields`` rebuilds the issue row at a version from the
current row and the history entries above it (the old values they record).
Whether a change made an issue leave a watched query rests on it, so this
holds it to the issue as ChangeIssue answered at each version, over a
sequence touching every column the entries record: each scalar field, cc,
both blocking lists (one of them changed by another issue's entry), the
hotlists, custom values of each shape (an integer, a text, a multi-valued
field: set, changed, cleared), the status going closed, open and closed
again (``closed_at``: each state's own), and the comment count (comments,
one edited, one redacted).
"""

from __future__ import annotations

import json
from typing import Any

from write_support import ADMIN, fresh_component

from bugless_core import custom_fields as cf
from bugless_core.deltas import issue_delta
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._custom_values import load_values, search_rows
from bugless_model_postgres._watch_query import _ENTRIES_FROM, state_fields
from bugless_proto import v1

#: The row columns the history records, as the Issue message names them.
_COLUMNS = (
    "title",
    "status",
    "priority",
    "severity",
    "type",
    "component_id",
    "assignee",
    "verifier",
    "parent_id",
    "duplicate_of_id",
    "cc",
    "blocking_ids",
    "blocked_by_ids",
    "hotlist_ids",
    "comment_count",
    "version",
    "modified_at",
)


def _as_row(issue: v1.Issue) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _COLUMNS:
        value = getattr(issue, name)
        row[name] = sorted(value) if isinstance(value, list) else value
    return row


def _custom(
    delta: v1.IssueDelta, fields: list[v1.CustomField], *set_to: tuple[str, ...]
) -> v1.IssueDelta:
    """``delta`` also setting each of ``fields`` to the values of ``set_to`` (``()`` clears)."""
    delta.custom_fields_set = [
        v1.CustomFieldValue(field_id=f.id, values=list(items))
        for f, items in zip(fields, set_to, strict=True)
    ]
    return delta


async def _changed(
    backend: PostgresBackend, issue: v1.Issue, delta: v1.IssueDelta, comment: str = ""
) -> v1.Issue:
    answer = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=delta,
            comment=comment,
        )
    )
    assert answer.issue is not None
    return answer.issue


async def test_each_version_rebuilt_from_the_history_is_the_issue_as_it_was(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    root = (await fresh_component(backend, "states")).id
    first = (await fresh_component(backend, "states", parent_id=root)).id
    second = (await fresh_component(backend, "states", parent_id=root)).id
    size, note, labels = [
        await backend.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=root, name=name, type=kind, options=options
            )
        )
        for name, kind, options in (
            ("Size", v1.CustomFieldType.INTEGER, []),
            ("Note", v1.CustomFieldType.TEXT, []),
            ("Labels", v1.CustomFieldType.ENUM_MULTI, ["ui", "db", "api"]),
        )
    ]
    defined = {f.id: f for f in (size, note, labels)}

    async def create(title: str) -> v1.Issue:
        return await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN, fields=v1.IssueFields(title=title, component_id=first)
            )
        )

    hotlists = [
        (await backend.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name=f"states {n}"))).id
        for n in range(2)
    ]
    parent, other, blocker = [await create(f"related {n}") for n in range(3)]
    issue = await create("as filed")
    seen = {issue.version: issue}
    issue = await _changed(backend, issue, v1.IssueDelta(), "first answer")
    seen[issue.version] = issue
    commented = issue.version
    for delta, comment in (
        (
            _custom(
                issue_delta(status=v1.Status.FIXED, assignee="alice", priority=v1.Priority.P0),
                [size, labels],
                ("5",),
                ("ui", "api"),
            ),
            "why",
        ),
        (issue_delta(cc_add=["bob", "carol"], blocking_add=[other.id], hotlist_add=hotlists), ""),
        (
            _custom(
                issue_delta(status=v1.Status.WONT_FIX_OBSOLETE, component_id=second, title="moved"),
                [size, note],
                ("50",),
                ("Hauptstraße",),
            ),
            "",
        ),
        (
            _custom(
                issue_delta(status=v1.Status.ASSIGNED, verifier="carol", parent_id=parent.id),
                [labels],
                ("db", "api"),
            ),
            "back",
        ),
        (
            _custom(
                issue_delta(
                    cc_remove=["bob"],
                    blocking_remove=[other.id],
                    hotlist_remove=hotlists[:1],
                    severity=v1.Severity.S0,
                ),
                [size, note],
                (),
                ("ÄPFEL",),
            ),
            "",
        ),
        (
            _custom(
                issue_delta(issue_type=v1.IssueType.FEATURE_REQUEST, duplicate_of_id=other.id),
                [labels],
                (),
            ),
            "",
        ),
    ):
        issue = await _changed(backend, issue, delta, comment)
        seen[issue.version] = issue
    # An edit adds no comment; a redacted comment stays counted.
    edited = await backend.edit_comment(
        v1.EditCommentRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=issue.version,
            entry_version=commented,
            comment="first answer, edited",
        )
    )
    assert edited.issue is not None
    redacted = await backend.redact(
        v1.RedactRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=edited.issue.version,
            target=v1.RedactionTarget.COMMENT,
            entry_version=commented,
        )
    )
    assert redacted.issue is not None
    issue = redacted.issue
    seen[issue.version] = issue
    # Another issue's change writes an entry on this one (blocked_by).
    await _changed(backend, blocker, issue_delta(blocking_add=[issue.id]))
    issue = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    seen[issue.version] = issue
    # Closed again: the states closed before the reopen keep their own time.
    issue = await _changed(backend, issue, issue_delta(status=v1.Status.FIXED))
    seen[issue.version] = issue
    assert len(seen) == 11
    assert issue.comment_count == 3

    async with backend._pool.acquire() as conn:
        current = await conn.fetchrow(
            "SELECT i.*, ARRAY(SELECT hi.hotlist_id FROM hotlist_items hi "
            "WHERE hi.issue_id = i.id) AS hotlist_ids FROM issues i WHERE i.id = $1",
            issue.id,
        )
        entries = await conn.fetch(_ENTRIES_FROM, [issue.id], [1], False, False)
        # What a watch with a closed: term reads for a state: its entries
        # on, and the status changes below them.
        from_state = {
            version: await conn.fetch(_ENTRIES_FROM, [issue.id], [version], False, True)
            for version in seen
        }
    assert current is not None
    for version, then in seen.items():
        fields = state_fields(current, entries, version)
        assert state_fields(current, from_state[version], version) == fields, version
        state = {name: current[name] for name in _COLUMNS} | fields
        state = {
            name: sorted(value) if isinstance(value, list) else value
            for name, value in state.items()
            if name in _COLUMNS
        }
        expected = _as_row(then)
        for name in ("status", "priority", "severity", "type"):
            expected[name] = int(expected[name])
        assert state == expected, f"version {version}"
        custom = fields.get("custom_fields", load_values(current["custom_fields"]))
        held = {int(k): sorted(cf.from_stored(v)) for k, v in custom.items()}
        assert held == {v.field_id: sorted(v.values) for v in then.custom_fields}, version
        rows = [tuple(r.values()) for r in fields["custom_rows"]]  # field_id, value, number, folded
        stored = {
            str(v.field_id): cf.to_stored(defined[v.field_id], v.values) for v in then.custom_fields
        }
        assert rows == search_rows(stored), version
        assert fields.get("closed_at", current["closed_at"]) == then.closed_at, version


async def test_a_closed_term_reads_the_older_entries_that_changed_the_status_only(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Many entries that leave the status alone are not read below the states.

    A watch with a ``closed:`` term judging a change of an issue with a long
    history read every entry of it (a bulk edit of a hundred such issues:
    all their entries, for each watcher); the closing time needs the status
    changes only. The states rebuilt from what is read are the same.
    """
    backend = bugless_model_backend
    component = (await fresh_component(backend, "long history")).id
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title="long", component_id=component)
        )
    )
    issue = await _changed(backend, issue, issue_delta(status=v1.Status.FIXED))
    closed_at = issue.closed_at
    for n in range(60):  # comments and other fields while closed: no status change
        delta = issue_delta(priority=v1.Priority.P1 if n % 2 else v1.Priority.P3)
        issue = await _changed(backend, issue, delta if n % 3 else v1.IssueDelta(), f"note {n}")
    issue = await _changed(backend, issue, issue_delta(status=v1.Status.ASSIGNED))
    reopen = issue.version
    issue = await _changed(backend, issue, issue_delta(title="retitled"))
    assert (reopen, issue.version) == (63, 64)

    # The reopen judged: its states are 62 and 63, the entries read from 62 on.
    async with backend._pool.acquire() as conn:
        current = await conn.fetchrow(
            "SELECT i.*, ARRAY(SELECT hi.hotlist_id FROM hotlist_items hi "
            "WHERE hi.issue_id = i.id) AS hotlist_ids FROM issues i WHERE i.id = $1",
            issue.id,
        )
        everything = await conn.fetch(_ENTRIES_FROM, [issue.id], [1], False, False)
        read = await conn.fetch(_ENTRIES_FROM, [issue.id], [reopen - 1], False, True)
        without_closed = await conn.fetch(_ENTRIES_FROM, [issue.id], [reopen - 1], False, False)
    assert current is not None
    assert len(everything) == 64
    # The states' entries on, the one that closed it and the creation (its
    # status set from none): not the 60 notes between.
    assert [row["version"] for row in read] == [64, 63, 62, 2, 1]
    assert [row["version"] for row in without_closed] == [64, 63, 62]
    for version in (reopen - 1, reopen):
        assert state_fields(current, read, version) == state_fields(current, everything, version)
    # Closed at version 2, reopened at 63: the state before keeps the closing time.
    assert state_fields(current, read, reopen - 1)["closed_at"] == closed_at


async def test_the_older_status_changes_are_read_through_their_partial_index(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The statement's status-change branch is one the index of migration 0030 can serve.

    A partial index serves only a statement whose condition implies its
    predicate (the planner proves it from the text: ``@>`` of the same
    jsonb); with scans of the table discouraged, the plan reads the
    entries below the states through ``issue_history_status_changes``,
    and the entries from the states on through the primary key, per issue.
    Were the two ``@>`` to drift apart, the plan would filter the primary
    key's range instead, reading every entry of each issue.
    """
    async with bugless_model_backend._pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + _ENTRIES_FROM, [1, 2], [5, 7], False, True
        )
    indexes = _index_names(json.loads(plan) if isinstance(plan, str) else plan)
    assert "issue_history_status_changes" in indexes
    assert "issue_history_pkey" in indexes


def _index_names(node: object) -> set[str]:
    """Every ``Index Name`` of an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(node, list):
        return set().union(*(_index_names(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["Index Name"]} if "Index Name" in node else set()
    for value in node.values():
        if isinstance(value, list | dict):
            found |= _index_names(value)
    return found
