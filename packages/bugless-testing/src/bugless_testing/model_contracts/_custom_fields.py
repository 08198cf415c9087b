"""Contract: custom fields defined per component, their values, options and history.

The helpers here (``define``, ``values``, ``create``, ``custom_of``,
``custom_term``) are shared with the search contract in
``_custom_field_search``, other contracts and backends' own tests.
"""

from __future__ import annotations

from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    expect_error,
    expect_stale_version,
    fresh_caller,
    get_issue,
    history,
    make_component,
    unique,
    update_component,
    user_entry,
)

T = v1.CustomFieldType


async def define(
    model: v1.ModelStub,
    component_id: int,
    field_type: v1.CustomFieldType,
    *,
    name: str | None = None,
    options: tuple[str, ...] = (),
    required: bool = False,
    defaults: tuple[str, ...] = (),
    caller: v1.Caller = ADMIN,
) -> v1.CustomField:
    """Define a custom field on a component."""
    return await model.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=caller,
            component_id=component_id,
            name=name or unique("Field"),
            type=field_type,
            options=list(options),
            required=required,
            default_values=list(defaults),
        )
    )


def values(field_id: int, *items: str) -> v1.CustomFieldValue:
    """A value to set (no items: clear)."""
    return v1.CustomFieldValue(field_id=field_id, values=list(items))


async def create(model: v1.ModelStub, component_id: int, *custom: v1.CustomFieldValue) -> v1.Issue:
    """An issue with custom field values."""
    return await model.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title=unique("Issue"), component_id=component_id),
            custom_fields=list(custom),
        )
    )


def custom_of(issue: v1.Issue) -> dict[int, list[str]]:
    """An issue's custom values by field id."""
    return {v.field_id: list(v.values) for v in issue.custom_fields}


def custom_term(
    field: v1.CustomField | str, op: v1.SearchOperator, *raw: str, users: tuple[str, ...] = ()
) -> v1.SearchNode:
    """A CUSTOM term by field (id) or by name."""
    by_id = isinstance(field, v1.CustomField)
    return v1.SearchNode(
        term=v1.SearchTerm(
            field=v1.SearchField.CUSTOM,
            op=op,
            values=[v1.SearchValue(text=r) for r in raw],
            custom_field_id=field.id if isinstance(field, v1.CustomField) else 0,
            custom_field_name="" if by_id else str(field),
            resolved_users=list(users),
        )
    )


