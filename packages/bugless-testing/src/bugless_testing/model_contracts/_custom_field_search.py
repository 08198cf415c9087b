"""Contract: search terms on custom fields (by id or name, comparisons, has:, sort)."""

from __future__ import annotations

from grpclib.const import Status

from bugless_core.search.build import all_of, any_of, negate
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._custom_fields import (
    T,
    create,
    custom_of,
    custom_term,
    define,
    values,
)
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    change,
    eq,
    expect_error,
    get_issue,
    in_subtree,
    make_component,
    search_ids,
    unique,
    within,
)

Op = v1.SearchOperator


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
