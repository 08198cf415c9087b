"""Ids in URLs, form fields, query parameters and searches: 2**64 + n is never n.

Paths that name no id are 404 (there is no such page); form fields and
query parameters that hold no id are 400 naming the field; a search with
such an id says where in the query it is.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, csrf_of, sign_in

from bugless_core.errors import InvalidArgument, NotFound
from bugless_core.ids import MAX_ID
from bugless_proto import v1
from bugless_web.frontend import form_int, path_id

WRAPPED = 2**64


@given(st.integers(min_value=1, max_value=MAX_ID))
def test_paths_and_forms_read_every_id_in_range(value: int) -> None:
    assert path_id(str(value), "issue_id") == value
    assert form_int(f" #{value} ", "component") == value


@given(
    st.integers(min_value=MAX_ID + 1, max_value=2**100).map(str)
    | st.integers(min_value=1, max_value=MAX_ID).map(lambda n: f"+{n}")
    | st.integers(min_value=1, max_value=MAX_ID).map(lambda n: f"-{n}")
    | st.text(min_size=1).filter(lambda t: not (t.isascii() and t.isdigit()))
)
def test_anything_else_is_not_found_in_a_path(text: str) -> None:
    with pytest.raises(NotFound):
        path_id(text, "issue_id")


@given(st.integers(min_value=MAX_ID + 1, max_value=2**100))
def test_out_of_range_form_values_name_the_field(value: int) -> None:
    with pytest.raises(InvalidArgument, match=r"^component: "):
        form_int(str(value), "component")


async def test_wrapped_ids_in_paths_are_404_never_another_issue(
    client: AsyncTestClient[Any], model: v1.ModelStub, world: World
) -> None:
    issue = await create_issue(model, world, "the real one", by="alice")
    await sign_in(client, "alice")
    component = world.components["Platform"]
    assert (await client.get(f"/issues/{issue.id}")).status_code == 200

    for path in (
        f"/issues/{WRAPPED + issue.id}",
        f"/issues/+{issue.id}",
        f"/issues/{issue.id}.0",
        f"/issues/{issue.id}/entries/{WRAPPED + 1}",
        f"/components/{WRAPPED + component}",
        f"/hotlists/{WRAPPED + 1}",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "the real one" not in response.text


async def test_wrapped_ids_in_forms_and_query_parameters_are_400(
    client: AsyncTestClient[Any], model: v1.ModelStub, world: World
) -> None:
    issue = await create_issue(model, world, "target", by="alice")
    await sign_in(client, "alice")
    component = world.components["Platform"]

    new_form = await client.get(f"/issues/new?component={WRAPPED + component}")
    assert new_form.status_code == 400
    assert "component" in new_form.text

    page = await client.get(f"/issues/{issue.id}")
    edit = await client.post(
        f"/issues/{issue.id}",
        data={
            "_csrf": csrf_of(page.text),
            "version": str(issue.version),
            "parent_id": str(WRAPPED + issue.id),
        },
    )
    assert edit.status_code == 400
    assert "parent" in edit.text
    after = await model.get_issue(v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert after.version == issue.version  # nothing was written

    deleted = await client.post(
        f"/searches/{WRAPPED + 1}/delete", data={"_csrf": csrf_of(page.text)}
    )
    assert deleted.status_code == 404


async def test_a_search_for_a_wrapped_id_says_where_it_is(
    client: AsyncTestClient[Any], model: v1.ModelStub, world: World
) -> None:
    issue = await create_issue(model, world, "searched", by="alice")
    await sign_in(client, "alice")

    response = await client.get("/search", params={"q": f"id:{WRAPPED + issue.id}"})

    assert response.status_code == 400
    assert "too large" in response.text
    assert "searched" not in response.text
