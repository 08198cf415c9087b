"""Contract: custom fields defined per component, their values, history and search."""

from __future__ import annotations

from grpclib.const import Status

from bugless_core.search.build import all_of, any_of, negate
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    change,
    eq,
    expect_error,
    get_issue,
    history,
    in_subtree,
    make_component,
    search_ids,
    unique,
    user_entry,
    within,
)

T = v1.CustomFieldType
Op = v1.SearchOperator


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
        await expect_error(
            change(model, issue, v1.IssueDelta(custom_fields_set=[values(low.id, "3")])),
            Status.INVALID_ARGUMENT,
            "does not apply",
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
        component = await make_component(model)
        gone = await define(model, component.id, T.TEXT)
        issue = await create(model, component.id, values(gone.id, "kept in history"))
        await model.delete_custom_field(v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=gone.id))
        assert custom_of(await get_issue(model, issue.id)) == {}
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
        await expect_error(
            model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=level.id, description="x"),
                    update_mask=FieldMask(paths=["description"]),
                    expected_version=level.version,
                )
            ),
            Status.ABORTED,
            "version",
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


class CustomFieldSearchContract:
    """Custom field terms: by id or name, comparisons, has:, sort."""

    async def test_terms_by_id_and_by_name(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        name = unique("Found In")
        found_in = await define(model, root.id, T.ENUM, name=name, options=("4.1", "4.2"))
        a = await create(model, root.id, values(found_in.id, "4.2"))
        b = await create(model, root.id, values(found_in.id, "4.1"))
        c = await create(model, root.id)
        assert await search_ids(model, within(root.id, custom_term(found_in, Op.EQ, "4.2"))) == [
            a.id
        ]
        by_name = custom_term(name.upper(), Op.EQ, "4.1", "4.2")
        assert await search_ids(model, within(root.id, by_name)) == [b.id, a.id]
        assert await search_ids(model, within(root.id, custom_term(found_in, Op.ANY))) == [
            b.id,
            a.id,
        ]
        assert await search_ids(model, within(root.id, custom_term(found_in, Op.NONE))) == [c.id]
        excluded = negate(custom_term(found_in, Op.EQ, "4.2"))
        assert await search_ids(model, within(root.id, excluded)) == [c.id, b.id]

    async def test_comparisons_on_integers_and_dates(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        size = await define(model, root.id, T.INTEGER)
        due = await define(model, root.id, T.DATE)
        small = await create(model, root.id, values(size.id, "5"), values(due.id, "2026-01-01"))
        large = await create(model, root.id, values(size.id, "50"), values(due.id, "2026-03-01"))
        assert await search_ids(model, within(root.id, custom_term(size, Op.GT, "9"))) == [large.id]
        assert await search_ids(model, within(root.id, custom_term(due, Op.LT, "2026-02-01"))) == [
            small.id
        ]
        text = await define(model, root.id, T.TEXT)
        await expect_error(
            search_ids(model, within(root.id, custom_term(text, Op.GT, "a"))),
            Status.INVALID_ARGUMENT,
            "cannot be compared",
        )
        await expect_error(
            search_ids(model, within(root.id, custom_term(size, Op.EQ, "many"))),
            Status.INVALID_ARGUMENT,
            "whole number",
        )

    async def test_text_contains_and_users_by_id(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        note = await define(model, root.id, T.TEXT)
        owner = await define(model, root.id, T.USER)
        a = await create(model, root.id, values(note.id, "Seen on Staging"), values(owner.id, "u1"))
        await create(model, root.id, values(note.id, "prod"))
        assert await search_ids(model, within(root.id, custom_term(note, Op.EQ, "staging"))) == [
            a.id
        ]
        by_user = custom_term(owner, Op.EQ, "ann", users=("u1",))
        assert await search_ids(model, within(root.id, by_user)) == [a.id]
        await expect_error(
            search_ids(model, within(root.id, custom_term(owner, Op.EQ, "nobody"))),
            Status.INVALID_ARGUMENT,
            "no user named",
        )

    async def test_text_contains_in_any_case_by_case_folding(self, model: v1.ModelStub) -> None:
        """A text term finds its text in a value in any case, by Unicode case folding.

        "ÄPFEL" finds "äpfel" and back (a database's ``lower()`` under the C
        locale leaves "Ä" as it is), "STRASSE" finds "Straße" (no ``lower()``
        folds "ß" to "ss"), "οδος" finds "ΟΔΟΣ" (final sigma); for values
        written by a create, a batch create and a change alike.
        """
        root = await make_component(model)
        note = await define(model, root.id, T.TEXT)
        created = await create(model, root.id, values(note.id, "Kiste äpfel, ÄPFEL-Saft"))
        (batched,) = (
            await model.batch_create_issues(
                v1.BatchCreateIssuesRequest(
                    caller=ALICE,
                    items=[
                        v1.CreateIssueRequest(
                            fields=v1.IssueFields(title=unique("batch"), component_id=root.id),
                            custom_fields=[values(note.id, "Hauptstraße 5")],
                        )
                    ],
                )
            )
        ).results
        assert batched.issue is not None, batched.message
        changed = await create(model, root.id, values(note.id, "before"))
        delta = v1.IssueDelta(custom_fields_set=[values(note.id, "ΟΔΟΣ Σ")])
        await change(model, changed, delta)
        for text, expected in (
            ("äpfel-saft", [created.id]),
            ("ÄPFEL, ÄPFEL", [created.id]),
            ("HAUPTSTRASSE", [batched.issue.id]),
            ("straße 5", [batched.issue.id]),
            ("οδος", [changed.id]),
            ("οδοσ σ", [changed.id]),  # noqa: RUF001 (Greek, on purpose)
            ("before", []),
        ):
            term = custom_term(note, Op.EQ, text)
            assert await search_ids(model, within(root.id, term)) == expected, text

    async def test_sort_by_a_custom_field_puts_missing_values_last(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        size = await define(model, root.id, T.INTEGER)
        two = await create(model, root.id, values(size.id, "2"))
        none = await create(model, root.id)
        ten = await create(model, root.id, values(size.id, "10"))
        key = v1.SortKey(field=v1.SortField.CUSTOM, custom_field_id=size.id)
        assert await search_ids(model, within(root.id), order=[key]) == [two.id, ten.id, none.id]
        key.descending = True
        assert await search_ids(model, within(root.id), order=[key]) == [ten.id, two.id, none.id]

    async def test_an_unknown_field_is_an_error(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        await expect_error(
            search_ids(model, within(root.id, custom_term(unique("No Such"), Op.EQ, "x"))),
            Status.INVALID_ARGUMENT,
            "no custom field",
        )

    async def test_with_is_open_and_a_component_subtree(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        child = await make_component(model, parent_id=root.id)
        flag = await define(model, root.id, T.ENUM, options=("yes", "no"))
        open_one = await create(model, child.id, values(flag.id, "yes"))
        closed = await create(model, child.id, values(flag.id, "yes"))
        await change(
            model,
            closed,
            v1.IssueDelta(
                fields=v1.IssueFields(status=v1.Status.FIXED),
                update_mask=FieldMask(paths=["status"]),
            ),
        )
        node = all_of(custom_term(flag, Op.EQ, "yes"), eq(v1.SearchField.STATUS_CLASS, "open"))
        assert await search_ids(model, within(root.id, node)) == [open_one.id]

    async def test_searches_follow_moves_reopenings_and_new_values(
        self, model: v1.ModelStub
    ) -> None:
        """A term combined with a subtree and a status (the indexed form) tracks every write."""
        root = await make_component(model)
        left = await make_component(model, parent_id=root.id)
        right = await make_component(model, parent_id=root.id)
        tags = await define(model, root.id, T.ENUM_MULTI, options=("ui", "db", "api"))
        issue = await create(model, left.id, values(tags.id, "ui", "db"))
        other = await create(model, right.id, values(tags.id, "api"))

        def db_open_in(component_id: int) -> v1.SearchNode:
            return all_of(
                in_subtree(component_id),
                eq(v1.SearchField.STATUS_CLASS, "open"),
                custom_term(tags, Op.EQ, "db"),
            )

        assert await search_ids(model, db_open_in(left.id)) == [issue.id]
        moved = await change(
            model,
            issue,
            v1.IssueDelta(
                fields=v1.IssueFields(component_id=right.id, status=v1.Status.FIXED),
                update_mask=FieldMask(paths=["component_id", "status"]),
            ),
        )
        assert await search_ids(model, db_open_in(left.id)) == []
        assert await search_ids(model, db_open_in(right.id)) == []
        reopened = await change(
            model,
            moved.issue,
            v1.IssueDelta(
                fields=v1.IssueFields(status=v1.Status.ACCEPTED),
                update_mask=FieldMask(paths=["status"]),
            ),
        )
        assert await search_ids(model, db_open_in(right.id)) == [issue.id]
        await change(
            model, reopened.issue, v1.IssueDelta(custom_fields_set=[values(tags.id, "api")])
        )
        assert await search_ids(model, db_open_in(right.id)) == []
        # Under OR and NOT the subtree and status still narrow, without changing the answer.
        either = all_of(
            in_subtree(right.id),
            eq(v1.SearchField.STATUS_CLASS, "open"),
            any_of(custom_term(tags, Op.EQ, "ui"), negate(custom_term(tags, Op.EQ, "api"))),
        )
        assert await search_ids(model, either) == []
        assert await search_ids(model, within(right.id, custom_term(tags, Op.EQ, "API"))) == [
            other.id,
            issue.id,
        ]

    async def test_option_terms_ignore_case_before_and_after_a_rename_of_it(
        self, model: v1.ModelStub
    ) -> None:
        """An option term matches by case folding, whatever case the value was written in.

        A value written "BUG" is stored as the option spells it ("Bug");
        ``"Kind":bug`` finds it, as does ``"Kind":BUG``. Renaming the option
        to "bug" (its case only) carries the values along: the same terms,
        by the old spelling too, still find exactly the issues holding it, a
        single value or one among several, and the values read "bug".
        Beyond ASCII too: "STRASSE" finds the issue set to "straße".
        """
        root = await make_component(model)
        kind = await define(model, root.id, T.ENUM, options=("Bug", "Feature", "Straße"))
        tags = await define(model, root.id, T.ENUM_MULTI, options=("Bug", "ui"))
        written = await create(model, root.id, values(kind.id, "BUG"), values(tags.id, "ui", "bUg"))
        other = await create(model, root.id, values(kind.id, "feature"), values(tags.id, "ui"))
        street = await create(model, root.id, values(kind.id, "STRASSE"))
        assert custom_of(written) == {kind.id: ["Bug"], tags.id: ["Bug", "ui"]}

        async def found(field: v1.CustomField, *raw: str) -> list[int]:
            return await search_ids(model, within(root.id, custom_term(field, Op.EQ, *raw)))

        for spelling in ("bug", "BUG", "Bug"):
            assert await found(kind, spelling) == [written.id]
            assert await found(tags, spelling) == [written.id]
        assert await found(kind, "strasse") == [street.id]
        for field in (kind, tags):
            options = ["bug" if o == "Bug" else o for o in field.options]
            await model.update_custom_field(
                v1.UpdateCustomFieldRequest(
                    caller=ADMIN,
                    custom_field=v1.CustomField(id=field.id, options=options),
                    update_mask=FieldMask(paths=["options"]),
                )
            )
        assert custom_of(await get_issue(model, written.id)) == {
            kind.id: ["bug"],
            tags.id: ["bug", "ui"],
        }
        assert custom_of(await get_issue(model, other.id)) == {
            kind.id: ["Feature"],
            tags.id: ["ui"],
        }
        for spelling in ("bug", "BUG", "Bug"):
            assert await found(kind, spelling) == [written.id]
            assert await found(tags, spelling) == [written.id]
        assert await found(tags, "UI") == [other.id, written.id]
        by_name = custom_term(kind.name.lower(), Op.EQ, "BUG", "feature")
        assert await search_ids(model, within(root.id, by_name)) == [other.id, written.id]
        await expect_error(
            found(kind, "Bugs"), Status.INVALID_ARGUMENT, "'Bugs' is not an option of"
        )

    async def test_terms_name_fields_by_case_folding(self, model: v1.ModelStub) -> None:
        """A term names a field by name as options are matched: Unicode case folding.

        "Äpfel …" is found by its own name and as "äpfel …" (a database's
        ``lower()`` under the C locale leaves "Ä" as it is), "Maße …" as
        "MASSE …"; and a second field whose name folds the same on the same
        component is refused.
        """
        root = await make_component(model)
        suffix = unique("")
        apples = await define(model, root.id, T.ENUM, name=f"Äpfel{suffix}", options=("a",))
        measure = await define(model, root.id, T.ENUM, name=f"Maße{suffix}", options=("a",))
        first = await create(model, root.id, values(apples.id, "a"))
        second = await create(model, root.id, values(measure.id, "a"))
        for name, expected in (
            (f"Äpfel{suffix}", [first.id]),
            (f"äpfel{suffix}".upper(), [first.id]),
            (f"äpfel{suffix}", [first.id]),
            (f"MASSE{suffix}".upper(), [second.id]),
            (f"masse{suffix}", [second.id]),
        ):
            term = custom_term(name, Op.EQ, "A")
            assert await search_ids(model, within(root.id, term)) == expected, name
        await expect_error(
            define(model, root.id, T.TEXT, name=f"MASSE{suffix}"),
            Status.ALREADY_EXISTS,
            "also named",
        )
