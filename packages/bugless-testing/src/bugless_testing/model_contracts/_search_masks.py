"""Contract: a search's read mask trims each issue, and nothing else.

``SearchIssuesRequest.read_mask`` names the Issue fields a caller shows; each
issue may then come with only those fields and its id, every other field at
its value or at its default (a backend may send more than asked, never other
values). Which issues, their order, the count, the pages and visibility are
those of the same search without a mask; a named field is the unmasked read's
exactly, the caller's own view included (hotlists it may see, its star), and
the mask decides over ``summary``. An unknown name is INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

from grpclib.const import Status

from bugless_core.search.build import term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    expect_error,
    fresh_caller,
    make_component,
    make_hotlist,
    make_issue,
    unique,
    user_entry,
    within,
)

#: Masks of a few fields each, together naming the fields a list shows and
#: those only a mask brings back from a summary (description, cc).
MASKS = (
    ["title", "modified_at"],
    ["custom_fields", "hotlist_ids", "starred", "status", "version"],
    ["cc", "description", "created_at", "star_count"],
    ["assignee", "has_children", "parent_id", "blocking_ids", "component_id"],
)


def _assert_trimmed(got: list[v1.Issue], whole: list[v1.Issue], paths: list[str]) -> None:
    """``got`` are ``whole`` in order, the named fields equal, the others equal or default."""
    assert [i.id for i in got] == [i.id for i in whole]
    blank = v1.Issue()
    for masked, full in zip(got, whole, strict=True):
        for name in v1.Issue.DESCRIPTOR.fields_by_name:
            value, expected = getattr(masked, name), getattr(full, name)
            if name in paths or name == "id":
                assert value == expected, (masked.id, name)
            else:
                assert value in (expected, getattr(blank, name)), (masked.id, name)


class SearchReadMaskContract:
    """SearchIssues with ``read_mask``: the named fields, the same issues and pages."""

    async def _world(self, model: v1.ModelStub) -> tuple[int, list[v1.Issue], v1.Caller]:
        """A component of issues with every kind of field set; a viewer who starred one."""
        viewer = fresh_caller("masked")
        comp = await make_component(model)
        stage = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN,
                component_id=comp.id,
                name=unique("Stage"),
                type=v1.CustomFieldType.ENUM,
                options=["alpha", "beta"],
            )
        )
        public = await make_hotlist(model)
        private = await make_hotlist(model, private=True)
        made: list[v1.Issue] = []
        for n in range(3):
            made.append(
                await model.create_issue(
                    v1.CreateIssueRequest(
                        caller=ALICE,
                        fields=v1.IssueFields(
                            title=unique(f"Masked {n}"),
                            component_id=comp.id,
                            assignee=BOB.user_id if n else "",
                            parent_id=made[0].id if n == 2 else 0,
                        ),
                        description=f"the long story of issue {n}",
                        cc=[BOB.user_id] if n else [],
                        hotlist_ids=[public.id, private.id] if n < 2 else [],
                        blocking_ids=[made[0].id] if n == 1 else [],
                        custom_fields=[v1.CustomFieldValue(field_id=stage.id, values=["beta"])]
                        if n % 2
                        else [],
                    )
                )
            )
        await model.star_issue(
            v1.StarIssueRequest(caller=viewer, issue_id=made[1].id, starred=True)
        )
        return comp.id, made, viewer

    async def test_a_masked_page_is_the_unmasked_one_trimmed_to_the_named_fields(
        self, model: v1.ModelStub
    ) -> None:
        component_id, made, viewer = await self._world(model)
        query = v1.StructuredQuery(filter=within(component_id))
        for caller in (viewer, ALICE, ADMIN):
            whole = await model.search_issues(v1.SearchIssuesRequest(caller=caller, query=query))
            assert len(whole.issues) == len(made)
            for paths in MASKS:
                for summary in (False, True):
                    masked = await model.search_issues(
                        v1.SearchIssuesRequest(
                            caller=caller,
                            query=query,
                            summary=summary,
                            read_mask=FieldMask(paths=paths),
                        )
                    )
                    _assert_trimmed(list(masked.issues), list(whole.issues), paths)
                    assert (masked.total_count, masked.next_page_token) == (len(made), "")
        # The fixture gave the named fields something to show.
        seen = await model.search_issues(
            v1.SearchIssuesRequest(
                caller=viewer,
                query=query,
                summary=True,
                read_mask=FieldMask(paths=["description", "starred", "hotlist_ids", "cc"]),
            )
        )
        by_id = {i.id: i for i in seen.issues}
        assert by_id[made[1].id].starred
        assert by_id[made[1].id].description == "the long story of issue 1"
        assert by_id[made[1].id].cc == [BOB.user_id]
        assert len(by_id[made[0].id].hotlist_ids) == 1  # the public one; not ALICE's private one

    async def test_a_masked_search_pages_as_the_unmasked_one(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        for _ in range(5):
            await make_issue(model, comp.id, description="not listed")
        query = v1.StructuredQuery(filter=within(comp.id))

        async def pages(mask: FieldMask | None) -> list[list[tuple[int, str]]]:
            found: list[list[tuple[int, str]]] = []
            token = ""
            while True:
                page = await model.search_issues(
                    v1.SearchIssuesRequest(
                        caller=ALICE,
                        query=query,
                        page=v1.PageRequest(page_size=2, page_token=token),
                        read_mask=mask,
                    )
                )
                assert page.total_count == 5
                found.append([(i.id, i.title) for i in page.issues])
                token = page.next_page_token
                if not token:
                    return found

        assert await pages(FieldMask(paths=["title"])) == await pages(None)

    async def test_a_masked_search_keeps_visibility(self, model: v1.ModelStub) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        secret = await make_issue(model, comp.id)
        # By id: naming a component bob may not view is refused (SearchReferenceContract).
        query = v1.StructuredQuery(filter=term(v1.SearchField.ID, v1.SearchOperator.EQ, secret.id))
        mask = FieldMask(paths=["title"])
        hidden = await model.search_issues(
            v1.SearchIssuesRequest(caller=BOB, query=query, read_mask=mask)
        )
        assert (list(hidden.issues), hidden.total_count) == ([], 0)
        shown = await model.search_issues(
            v1.SearchIssuesRequest(caller=ALICE, query=query, read_mask=mask)
        )
        assert [(i.id, i.title) for i in shown.issues] == [(secret.id, secret.title)]

    async def test_a_read_mask_naming_no_issue_field_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        request = v1.SearchIssuesRequest(
            caller=ALICE, read_mask=FieldMask(paths=["title", "colour"])
        )
        await expect_error(
            model.search_issues(request),
            Status.INVALID_ARGUMENT,
            "read_mask.paths[1]",
            "'colour' is no Issue field",
        )
