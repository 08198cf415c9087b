"""Contract: ImportIssue writes another tracker's issue with its people, times and history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    eq,
    expect_error,
    get_issue,
    history,
    make_component,
    make_hotlist,
    render_issue,
    replay,
    search_ids,
    unique,
    update_component,
    user_entry,
    within,
)

#: The import identity: a global admin holding the import permission.
IMPORTER = v1.Caller(user_id="importer", admin=True, import_issues=True)
T0 = datetime(2019, 3, 4, 10, 0, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _entry(author: str, hours: float, comment: str = "", **fields: object) -> v1.ImportedEntry:
    """One source history item: a comment and/or scalar field changes."""
    return v1.ImportedEntry(
        author=author,
        created_at=_at(hours),
        comment=comment,
        fields=v1.IssueFields(**fields),  # type: ignore[arg-type]
        update_mask=FieldMask(paths=list(fields)),
    )


def _request(
    component_id: int, external_id: str, *items: v1.ImportedEntry
) -> v1.ImportIssueRequest:
    return v1.ImportIssueRequest(
        caller=IMPORTER,
        external_id=external_id,
        fields=v1.IssueFields(title="Crash on start", component_id=component_id),
        reporter="src-reporter",
        description="It crashes when started.",
        cc=["src-watcher"],
        created_at=T0,
        history=list(items),
    )


def _external_id() -> str:
    return f"trac:{unique('ticket')}"


def _source_history() -> list[v1.ImportedEntry]:
    return [
        _entry("src-dev", 1, "I can reproduce it.", assignee="src-dev"),
        _entry("src-dev", 2, "", status=v1.Status.ACCEPTED, priority=v1.Priority.P1),
        _entry("src-reporter", 5, "Still happens on 1.2."),
        _entry("src-dev", 30, "Fixed in r123.", status=v1.Status.FIXED),
    ]


class ImportContract:
    """ImportIssue: original reporter, times and history; idempotent; admin-import only."""

    async def test_an_import_keeps_people_times_and_every_entry(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = _external_id()
        response = await model.import_issue(_request(component.id, external_id, *_source_history()))
        issue = response.issue
        assert issue is not None
        assert response.created
        assert response.entries_written == 5
        assert issue.external_id == external_id
        assert issue.reporter == "src-reporter"
        assert issue.assignee == "src-dev"
        assert issue.status is v1.Status.FIXED
        assert issue.priority is v1.Priority.P1
        assert issue.cc == ["src-watcher"]
        assert issue.created_at == T0
        assert issue.modified_at == _at(30)
        assert issue.closed_at == _at(30)
        assert issue.version == 5
        assert issue.comment_count == 4
        entries = await history(model, issue.id)
        assert [(e.author, e.created_at) for e in entries] == [
            ("src-reporter", T0),
            ("src-dev", _at(1)),
            ("src-dev", _at(2)),
            ("src-reporter", _at(5)),
            ("src-dev", _at(30)),
        ]
        assert [e.comment for e in entries] == [
            "It crashes when started.",
            "I can reproduce it.",
            "",
            "Still happens on 1.2.",
            "Fixed in r123.",
        ]
        assert {e.imported_from for e in entries} == {external_id}
        assert [c.field for c in entries[2].changes] == ["status", "priority"]
        assert (entries[2].changes[0].old_value, entries[2].changes[0].new_value) == (
            "NEW",
            "ACCEPTED",
        )
        state = replay(entries)
        rendered = render_issue(await get_issue(model, issue.id))
        assert {k: state[k] for k in rendered} == rendered

    async def test_the_external_reference_is_searchable(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = f"github:org/{unique('repo')}#56"
        response = await model.import_issue(_request(component.id, external_id))
        assert response.issue is not None
        found = await search_ids(
            model, within(component.id, eq(v1.SearchField.EXTERNAL_ID, external_id))
        )
        assert found == [response.issue.id]
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id + "0")) == []

    async def test_importing_again_writes_nothing(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        request = _request(component.id, _external_id(), *_source_history())
        first = await model.import_issue(request)
        again = await model.import_issue(request)
        assert first.issue is not None
        assert again.issue is not None
        assert not again.created
        assert again.entries_written == 0
        assert again.issue.id == first.issue.id
        assert again.issue.version == first.issue.version
        assert again.issue.modified_at == first.issue.modified_at

    async def test_a_resumed_import_appends_only_newer_history(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = _external_id()
        items = _source_history()
        first = await model.import_issue(_request(component.id, external_id, *items[:2]))
        assert first.issue is not None
        assert first.issue.status is v1.Status.ACCEPTED
        assert first.issue.closed_at is None
        resumed = await model.import_issue(_request(component.id, external_id, *items))
        assert resumed.issue is not None
        assert not resumed.created
        assert resumed.entries_written == 2
        assert resumed.issue.id == first.issue.id
        assert resumed.issue.status is v1.Status.FIXED
        assert resumed.issue.closed_at == _at(30)
        entries = await history(model, first.issue.id)
        assert [e.created_at for e in entries] == [T0, _at(1), _at(2), _at(5), _at(30)]
        assert len({(e.author, e.created_at, e.comment) for e in entries}) == 5

    async def test_another_issue_under_the_same_external_id_is_refused(
        self, model: v1.ModelStub
    ) -> None:
        """A second source with the same ids (another Trac environment's ticket 12).

        Its issue was created at another time; before, it was taken for the
        imported one and its newer history appended to it.
        """
        component = await make_component(model)
        external_id = _external_id()
        first = await model.import_issue(_request(component.id, external_id, *_source_history()))
        assert first.issue is not None
        other = _request(component.id, external_id, *_source_history(), _entry("x", 40, "more"))
        other.created_at = T0 - timedelta(days=400)
        await expect_error(
            model.import_issue(other), Status.FAILED_PRECONDITION, f"is issue {first.issue.id}"
        )
        unchanged = await get_issue(model, first.issue.id)
        assert unchanged.version == first.issue.version

    async def test_an_item_that_changes_nothing_writes_no_entry(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        request = _request(
            component.id, _external_id(), _entry("src-dev", 1, "", priority=v1.Priority.P2)
        )
        response = await model.import_issue(request)
        assert response.issue is not None
        assert response.entries_written == 1
        again = await model.import_issue(request)
        assert again.entries_written == 0

    async def test_closed_time_from_the_source_wins(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        request = _request(component.id, _external_id())
        request.fields = v1.IssueFields(
            title="Closed at once", component_id=component.id, status=v1.Status.WONT_FIX_OBSOLETE
        )
        request.closed_at = _at(48)
        request.modified_at = _at(50)
        response = await model.import_issue(request)
        assert response.issue is not None
        assert response.issue.closed_at == _at(48)
        assert response.issue.modified_at == _at(50)

    async def test_only_an_admin_with_the_import_permission_may_import(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.ADMIN)])
        external_id = _external_id()
        for caller in (
            ALICE,
            ADMIN,
            v1.Caller(user_id="importer", import_issues=True),
        ):
            request = _request(component.id, external_id)
            request.caller = caller
            await expect_error(model.import_issue(request), Status.PERMISSION_DENIED, "import")
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_history_out_of_order_is_refused_and_nothing_written(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        external_id = _external_id()
        request = _request(
            component.id, external_id, _entry("a", 5, "later"), _entry("b", 4, "earlier")
        )
        await expect_error(
            model.import_issue(request), Status.INVALID_ARGUMENT, "history[1].created_at"
        )
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_bad_references_are_refused(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        for bad in ("", "no-source", "Trac:1", "trac: 1"):
            await expect_error(
                model.import_issue(_request(component.id, bad)),
                Status.INVALID_ARGUMENT,
                "external_id",
            )

    async def test_an_unknown_component_is_not_found(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = _external_id()
        request = _request(
            component.id, external_id, _entry("a", 1, "", component_id=8_999_999_999_999)
        )
        await expect_error(model.import_issue(request), Status.NOT_FOUND, "8999999999999")
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_an_archived_component_is_refused_by_its_path(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        shelf = await make_component(model, parent_id=top.id)
        await update_component(model, v1.Component(id=shelf.id, archived=True), "archived")
        external_id = _external_id()
        moved = _entry("a", 1, "", component_id=shelf.id)
        await expect_error(
            model.import_issue(_request(top.id, external_id, moved)),
            Status.FAILED_PRECONDITION,
            f"component {top.name}>{shelf.name} is archived",
        )
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_a_batch_answers_each_item_and_writes_the_good_ones(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        good, bad_order, bad_component, again = (_external_id() for _ in range(4))
        first = await model.import_issue(_request(component.id, again, *_source_history()))
        items = [
            _request(component.id, good, *_source_history()),
            _request(component.id, bad_order, _entry("a", 5, "later"), _entry("b", 4, "earlier")),
            _request(
                component.id, bad_component, _entry("a", 1, "", component_id=8_999_999_999_999)
            ),
            _request(component.id, again, *_source_history()),
        ]
        for item in items:
            item.caller = v1.Caller()  # the batch's caller stands for every item
        answer = await model.import_issues(v1.ImportIssuesRequest(caller=IMPORTER, issues=items))
        assert [r.external_id for r in answer.results] == [good, bad_order, bad_component, again]
        ok, order, unknown, repeated = answer.results
        assert (ok.code, ok.created, ok.entries_written) == (0, True, 5)
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, good)) == [ok.issue_id]
        assert len(await history(model, ok.issue_id)) == 5
        assert order.code == Status.INVALID_ARGUMENT.value
        assert "history[1].created_at" in order.message
        assert unknown.code == Status.NOT_FOUND.value
        assert (order.issue_id, unknown.issue_id) == (0, 0)
        for external_id in (bad_order, bad_component):
            assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []
        assert first.issue is not None
        assert (repeated.code, repeated.issue_id, repeated.created) == (0, first.issue.id, False)
        assert repeated.entries_written == 0, "idempotent in a batch too"

    async def test_a_batch_needs_the_import_permission_and_distinct_items(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        external_id = _external_id()
        item = _request(component.id, external_id)
        await expect_error(
            model.import_issues(v1.ImportIssuesRequest(caller=ADMIN, issues=[item])),
            Status.PERMISSION_DENIED,
            "import",
        )
        await expect_error(
            model.import_issues(v1.ImportIssuesRequest(caller=IMPORTER, issues=[item, item])),
            Status.INVALID_ARGUMENT,
            "repeated",
        )
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id)) == []

    async def test_description_edits_are_edits_of_entry_one(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        external_id = _external_id()
        edit = v1.ImportedEntry(
            author="src-dev", created_at=_at(2), comment="It crashes on start (1.2 only).",
            edits_description=True,
        )  # fmt: skip
        request = _request(component.id, external_id, _entry("src-dev", 1, "Seen."), edit)
        response = await model.import_issue(request)
        assert response.issue is not None
        issue = response.issue
        assert issue.description == "It crashes on start (1.2 only)."
        assert issue.comment_count == 2, "an edit is not a comment"
        entries = await history(model, issue.id)
        assert [(e.comment, e.edits_version) for e in entries] == [
            ("It crashes when started.", 0),
            ("Seen.", 0),
            ("It crashes on start (1.2 only).", 1),
        ]
        assert entries[0].edited_in_version == 3
        second = v1.ImportedEntry(
            author="src-reporter", created_at=_at(3), comment="Crashes on start.",
            edits_description=True,
        )  # fmt: skip
        request.history.append(second)
        resumed = await model.import_issue(request)
        assert resumed.entries_written == 1
        assert resumed.issue is not None
        assert resumed.issue.description == "Crashes on start."
        bad = _request(component.id, _external_id(), v1.ImportedEntry(
            author="a", created_at=_at(1), comment=" ", edits_description=True))  # fmt: skip
        await expect_error(model.import_issue(bad), Status.INVALID_ARGUMENT, "new text")

    async def test_label_changes_apply_only_when_appended_by_a_refresh(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        field = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=component.id, name=unique("Area"),
                type=v1.CustomFieldType.TEXT,
            )
        )  # fmt: skip
        old_hotlist = await make_hotlist(model, caller=IMPORTER)
        new_hotlist = await make_hotlist(model, caller=IMPORTER)
        external_id = _external_id()
        at_creation = v1.ImportedEntry(
            author="src-dev", created_at=_at(1), hotlist_add=[new_hotlist.id]
        )
        request = _request(component.id, external_id, at_creation)
        request.hotlist_ids = [old_hotlist.id]
        first = await model.import_issue(request)
        assert first.issue is not None
        assert list(first.issue.hotlist_ids) == [old_hotlist.id], "creation takes hotlist_ids"
        assert first.entries_written == 1
        request.history += [
            v1.ImportedEntry(
                author="src-dev", created_at=_at(2), hotlist_add=[new_hotlist.id],
                hotlist_remove=[old_hotlist.id],
                custom_fields=[v1.CustomFieldValue(field_id=field.id, values=["net"])],
            ),
            v1.ImportedEntry(  # already out: changes nothing
                author="src-qa", created_at=_at(3), hotlist_remove=[old_hotlist.id]
            ),
        ]  # fmt: skip
        refreshed = await model.import_issue(request)
        assert refreshed.entries_written == 1
        issue = await get_issue(model, first.issue.id)
        assert list(issue.hotlist_ids) == [new_hotlist.id]
        assert [(v.field_id, list(v.values)) for v in issue.custom_fields] == [(field.id, ["net"])]
        entries = await history(model, issue.id)
        assert (entries[-1].author, entries[-1].created_at) == ("src-dev", _at(2))
        changes = {c.field: c for c in entries[-1].changes}
        assert list(changes["hotlist_ids"].added) == [str(new_hotlist.id)]
        assert list(changes["hotlist_ids"].removed) == [str(old_hotlist.id)]
        assert [c.new_value for c in changes.values() if c.field_name == field.name] == ["net"]
        again = await model.import_issue(request)
        assert again.entries_written == 0

    async def test_replayed_custom_fields_are_changes_of_their_entries_at_creation(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        moved_to = await make_component(model, parent_id=root.id)
        area = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=root.id, name=unique("Area"),
                type=v1.CustomFieldType.TEXT,
            )
        )  # fmt: skip
        # Defined below the creation's component: it applies after the move only.
        team = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=moved_to.id, name=unique("Team"),
                type=v1.CustomFieldType.TEXT,
            )
        )  # fmt: skip
        request = _request(
            root.id,
            _external_id(),
            v1.ImportedEntry(
                author="src-dev", created_at=_at(1), comment="Networking, not storage.",
                custom_fields=[v1.CustomFieldValue(field_id=area.id, values=["net"])],
            ),
            v1.ImportedEntry(  # a value the issue has: changes nothing, writes nothing
                author="src-qa", created_at=_at(2),
                custom_fields=[v1.CustomFieldValue(field_id=area.id, values=["net"])],
            ),
            v1.ImportedEntry(  # a move and a field of the new component, together
                author="src-lead", created_at=_at(3),
                fields=v1.IssueFields(component_id=moved_to.id),
                update_mask=FieldMask(paths=["component_id"]),
                custom_fields=[v1.CustomFieldValue(field_id=team.id, values=["infra"])],
            ),
        )  # fmt: skip
        # custom_fields (the values now, for a Model that does not replay) is ignored.
        request.custom_fields = [v1.CustomFieldValue(field_id=area.id, values=["ignored"])]
        request.custom_fields_replayed = True
        request.initial_custom_fields = [v1.CustomFieldValue(field_id=area.id, values=["disk"])]
        created = await model.import_issue(request)
        assert created.issue is not None
        assert created.entries_written == 3
        values = {v.field_id: list(v.values) for v in created.issue.custom_fields}
        assert values == {area.id: ["net"], team.id: ["infra"]}
        entries = await history(model, created.issue.id)

        def custom(entry: v1.HistoryEntry) -> list[tuple[str, str, str]]:
            return [(c.field_name, c.old_value, c.new_value) for c in entry.changes if c.field_name]

        assert custom(entries[0]) == [(area.name, "", "disk")]
        assert [(e.author, e.created_at, custom(e)) for e in entries[1:]] == [
            ("src-dev", _at(1), [(area.name, "disk", "net")]),
            ("src-lead", _at(3), [(team.name, "", "infra")]),
        ]
        assert created.issue.modified_at == _at(3)

        unflagged = _request(root.id, _external_id())
        unflagged.initial_custom_fields = [v1.CustomFieldValue(field_id=area.id, values=["x"])]
        await expect_error(
            model.import_issue(unflagged), Status.INVALID_ARGUMENT, "custom_fields_replayed"
        )

    async def test_replayed_hotlists_are_changes_of_their_entries_at_creation(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        first = await make_hotlist(model, caller=IMPORTER)
        later = await make_hotlist(model, caller=IMPORTER)
        request = _request(
            component.id,
            _external_id(),
            v1.ImportedEntry(
                author="src-dev", created_at=_at(1), comment="Moved to the later list.",
                hotlist_add=[later.id], hotlist_remove=[first.id],
            ),
            v1.ImportedEntry(  # already off: changes nothing, writes nothing
                author="src-qa", created_at=_at(2), hotlist_remove=[first.id]
            ),
        )  # fmt: skip
        # hotlist_ids (the hotlists now, for a Model that does not replay) is ignored.
        request.hotlist_ids = [first.id, later.id]
        request.hotlists_replayed = True
        request.initial_hotlist_ids = [first.id]
        created = await model.import_issue(request)
        assert created.issue is not None
        assert created.entries_written == 2
        assert list(created.issue.hotlist_ids) == [later.id]
        entries = await history(model, created.issue.id)
        lists = [
            [(list(c.added), list(c.removed)) for c in e.changes if c.field == "hotlist_ids"]
            for e in entries
        ]
        assert lists == [[([str(first.id)], [])], [([str(later.id)], [str(first.id)])]]
        assert (entries[1].author, entries[1].created_at) == ("src-dev", _at(1))

        unflagged = _request(component.id, _external_id())
        unflagged.initial_hotlist_ids = [first.id]
        await expect_error(
            model.import_issue(unflagged), Status.INVALID_ARGUMENT, "hotlists_replayed"
        )

    async def test_a_hotlist_joined_and_left_within_the_history_must_exist_on_a_refresh_too(
        self, model: v1.ModelStub
    ) -> None:
        # Creation and refresh check hotlists alike: the ones the call joins
        # or leaves are locked and need edit rights; one the history joins
        # and leaves again is not changed, but its entries name it, so it
        # must exist, on a refresh as at creation.
        component = await make_component(model)
        kept = await make_hotlist(model, caller=IMPORTER)
        gone = await make_hotlist(model, caller=IMPORTER)
        await model.delete_hotlist(v1.DeleteHotlistRequest(caller=IMPORTER, hotlist_id=gone.id))

        def passing(hours: float, hotlist_id: int) -> list[v1.ImportedEntry]:
            return [
                v1.ImportedEntry(author="src-dev", created_at=_at(hours), hotlist_add=[hotlist_id]),
                v1.ImportedEntry(
                    author="src-qa", created_at=_at(hours + 1), hotlist_remove=[hotlist_id]
                ),
            ]

        refused = _request(component.id, _external_id(), *passing(1, gone.id))
        refused.hotlists_replayed = True
        await expect_error(model.import_issue(refused), Status.NOT_FOUND, f"hotlist {gone.id}")
        assert await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, refused.external_id)) == []

        request = _request(component.id, _external_id(), *passing(1, kept.id))
        request.hotlists_replayed = True
        created = await model.import_issue(request)
        assert created.issue is not None
        assert (list(created.issue.hotlist_ids), created.entries_written) == ([], 3)
        request.history += passing(3, gone.id)
        await expect_error(model.import_issue(request), Status.NOT_FOUND, f"hotlist {gone.id}")
        issue = await get_issue(model, created.issue.id)
        assert issue.version == created.issue.version, "a refused refresh writes nothing"
        request.history[2:] = passing(3, kept.id)
        refreshed = await model.import_issue(request)
        assert refreshed.entries_written == 2
        assert list((await get_issue(model, created.issue.id)).hotlist_ids) == []

    async def test_a_file_not_imported_is_a_change_of_its_entry_not_a_comment(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        left_out = v1.ImportedEntry(
            author="src-dev", created_at=_at(1),
            files_not_imported=[
                v1.NotImportedFile(name="core.dump", reason="too large", description="Dump"),
                v1.NotImportedFile(name="gone.txt", reason="unreadable in the source"),
            ],
        )  # fmt: skip
        request = _request(component.id, _external_id(), left_out, _entry("src-qa", 2, "Seen."))
        created = await model.import_issue(request)
        assert created.issue is not None
        # The description and "Seen.": the entry of the files is no comment.
        assert (created.entries_written, created.issue.comment_count) == (3, 2)
        entries = await history(model, created.issue.id)
        assert (entries[1].author, entries[1].comment) == ("src-dev", "")
        assert [(c.field, c.field_name, list(c.added)) for c in entries[1].changes] == [
            (
                "files_not_imported",
                "Source files not imported",
                ["core.dump (too large): Dump", "gone.txt (unreadable in the source)"],
            )
        ]

        for bad, named in (
            (v1.NotImportedFile(reason="unreadable"), "history[0].files_not_imported[0].name"),
            (v1.NotImportedFile(name="a.txt"), "history[0].files_not_imported[0].reason"),
        ):
            refused = _request(
                component.id, _external_id(),
                v1.ImportedEntry(author="src-dev", created_at=_at(1), files_not_imported=[bad]),
            )  # fmt: skip
            await expect_error(model.import_issue(refused), Status.INVALID_ARGUMENT, named)
