"""Contract: saved searches."""

from __future__ import annotations

from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    expect_error,
    expect_stale_version,
    fresh_caller,
    unique,
)


async def _save(
    model: v1.ModelStub,
    owner: v1.Caller,
    *,
    query: str = "is:open",
    readers: list[v1.Principal] | None = None,
) -> v1.SavedSearch:
    return await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=owner, name=unique("search"), query=query, readers=readers or []
        )
    )


async def _visible(
    model: v1.ModelStub, caller: v1.Caller, *, owned_only: bool = False
) -> list[int]:
    listed = await model.list_saved_searches(
        v1.ListSavedSearchesRequest(
            caller=caller, owned_only=owned_only, page=v1.PageRequest(page_size=500)
        )
    )
    return sorted(s.id for s in listed.saved_searches)


class SavedSearchContract:
    """Saved searches: stored query text, visible to the owner and to readers.

    Pins down: the owner is the caller, the text is stored verbatim, listings of
    own and shared searches (readers by user and by group), only the owner
    updates or deletes, others who cannot see one get NOT_FOUND, and version
    preconditions.
    """

    async def test_create_stores_text_verbatim_for_the_caller(self, model: v1.ModelStub) -> None:
        owner = fresh_caller()
        query = 'status:open a:me "disk full" -p:p4'
        saved = await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=owner, name="Mine", query=query)
        )
        assert saved.id > 0
        assert saved.owner == owner.user_id
        assert saved.name == "Mine"
        assert saved.query == query
        assert saved.version >= 1
        assert saved.created_at is not None

    async def test_listing_owned_only_shows_only_own(self, model: v1.ModelStub) -> None:
        owner, friend = fresh_caller(), fresh_caller()
        mine = await _save(model, owner)
        shared = await _save(model, friend, readers=[v1.Principal(user=owner.user_id)])
        assert await _visible(model, owner, owned_only=True) == [mine.id]
        assert await _visible(model, owner) == sorted([mine.id, shared.id])

    async def test_group_readers_see_the_search(self, model: v1.ModelStub) -> None:
        group = unique("team")
        owner = fresh_caller()
        member = fresh_caller(groups=[group])
        outsider = fresh_caller(groups=[unique("other")])
        saved = await _save(model, owner, readers=[v1.Principal(group=group)])
        assert await _visible(model, member) == [saved.id]
        assert await _visible(model, outsider) == []

    async def test_owner_updates_fields_in_the_mask(self, model: v1.ModelStub) -> None:
        owner, reader = fresh_caller(), fresh_caller()
        saved = await _save(model, owner)
        updated = await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=owner,
                saved_search=v1.SavedSearch(
                    id=saved.id,
                    query="is:closed",
                    name="ignored",
                    readers=[v1.Principal(user=reader.user_id)],
                ),
                update_mask=FieldMask(paths=["query", "readers"]),
                expected_version=saved.version,
            )
        )
        assert updated.query == "is:closed"
        assert updated.name == saved.name
        assert updated.readers == [v1.Principal(user=reader.user_id)]
        assert updated.version == saved.version + 1
        assert await _visible(model, reader) == [saved.id]

    async def test_reader_may_not_update_or_delete(self, model: v1.ModelStub) -> None:
        owner, reader = fresh_caller(), fresh_caller()
        saved = await _save(model, owner, readers=[v1.Principal(user=reader.user_id)])
        await expect_error(
            model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=reader,
                    saved_search=v1.SavedSearch(id=saved.id, query="hijacked"),
                    update_mask=FieldMask(paths=["query"]),
                )
            ),
            Status.PERMISSION_DENIED,
        )
        await expect_error(
            model.delete_saved_search(
                v1.DeleteSavedSearchRequest(caller=reader, saved_search_id=saved.id)
            ),
            Status.PERMISSION_DENIED,
        )
        assert await _visible(model, owner) == [saved.id]

    async def test_stranger_gets_not_found(self, model: v1.ModelStub) -> None:
        owner, stranger = fresh_caller(), fresh_caller()
        saved = await _save(model, owner)
        await expect_error(
            model.delete_saved_search(
                v1.DeleteSavedSearchRequest(caller=stranger, saved_search_id=saved.id)
            ),
            Status.NOT_FOUND,
        )
        await expect_error(
            model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=stranger,
                    saved_search=v1.SavedSearch(id=saved.id, name="x"),
                    update_mask=FieldMask(paths=["name"]),
                )
            ),
            Status.NOT_FOUND,
        )
        assert await _visible(model, stranger) == []

    async def test_owner_deletes(self, model: v1.ModelStub) -> None:
        owner = fresh_caller()
        saved = await _save(model, owner)
        await model.delete_saved_search(
            v1.DeleteSavedSearchRequest(caller=owner, saved_search_id=saved.id)
        )
        assert await _visible(model, owner) == []
        await expect_error(
            model.delete_saved_search(
                v1.DeleteSavedSearchRequest(caller=owner, saved_search_id=saved.id)
            ),
            Status.NOT_FOUND,
        )

    async def test_stale_saved_search_version_is_aborted(self, model: v1.ModelStub) -> None:
        owner = fresh_caller()
        saved = await _save(model, owner)
        request = v1.UpdateSavedSearchRequest(
            caller=owner,
            saved_search=v1.SavedSearch(id=saved.id, name="first"),
            update_mask=FieldMask(paths=["name"]),
            expected_version=saved.version,
        )
        once = await model.update_saved_search(request)
        await expect_stale_version(model.update_saved_search(request), once.version)

    async def test_columns_are_stored_listed_and_changed_by_mask(self, model: v1.ModelStub) -> None:
        owner = fresh_caller()
        columns = ["id", "title", "customfield12", "assignee"]
        saved = await model.create_saved_search(
            v1.CreateSavedSearchRequest(
                caller=owner, name=unique("search"), query="is:open", columns=columns
            )
        )
        assert saved.columns == columns
        listed = await model.list_saved_searches(
            v1.ListSavedSearchesRequest(caller=owner, page=v1.PageRequest(page_size=500))
        )
        assert [s.columns for s in listed.saved_searches] == [columns]
        renamed = await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=owner,
                saved_search=v1.SavedSearch(id=saved.id, name="renamed", columns=["status"]),
                update_mask=FieldMask(paths=["name"]),
            )
        )
        assert renamed.columns == columns, "a mask without columns keeps them"
        changed = await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=owner,
                saved_search=v1.SavedSearch(id=saved.id, columns=["status", "priority"]),
                update_mask=FieldMask(paths=["columns"]),
                expected_version=renamed.version,
            )
        )
        assert changed.columns == ["status", "priority"]
        assert changed.name == "renamed"
        cleared = await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=owner,
                saved_search=v1.SavedSearch(id=saved.id),
                update_mask=FieldMask(paths=["columns"]),
            )
        )
        assert cleared.columns == []

    async def test_without_columns_the_list_is_empty(self, model: v1.ModelStub) -> None:
        saved = await _save(model, fresh_caller())
        assert saved.columns == []

    async def test_unknown_column_is_invalid_and_names_the_valid_ones(
        self, model: v1.ModelStub
    ) -> None:
        owner = fresh_caller()
        await expect_error(
            model.create_saved_search(
                v1.CreateSavedSearchRequest(
                    caller=owner, name=unique("search"), query="", columns=["id", "titel"]
                )
            ),
            Status.INVALID_ARGUMENT,
            "columns[1]",
            "'titel'",
            "title",
            "customfield<ID>",
        )
        assert await _visible(model, owner) == []
        saved = await _save(model, owner)
        for bad in (["id", "id"], ["customfield0"], [""]):
            await expect_error(
                model.update_saved_search(
                    v1.UpdateSavedSearchRequest(
                        caller=owner,
                        saved_search=v1.SavedSearch(id=saved.id, columns=bad),
                        update_mask=FieldMask(paths=["columns"]),
                    )
                ),
                Status.INVALID_ARGUMENT,
                "saved_search.columns",
            )
        listed = await model.list_saved_searches(
            v1.ListSavedSearchesRequest(caller=owner, page=v1.PageRequest(page_size=500))
        )
        assert [(s.columns, s.version) for s in listed.saved_searches] == [([], saved.version)]
