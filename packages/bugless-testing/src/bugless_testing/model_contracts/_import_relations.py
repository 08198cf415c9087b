"""Contract: an imported history changes relations, naming issues by external or bugless id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    changes_by_field,
    eq,
    expect_error,
    get_issue,
    history,
    make_component,
    render_issue,
    replay,
    search_ids,
    unique,
)

#: The import identity: a global admin holding the import permission.
IMPORTER = v1.Caller(user_id="importer", admin=True, import_issues=True)
T0 = datetime(2020, 5, 6, 9, 0, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _relation(
    author: str, hours: float, comment: str = "", **relations: object
) -> v1.ImportedEntry:
    """One source item changing relations.

    ``parent=``/``duplicate_of=`` set the relation ("" clears it);
    ``blocking_add=[...]`` and the other lists are passed as given.
    """
    paths = [f"{name}_id" for name in ("parent", "duplicate_of") if name in relations]
    return v1.ImportedEntry(
        author=author,
        created_at=_at(hours),
        comment=comment,
        update_mask=FieldMask(paths=paths),
        **relations,  # type: ignore[arg-type]
    )


def _request(
    component_id: int, external_id: str, *items: v1.ImportedEntry, hours: float = 0
) -> v1.ImportIssueRequest:
    return v1.ImportIssueRequest(
        caller=IMPORTER,
        external_id=external_id,
        fields=v1.IssueFields(title=f"Imported {external_id}", component_id=component_id),
        reporter="src-reporter",
        created_at=_at(hours),
        history=list(items),
    )


async def _imported(
    model: v1.ModelStub, component_id: int, *items: v1.ImportedEntry, hours: float = 0
) -> tuple[str, v1.Issue]:
    external_id = f"trac:{unique('rel')}"
    response = await model.import_issue(_request(component_id, external_id, *items, hours=hours))
    assert response.issue is not None
    return external_id, response.issue


async def _assert_replays(model: v1.ModelStub, *issue_ids: int) -> None:
    """Each issue's history, replayed from nothing, gives the issue."""
    for issue_id in issue_ids:
        rendered = render_issue(await get_issue(model, issue_id))
        rendered.pop("hotlist_ids")
        state = replay(await history(model, issue_id))
        assert {k: state[k] for k in rendered} == rendered, issue_id