class CustomFieldContract:
    """Definitions inherit down the tree; values go through the versioned delta."""

    async def test_fields_apply_to_the_subtree(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        child = await make_component(model, parent_id=root.id)
        top = await define(model, root.id, T.TEXT)
        low = await define(model, child.id, T.INTEGER)
        listed = await model.list_custom_fields(
            v1.ListCustomFieldsRequest(caller=ALICE, component_id=child.id)
        )
        assert [f.id for f in listed.custom_fields] == [top.id, low.id]
        at_root = await model.list_custom_fields(
            v1.ListCustomFieldsRequest(caller=ALICE, component_id=root.id)
        )
        assert [f.id for f in at_root.custom_fields] == [top.id]
        issue = await create(model, root.id)
        # Named by the issue's component's path, which the caller sees (not its id).
        await expect_error(
            change(model, issue, v1.IssueDelta(custom_fields_set=[values(low.id, "3")])),
            Status.INVALID_ARGUMENT,
            f"custom field {low.id} does not apply to {root.path!r}, the issue's component",
        )

    async def test_all_visible_lists_the_fields_of_every_viewed_component_once_in_pages(
        self, model: v1.ModelStub
    ) -> None:
        viewer = fresh_caller("fields")
        stranger = fresh_caller("stranger")
        hidden = await make_component(model, acl=[user_entry(stranger.user_id, v1.Role.ADMIN)])
        # Viewed through its own entry: the hidden parent's field applies to it.
        seen = await make_component(
            model, parent_id=hidden.id, acl=[user_entry(viewer.user_id, v1.Role.VIEWER)]
        )
        other = await make_component(model, acl=[user_entry(stranger.user_id, v1.Role.ADMIN)])
        archived = await make_component(model, acl=[user_entry(viewer.user_id, v1.Role.VIEWER)])
        from_hidden = await define(model, hidden.id, T.TEXT)
        own = [await define(model, seen.id, T.TEXT) for _ in range(3)]
        unseen = await define(model, other.id, T.TEXT)
        shelved = await define(model, archived.id, T.INTEGER)
        archived.archived = True
        await update_component(model, archived, "archived", expected_version=archived.version)
        open_field = await define(model, (await make_component(model)).id, T.TEXT)

        listed: list[v1.CustomField] = []
        token, pages = "", 0
        while True:
            page = await model.list_custom_fields(
                v1.ListCustomFieldsRequest(
                    caller=viewer,
                    all_visible=True,
                    page=v1.PageRequest(page_size=2, page_token=token),
                )
            )
            assert len(page.custom_fields) <= 2
            listed += page.custom_fields
            pages += 1
            token = page.next_page_token
            if not token:
                break
        ids = [f.id for f in listed]
        assert ids == sorted(set(ids)), "each field once, by id"
        assert pages >= 3
        mine = {hidden.id, seen.id, other.id, archived.id}
        expected = {from_hidden.id, shelved.id, *(f.id for f in own)}
        assert {f.id for f in listed if f.component_id in mine} == expected
        assert unseen.id not in ids
        assert open_field.id in ids  # an open component is everyone's
        # The same definitions as the one-component answer gives.
        single = await model.list_custom_fields(
            v1.ListCustomFieldsRequest(caller=viewer, component_id=seen.id)
        )
        by_id = {f.id: f for f in listed}
        assert [by_id[f.id] for f in single.custom_fields] == list(single.custom_fields)

    async def test_all_visible_requests_are_checked(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        await expect_error(
            model.list_custom_fields(
                v1.ListCustomFieldsRequest(
                    caller=ALICE, component_id=component.id, all_visible=True
                )
            ),
            Status.INVALID_ARGUMENT,
            "component_id",
            "all_visible",
        )
        await expect_error(
            model.list_custom_fields(
                v1.ListCustomFieldsRequest(
                    caller=ALICE, component_id=component.id, page=v1.PageRequest(page_size=5)
                )
            ),
            Status.INVALID_ARGUMENT,
            "page",
        )
        for _ in range(2):
            await define(model, component.id, T.TEXT)
        first = await model.list_custom_fields(
            v1.ListCustomFieldsRequest(
                caller=ALICE, all_visible=True, page=v1.PageRequest(page_size=1)
            )
        )
        assert first.next_page_token
        await expect_error(
            model.list_custom_fields(
                v1.ListCustomFieldsRequest(
                    caller=BOB,
                    all_visible=True,
                    page=v1.PageRequest(page_size=1, page_token=first.next_page_token),
                )
            ),
            Status.INVALID_ARGUMENT,
            "page_token",
        )

    async def test_only_component_admins_define_fields(self, model: v1.ModelStub) -> None:
        component = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)])
        await expect_error(
            define(model, component.id, T.TEXT, caller=ALICE), Status.PERMISSION_DENIED, "admin"
        )
        name = unique("Same")
        await define(model, component.id, T.TEXT, name=name)
        child = await make_component(model, parent_id=component.id)
        await expect_error(
            define(model, child.id, T.TEXT, name=name.upper()), Status.ALREADY_EXISTS, "name"
        )

    async def test_bad_definitions_are_refused(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        await expect_error(define(model, component.id, T.ENUM), Status.INVALID_ARGUMENT, "options")
        await expect_error(
            define(model, component.id, T.TEXT, options=("a",)), Status.INVALID_ARGUMENT, "options"
        )
        await expect_error(
            define(model, component.id, T.INTEGER, defaults=("x",)),
            Status.INVALID_ARGUMENT,
            "default_values",
        )
        await expect_error(
            define(model, component.id, T.UNSPECIFIED), Status.INVALID_ARGUMENT, "type"
        )

    async def test_values_are_normalised_and_recorded_per_field(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        found_in = await define(model, component.id, T.ENUM, options=("4.1", "4.2"))
        tags = await define(model, component.id, T.ENUM_MULTI, options=("ui", "db", "net"))
        size = await define(model, component.id, T.INTEGER)
        due = await define(model, component.id, T.DATE)
        issue = await create(model, component.id, values(found_in.id, "4.2"))
        assert custom_of(issue) == {found_in.id: ["4.2"]}
        assert issue.custom_fields[0].name == found_in.name
        changed = await change(
            model,
            issue,
            v1.IssueDelta(
                custom_fields_set=[
                    values(tags.id, "NET", "ui"),
                    values(size.id, "0042"),
                    values(due.id, "2026-01-31"),
                    values(found_in.id),
                ]
            ),
        )
        assert custom_of(changed.issue) == {
            tags.id: ["ui", "net"],
            size.id: ["42"],
            due.id: ["2026-01-31"],
        }
        by_field = {c.field: c for c in changed.entry.changes}
        assert by_field[f"customfield{tags.id}"].added == ["ui", "net"]
        assert by_field[f"customfield{size.id}"].new_value == "42"
        assert by_field[f"customfield{found_in.id}"].old_value == "4.2"
        assert by_field[f"customfield{found_in.id}"].new_value == ""
        assert by_field[f"customfield{found_in.id}"].field_name == found_in.name
        assert custom_of(await get_issue(model, issue.id)) == custom_of(changed.issue)
        # Each change carries its field's type, in the entry returned and in history.
        types = {found_in.id: T.ENUM, tags.id: T.ENUM_MULTI, size.id: T.INTEGER, due.id: T.DATE}
        stored = (await history(model, issue.id))[-1]
        for entry in (changed.entry, stored):
            assert {c.field: c.field_type for c in entry.changes} == {
                f"customfield{fid}": kind for fid, kind in types.items()
            }
        first = (await history(model, issue.id))[0]
        assert all(c.field_type == T.UNSPECIFIED for c in first.changes if c.field == "title")

    async def test_bad_values_are_refused_and_change_nothing(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        level = await define(model, component.id, T.ENUM, options=("low", "high"))
        size = await define(model, component.id, T.INTEGER)
        issue = await create(model, component.id)
        for bad, mention in (
            (values(level.id, "medium"), "not an option"),
            (values(level.id, "low", "high"), "one value"),
            (values(size.id, "4.2"), "whole number"),
            (values(9_999_999_999, "x"), "does not apply"),
        ):
            await expect_error(
                change(model, issue, v1.IssueDelta(custom_fields_set=[bad])),
                Status.INVALID_ARGUMENT,
                mention,
            )
        assert (await get_issue(model, issue.id)).version == issue.version

    async def test_required_fields_take_defaults_and_cannot_be_cleared(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        stage = await define(
            model, component.id, T.ENUM, options=("new", "done"), required=True, defaults=("new",)
        )
        issue = await create(model, component.id)
        assert custom_of(issue) == {stage.id: ["new"]}
        first = (await history(model, issue.id))[0]
        assert f"customfield{stage.id}" in {c.field for c in first.changes}
        await expect_error(
            change(model, issue, v1.IssueDelta(custom_fields_set=[values(stage.id)])),
            Status.INVALID_ARGUMENT,
            "required",
        )
        strict = await make_component(model)
        await define(model, strict.id, T.TEXT, required=True)
        await expect_error(create(model, strict.id), Status.INVALID_ARGUMENT, "required")

    async def test_a_move_into_a_component_requiring_a_field_needs_its_value(
        self, model: v1.ModelStub
    ) -> None:
        """A live move, one by one or in a batch, is an edit made now: the field must get a value.

        An import's history may pass through such a component
        (``ImportedLabelContract``); a native change may not end in it
        without the value, and is refused with nothing written.
        """
        loose = await make_component(model)
        strict = await make_component(model)
        risk = await define(model, strict.id, T.TEXT, required=True)
        issue = await create(model, loose.id)
        moved = v1.IssueDelta(
            fields=v1.IssueFields(component_id=strict.id),
            update_mask=FieldMask(paths=["component_id"]),
        )
        await expect_error(change(model, issue, moved), Status.INVALID_ARGUMENT, "required")
        batch = await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=ALICE,
                issues=[v1.IssueVersion(issue_id=issue.id, expected_version=issue.version)],
                delta=moved,
            )
        )
        assert [(r.code, "required" in r.message) for r in batch.results] == [
            (Status.INVALID_ARGUMENT.value, True)
        ]
        kept = await get_issue(model, issue.id)
        assert (kept.component_id, kept.version) == (loose.id, issue.version)
        moved.custom_fields_set = [values(risk.id, "low")]
        done = await change(model, issue, moved)
        assert (done.issue.component_id, custom_of(done.issue)) == (strict.id, {risk.id: ["low"]})

    async def test_bulk_edits_set_custom_fields(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        flag = await define(model, component.id, T.TEXT)
        issues = [await create(model, component.id) for _ in range(3)]
        response = await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=ALICE,
                issues=[v1.IssueVersion(issue_id=i.id, expected_version=i.version) for i in issues],
                delta=v1.IssueDelta(custom_fields_set=[values(flag.id, "triaged")]),
                atomic=True,
            )
        )
        assert [custom_of(r.issue) for r in response.results if r.issue] == [
            {flag.id: ["triaged"]}
        ] * 3

    async def test_a_deleted_field_leaves_readable_history(self, model: v1.ModelStub) -> None:
        """The values go; the entries that set them stay, and no entry is added.

        A deletion changes the catalog, not the issues: the holders keep
        their version (no open edit of one fails as stale) and get no entry
        (no watcher or notification hears of each).
        """
        component = await make_component(model)
        gone = await define(model, component.id, T.TEXT)
        issue = await create(model, component.id, values(gone.id, "kept in history"))
        await model.delete_custom_field(v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=gone.id))
        after = await get_issue(model, issue.id)
        assert custom_of(after) == {}
        assert after.version == issue.version
        assert len(await history(model, issue.id)) == 1
        first = (await history(model, issue.id))[0]
        change_of_field = {c.field: c for c in first.changes}[f"customfield{gone.id}"]
        assert change_of_field.new_value == "kept in history"
        assert change_of_field.field_name == gone.name

    async def test_updates_check_the_version_and_options_in_use(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        level = await define(model, component.id, T.ENUM, options=("low", "high"))
        await create(model, component.id, values(level.id, "high"))
        renamed = await model.update_custom_field(
            v1.UpdateCustomFieldRequest(
                caller=ADMIN,
                custom_field=v1.CustomField(id=level.id, name=level.name + " renamed"),
                update_mask=FieldMask(paths=["name"]),
                expected_version=level.version,
            )
        )
        assert renamed.version == level.version + 1
        await expect_error(
            model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=level.id, options=["low"]),
                    update_mask=FieldMask(paths=["options"]),
                )
            ),
            Status.FAILED_PRECONDITION,
            "high",
        )
        await expect_stale_version(
            model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=level.id, description="x"),
                    update_mask=FieldMask(paths=["description"]),
                    expected_version=level.version,
                )
            ),
            renamed.version,
        )

    async def test_an_option_leaves_only_once_no_issue_holds_it(self, model: v1.ModelStub) -> None:
        """Removing an option never strands a value: refused while set, then gone for good.

        A multi-valued field counts an option held beside others; once the
        issue lets go of it the option may go, and setting it afterwards is
        refused by name, changing nothing (the same answer a write racing
        the removal gets once it has lost).
        """
        component = await make_component(model)
        labels = await define(model, component.id, T.ENUM_MULTI, options=("ui", "db", "api"))
        issue = await create(model, component.id, values(labels.id, "ui", "db"))

        async def keep(*options: str) -> v1.CustomField:
            return await model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=labels.id, options=list(options)),
                    update_mask=FieldMask(paths=["options"]),
                )
            )

        await expect_error(keep("ui", "api"), Status.FAILED_PRECONDITION, "'db'", "set on issues")
        issue = (
            await change(model, issue, v1.IssueDelta(custom_fields_set=[values(labels.id, "ui")]))
        ).issue
        assert (await keep("ui", "api")).options == ["ui", "api"]
        await expect_error(
            change(model, issue, v1.IssueDelta(custom_fields_set=[values(labels.id, "ui", "db")])),
            Status.INVALID_ARGUMENT,
            "'db' is not an option of",
            labels.name,
        )
        await expect_error(
            create(model, component.id, values(labels.id, "db")),
            Status.INVALID_ARGUMENT,
            "'db' is not an option of",
        )
        after = await get_issue(model, issue.id)
        assert after.version == issue.version
        assert custom_of(after) == {labels.id: ["ui"]}

    async def test_an_option_renamed_in_case_is_still_held(self, model: v1.ModelStub) -> None:
        """Options compare ignoring case: a value set as "High" holds the option renamed "high".

        Renaming only the case removes nothing (allowed while held) and
        carries the values to the new spelling, without a history entry or
        a new version (as a deletion of a field removes its values); the
        option still cannot be removed while an issue holds it.
        """
        component = await make_component(model)
        level = await define(model, component.id, T.ENUM, options=("Low", "High"))
        issue = await create(model, component.id, values(level.id, "High"))

        async def options(*names: str) -> v1.CustomField:
            return await model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=level.id, options=list(names)),
                    update_mask=FieldMask(paths=["options"]),
                )
            )

        assert (await options("Low", "high")).options == ["Low", "high"]
        after = await get_issue(model, issue.id)
        assert custom_of(after) == {level.id: ["high"]}
        assert after.version == issue.version
        await expect_error(options("Low"), Status.FAILED_PRECONDITION, "'high'", "set on issues")
        assert custom_of(await get_issue(model, issue.id)) == {level.id: ["high"]}
        entries = await history(model, issue.id)
        assert [c.new_value for c in entries[0].changes if c.field == f"customfield{level.id}"] == [
            "High"
        ]

    async def test_options_compare_by_unicode_case_folding(self, model: v1.ModelStub) -> None:
        """Beyond ASCII too, one rule says which options are the same: Unicode case folding.

        A value matches an option whose case folding (Python's ``str.casefold``)
        equals its own, and renaming an option to a spelling that folds the
        same removes nothing and carries the values to the new spelling. So
        the value stored before such a rename still holds the option:
        "Straße" holds "STRASSE" (both fold to "strasse", though "ß" has no
        upper case of one letter), "Äpfel" holds "äpfel" (which a database
        folding only ASCII, PostgreSQL's ``lower()`` under the C locale,
        would call different), "ΣΑΣ" holds "σας".
        """
        component = await make_component(model)
        for stored, renamed in (("Straße", "STRASSE"), ("Äpfel", "äpfel"), ("ΣΑΣ", "σας")):
            field = await define(model, component.id, T.ENUM, options=(stored, "other"))
            issue = await create(model, component.id, values(field.id, renamed.upper()))
            assert custom_of(await get_issue(model, issue.id)) == {field.id: [stored]}

            async def options(*names: str, field_id: int = field.id) -> v1.CustomField:
                return await model.update_custom_field(
                    v1.UpdateCustomFieldRequest(
                        caller=ADMIN,
                        custom_field=v1.CustomField(id=field_id, options=list(names)),
                        update_mask=FieldMask(paths=["options"]),
                    )
                )

            assert (await options(renamed, "other")).options == [renamed, "other"]
            assert custom_of(await get_issue(model, issue.id)) == {field.id: [renamed]}
            removal = options("other")
            await expect_error(removal, Status.FAILED_PRECONDITION, repr(renamed), "set on issues")
            assert custom_of(await get_issue(model, issue.id)) == {field.id: [renamed]}
