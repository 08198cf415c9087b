"""every_page and follow_pages walk a real list call over gRPC: each page once, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.clients import ServiceAddress, every_page, follow_pages
from bugless_core.errors import InvalidArgument
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner, grpc_errors
from bugless_proto import v1


class PagingModel(v1.ModelBase):
    """Components 1..count, in pages of the size asked; the token is the next offset."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.requests: list[v1.ListComponentsRequest] = []

    @grpc_errors
    async def list_components(self, message: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        self.requests.append(message)
        page = message.page or v1.PageRequest()
        start = int(page.page_token or 0)
        end = min(start + page.page_size, self.count)
        if start == 2 * page.page_size and message.parent_id == 13:
            raise InvalidArgument("parent 13 fails on its third page")
        return v1.ListComponentsResponse(
            components=[v1.Component(id=i + 1, path=f"c{i + 1}") for i in range(start, end)],
            next_page_token=str(end) if end < self.count else "",
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[PagingModel, v1.ModelStub]]:
    model = PagingModel(count=7)
    runner = GrpcServiceRunner(
        [model],
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        name="every-page-test",
        metrics_registry=CollectorRegistry(),
    )
    await runner.start()
    channel = ServiceAddress("127.0.0.1", runner.port).channel()
    try:
        yield model, v1.ModelStub(channel)
    finally:
        channel.close()
        await runner.close()


async def test_every_page_is_read_once_in_order_with_the_requests_fields(
    served: tuple[PagingModel, v1.ModelStub],
) -> None:
    model, stub = served
    request = v1.ListComponentsRequest(caller=v1.Caller(user_id="u1"), include_archived=True)
    pages = [page async for page in every_page(stub.list_components, request, page_size=3)]
    assert [[c.id for c in p.components] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [(r.page.page_size, r.page.page_token) for r in model.requests if r.page] == [
        (3, ""),
        (3, "3"),
        (3, "6"),
    ]
    assert all(r.caller.user_id == "u1" and r.include_archived for r in model.requests if r.caller)
    assert len(model.requests) == 3
    assert request.page is None  # the caller's request is not changed


async def test_a_single_page_is_one_call(served: tuple[PagingModel, v1.ModelStub]) -> None:
    model, stub = served
    pages = [
        page
        async for page in every_page(stub.list_components, v1.ListComponentsRequest(), page_size=50)
    ]
    assert [len(p.components) for p in pages] == [7]
    assert len(model.requests) == 1


async def test_a_refused_page_ends_the_walk_with_its_bugless_error(
    served: tuple[PagingModel, v1.ModelStub],
) -> None:
    model, stub = served
    seen: list[int] = []

    async def read_all() -> None:
        async for page in every_page(
            stub.list_components, v1.ListComponentsRequest(parent_id=13), page_size=2
        ):
            seen.extend(c.id for c in page.components)

    with pytest.raises(InvalidArgument, match="third page"):
        await read_all()
    assert seen == [1, 2, 3, 4]
    assert len(model.requests) == 3


async def test_a_limit_asks_for_what_is_still_wanted_and_stops_there(
    served: tuple[PagingModel, v1.ModelStub],
) -> None:
    """A limit of 5 in pages of 2 asks for 2, 2, then 1, and reads no page after the fifth item."""
    model, stub = served

    async def fetch(token: str, size: int) -> v1.ListComponentsResponse:
        page = v1.PageRequest(page_size=size, page_token=token)
        return await stub.list_components(v1.ListComponentsRequest(page=page))

    pages = [
        page
        async for page in follow_pages(
            fetch, page_size=2, limit=5, count=lambda page: len(page.components)
        )
    ]
    assert [[c.id for c in p.components] for p in pages] == [[1, 2], [3, 4], [5]]
    assert [(r.page.page_size, r.page.page_token) for r in model.requests if r.page] == [
        (2, ""),
        (2, "2"),
        (1, "4"),
    ]
    model.requests.clear()
    at_a_boundary = [
        page
        async for page in follow_pages(
            fetch, page_size=2, limit=4, count=lambda page: len(page.components)
        )
    ]
    assert len(at_a_boundary) == len(model.requests) == 2  # page 3 is not asked for
    model.requests.clear()
    beyond = [
        page
        async for page in follow_pages(
            fetch, page_size=3, limit=50, count=lambda page: len(page.components)
        )
    ]
    assert [len(p.components) for p in beyond] == [3, 3, 1]  # the last page ends it
    model.requests.clear()
    assert [
        page async for page in follow_pages(fetch, page_size=3, limit=0, count=lambda p: 0)
    ] == []
    assert model.requests == []


async def test_a_limit_without_a_count_is_refused(
    served: tuple[PagingModel, v1.ModelStub],
) -> None:
    _model, stub = served

    async def fetch(token: str, size: int) -> v1.ListComponentsResponse:
        return await stub.list_components(v1.ListComponentsRequest())

    with pytest.raises(ValueError, match="count"):
        async for _page in follow_pages(fetch, page_size=2, limit=3):
            pass