class ImportedRelationContract:
    """ImportIssue: relation changes in the history, resolved in the import's transaction."""

    async def test_relation_history_is_kept_entry_by_entry(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        epic_ref, epic = await _imported(model, component.id)
        old_ref, old = await _imported(model, component.id)
        blocker_ref, blocker = await _imported(model, component.id)
        _, issue = await _imported(
            model,
            component.id,
            _relation("src-dev", 1, "Part of the epic.", parent=epic_ref),
            _relation("src-dev", 2, blocked_by_add=[blocker_ref]),
            _relation("src-lead", 3, "Same as the old one.", duplicate_of=str(old.id)),
            _relation("src-dev", 4, parent="", blocked_by_remove=[blocker_ref]),
            _relation("src-lead", 5, duplicate_of=old_ref),  # already so: no entry
        )
        assert issue.version == 5
        assert issue.parent_id == 0
        assert issue.duplicate_of_id == old.id
        assert issue.blocked_by_ids == []
        entries = await history(model, issue.id)
        assert [(e.author, e.created_at) for e in entries[1:]] == [
            ("src-dev", _at(1)),
            ("src-dev", _at(2)),
            ("src-lead", _at(3)),
            ("src-dev", _at(4)),
        ]
        parent = changes_by_field(entries[1])["parent_id"]
        assert (parent.old_value, parent.new_value) == ("", str(epic.id))
        assert changes_by_field(entries[2])["blocked_by_ids"].added == [str(blocker.id)]
        duplicate = changes_by_field(entries[3])["duplicate_of_id"]
        assert (duplicate.old_value, duplicate.new_value) == ("", str(old.id))
        last = changes_by_field(entries[4])
        assert (last["parent_id"].old_value, last["parent_id"].new_value) == (str(epic.id), "")
        assert last["blocked_by_ids"].removed == [str(blocker.id)]
        await _assert_replays(model, issue.id, blocker.id)

    async def test_blocking_is_two_way_with_an_entry_on_the_other_issue(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        blocked_ref, blocked = await _imported(model, component.id)
        external_id, issue = await _imported(
            model, component.id, _relation("src-dev", 2, blocking_add=[blocked_ref])
        )
        assert issue.blocking_ids == [blocked.id]
        other = await get_issue(model, blocked.id)
        assert other.blocked_by_ids == [issue.id]
        assert other.version == blocked.version + 1
        caused = (await history(model, blocked.id))[-1]
        assert caused.caused_by_issue_id == issue.id
        assert caused.imported_from == external_id
        assert (caused.author, caused.created_at) == ("src-dev", _at(2))
        assert changes_by_field(caused)["blocked_by_ids"].added == [str(issue.id)]
        found = await search_ids(model, eq(v1.SearchField.BLOCKED_BY, issue.id))
        assert found == [blocked.id]
        await _assert_replays(model, issue.id, blocked.id)

    async def test_the_other_side_entry_keeps_that_issues_history_in_time_order(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        later = v1.ImportedEntry(author="src-x", created_at=_at(50), comment="much later")
        blocked_ref, blocked = await _imported(model, component.id, later)
        await _imported(model, component.id, _relation("src-dev", 2, blocking_add=[blocked_ref]))
        entries = await history(model, blocked.id)
        times = [e.created_at or T0 for e in entries]
        assert times == sorted(times)
        assert entries[-1].created_at == _at(50)
        assert entries[-1].author == "src-dev"

    async def test_the_other_side_entry_is_at_the_source_time_after_its_last_entry(
        self, model: v1.ModelStub
    ) -> None:
        """The other issue's source modification time may be later than its last entry."""
        component = await make_component(model)
        request = _request(component.id, f"trac:{unique('rel')}")
        request.modified_at = _at(40)
        blocked = await model.import_issue(request)
        assert blocked.issue is not None
        await _imported(
            model, component.id, _relation("src-dev", 2, blocking_add=[request.external_id])
        )
        caused = (await history(model, blocked.issue.id))[-1]
        assert caused.created_at == _at(2)
        assert (await get_issue(model, blocked.issue.id)).modified_at == _at(40)

    async def test_a_refresh_appends_relation_entries_and_then_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        external_id, issue = await _imported(model, component.id)
        epic_ref, epic = await _imported(model, component.id)
        request = _request(component.id, external_id, _relation("src-dev", 1, parent=epic_ref))
        first = await model.import_issue(request)
        assert first.issue is not None
        assert first.issue.id == issue.id
        assert (first.created, first.entries_written) == (False, 1)
        assert first.issue.parent_id == epic.id
        again = await model.import_issue(request)
        assert again.entries_written == 0
        assert again.issue is not None
        assert again.issue.version == first.issue.version

    async def test_a_reference_to_no_issue_is_refused_naming_the_entry(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        blocker_ref, blocker = await _imported(model, component.id)
        external_id = f"trac:{unique('rel')}"
        missing = f"trac:{unique('never')}"
        request = _request(
            component.id,
            external_id,
            _relation("src-dev", 1, blocked_by_add=[blocker_ref]),
            _relation("src-dev", 2, comment="dup", duplicate_of=missing),
        )
        await expect_error(
            model.import_issue(request), Status.INVALID_ARGUMENT, "history[1].duplicate_of", missing
        )
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []
        unchanged = await get_issue(model, blocker.id)
        assert (unchanged.version, unchanged.blocking_ids) == (blocker.version, [])

    async def test_a_bad_reference_on_a_refresh_changes_nothing(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        blocked_ref, blocked = await _imported(model, component.id)
        external_id, issue = await _imported(model, component.id)
        request = _request(
            component.id,
            external_id,
            _relation("src-dev", 1, "blocks it", blocking_add=[blocked_ref]),
            _relation("src-dev", 2, blocking_add=["999999999999"]),
        )
        await expect_error(
            model.import_issue(request), Status.INVALID_ARGUMENT, "history[1].blocking_add[0]"
        )
        assert (await get_issue(model, issue.id)).version == issue.version
        assert (await get_issue(model, blocked.id)).version == blocked.version

    async def test_malformed_and_self_references_are_refused(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = f"trac:{unique('rel')}"
        bad = [
            (_relation("a", 1, parent="ticket 12"), "history[0].parent"),
            (_relation("a", 1, blocking_add=["0"]), "history[0].blocking_add[0]"),
            (_relation("a", 1, parent=external_id), "its own parent"),
            (
                v1.ImportedEntry(author="a", created_at=_at(1), parent="7"),
                "update_mask does not name parent_id",
            ),
            (
                v1.ImportedEntry(
                    author="a",
                    created_at=_at(1),
                    fields=v1.IssueFields(parent_id=7),
                    update_mask=FieldMask(paths=["parent_id"]),
                ),
                "history[0].fields.parent_id",
            ),
            (
                _relation("a", 1, blocked_by_add=["7"], blocked_by_remove=["7"]),
                "history[0].blocked_by_remove",
            ),
        ]
        for entry, mention in bad:
            request = _request(component.id, external_id, entry)
            await expect_error(model.import_issue(request), Status.INVALID_ARGUMENT, mention)
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_a_parent_cycle_is_refused_on_a_refresh(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        parent_ref, parent = await _imported(model, component.id)
        child_ref, child = await _imported(
            model, component.id, _relation("src-dev", 1, parent=parent_ref)
        )
        assert child.parent_id == parent.id
        request = _request(component.id, parent_ref, _relation("src-dev", 2, parent=child_ref))
        await expect_error(
            model.import_issue(request), Status.FAILED_PRECONDITION, "history[0].parent"
        )
        assert (await get_issue(model, parent.id)).parent_id == 0

    async def test_a_refresh_that_only_clears_the_parent_clears_it(
        self, model: v1.ModelStub
    ) -> None:
        # The source removed the parent later: the new entry names no issue at all.
        component = await make_component(model)
        epic_ref, epic = await _imported(model, component.id)
        external_id = f"trac:{unique('rel')}"
        set_parent = _relation("src-dev", 1, parent=epic_ref)
        first = await model.import_issue(_request(component.id, external_id, set_parent))
        assert first.issue is not None
        assert first.issue.parent_id == epic.id
        cleared = _relation("src-dev", 2, "Not part of it after all.", parent="", duplicate_of="")
        again = await model.import_issue(_request(component.id, external_id, set_parent, cleared))
        assert again.issue is not None
        assert again.entries_written == 1
        assert (again.issue.parent_id, again.issue.duplicate_of_id) == (0, 0)
        last = changes_by_field((await history(model, first.issue.id))[-1])
        assert (last["parent_id"].old_value, last["parent_id"].new_value) == (str(epic.id), "")
        assert "duplicate_of_id" not in last
        await _assert_replays(model, first.issue.id)

    async def test_a_bugless_id_beyond_any_issue_id_is_refused_naming_the_entry(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        external_id = f"trac:{unique('rel')}"
        for reference in ("9223372036854775808", "9999999999999999999"):  # past int64
            request = _request(
                component.id, external_id, _relation("a", 1, blocking_add=[reference])
            )
            await expect_error(
                model.import_issue(request), Status.INVALID_ARGUMENT, "history[0].blocking_add[0]"
            )
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_relation_changes_left_out_are_a_change_of_their_entry_not_a_comment(
        self, model: v1.ModelStub
    ) -> None:
        """An importer that drops an entry's relation changes says why as a change of it.

        Not as its comment (as files not imported are): the issue counts no
        comment for it, and its author is no commenter by it. A blank reason
        is refused.
        """
        component = await make_component(model)
        why = "history[0].parent: a cycle of parents"
        left_out = v1.ImportedEntry(author="src-dev", created_at=_at(1), relations_not_imported=why)
        kept = _relation("src-dev", 2, "Linked.", relations_not_imported=why)
        _, issue = await _imported(model, component.id, left_out, kept)
        entries = await history(model, issue.id)
        assert [e.comment for e in entries[1:]] == ["", "Linked."]
        for entry in entries[1:]:
            assert [(c.field, c.field_name, list(c.added)) for c in entry.changes] == [
                ("relations_not_imported", "Source relation changes not imported", [why])
            ]
        # "Linked." alone (no description): the first entry is no comment.
        assert issue.comment_count == 1

        blank = v1.ImportedEntry(author="src-dev", created_at=_at(1), relations_not_imported=" ")
        await expect_error(
            model.import_issue(_request(component.id, f"trac:{unique('rel')}", blank)),
            Status.INVALID_ARGUMENT,
            "history[0].relations_not_imported",
        )
