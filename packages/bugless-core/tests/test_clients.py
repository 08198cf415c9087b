from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import IssueVersionConflict, Unavailable
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner, grpc_errors
from bugless_proto import v1


class ConflictingModel(v1.ModelBase):
    @grpc_errors
    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        raise IssueVersionConflict(message.issue_id, 1, 4)


@pytest.fixture
async def model_address() -> AsyncIterator[ServiceAddress]:
    runner = GrpcServiceRunner(
        [ConflictingModel()],
        GrpcServerSettings(drain_seconds=0),
        name="clients-test",
        metrics_registry=CollectorRegistry(),
    )
    await runner.start()
    yield ServiceAddress("127.0.0.1", runner.port)
    await runner.close()


def test_addresses_parse_host_and_port() -> None:
    assert ServiceAddress.parse("model.bugless.svc:50051") == ServiceAddress(
        "model.bugless.svc", 50051
    )
    assert ServiceAddress.parse("[::1]:7").host == "::1"
    with pytest.raises(ValueError, match="not host:port"):
        ServiceAddress.parse("model")


async def test_errors_arrive_as_the_bugless_error_the_server_raised(
    model_address: ServiceAddress,
) -> None:
    channel = model_address.channel()
    try:
        with pytest.raises(IssueVersionConflict) as info:
            await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=9))
        assert info.value.current_version == 4
    finally:
        channel.close()


async def test_an_unreachable_service_is_unavailable() -> None:
    channel = ServiceAddress("127.0.0.1", 1).channel()
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=1))
    finally:
        channel.close()
