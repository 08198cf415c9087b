"""Which failed backend calls the web tier sends once more, and which it must not.

The real replicas of ``test_rolling_restart.py`` cannot be made to fail a call
any other way than by draining, so the other failures come from a fake Model
behind a real grpclib server that answers with a chosen status and counts the
calls that crossed the wire.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from prometheus_client import CollectorRegistry
from web_support import SESSION_KEY

from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import DRAINING_REASON, NotFound, Unavailable, to_grpc_error
from bugless_core.grpc import listening_port
from bugless_core.reads import READ_ROUTES
from bugless_proto import DESCRIPTOR_POOL, v1
from bugless_web.backends import Backends
from bugless_web.metrics import WebMetrics
from bugless_web.settings import WebSettings

#: Every unary call the web may make that changes something.
WRITES = {
    "Model": {
        "CreateIssue",
        "ChangeIssue",
        "BatchChangeIssues",
        "BatchCreateIssues",
        "CreateComponent",
        "UpdateComponent",
        "CreateHotlist",
        "UpdateHotlist",
        "DeleteHotlist",
        "AddHotlistItems",
        "RemoveHotlistItems",
        "RankHotlistItem",
        "SetHotlistItemNote",
        "CreateSavedSearch",
        "UpdateSavedSearch",
        "DeleteSavedSearch",
        "EditComment",
        "Redact",
        "CreateCustomField",
        "UpdateCustomField",
        "DeleteCustomField",
        "StarIssue",
        "SetComponentSubscription",
        "SetSavedSearchSubscription",
        "UpdateNotificationSettings",
        "SetIssueMute",
        # Never made by the web (import identity only), but a write all the same.
        "ImportIssue",
        "ImportIssues",
        "DeleteAttachment",
    },
    "Authenticator": {
        "AuthenticatePassword",
        "BeginOidc",
        "CompleteOidc",
        "AuthenticateCertificate",
        "CreateLocalUser",
        "SetLocalPassword",
        "SetUserDisabled",
        "RevokeSessions",
        # A retry after it ended the session would answer NOT_FOUND.
        "EndSession",
        "MatchImportUsers",
        "MergePlaceholder",
        "IssuePersonCertificate",
        "RevokePersonCertificate",
        "StartDeviceLogin",
        "ApproveDeviceLogin",
        # Hands the certificate out once: a retried poll would lose it.
        "PollDeviceLogin",
    },
    "Notifier": {
        "RetryDeadLetters",
        "DiscardDeadLetters",
        # A retried add would add a second endpoint.
        "AddComponentWebhook",
        "SetComponentWebhookEnabled",
        "DeleteComponentWebhook",
    },
}


@dataclass
class FailingModel(v1.ModelBase):
    """Fails each call with the next of ``failures`` (then answers), counting calls."""

    failures: list[GRPCError] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def _next(self, method: str) -> None:
        self.calls[method] += 1
        if self.failures:
            raise self.failures.pop(0)

    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        self._next("GetIssue")
        return v1.Issue(id=message.issue_id, title="found")

    async def create_issue(self, message: v1.CreateIssueRequest) -> v1.Issue:
        self._next("CreateIssue")
        return v1.Issue(id=1, title=message.fields.title if message.fields else "")

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        self._next("UploadAttachment")  # a refusal comes before reading, as a draining Model's
        size = 0
        async for message in messages:
            size += len(message.chunk or b"")
        return v1.UploadAttachmentResponse(attachment=v1.Attachment(id=1, size=size))


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FailingModel, Backends]]:
    model = FailingModel()
    server = Server([model])
    await server.start("127.0.0.1", 0)
    port = model.port = listening_port(server)
    address = ServiceAddress("127.0.0.1", port)
    backends = Backends(
        WebSettings(model=address, auth=address, session_keys=(SESSION_KEY,), insecure_local=True)
    )
    try:
        yield model, backends
    finally:
        backends.close()
        server.close()
        await server.wait_closed()


UNAVAILABLE = GRPCError(Status.UNAVAILABLE, "the database is unreachable")
DRAINING = to_grpc_error(Unavailable("shutting down", reason=DRAINING_REASON))


def _create() -> v1.CreateIssueRequest:
    return v1.CreateIssueRequest(
        fields=v1.IssueFields(title="once"), idempotency_key=secrets.token_hex(8)
    )


async def test_a_read_is_retried_once_after_unavailable(
    rig: tuple[FailingModel, Backends],
) -> None:
    model, backends = rig
    model.failures = [UNAVAILABLE]
    issue = await call(backends.model.get_issue, v1.GetIssueRequest(issue_id=7))
    assert issue.title == "found"
    assert model.calls["GetIssue"] == 2


async def test_a_read_failing_twice_is_unavailable_after_two_attempts(
    rig: tuple[FailingModel, Backends],
) -> None:
    model, backends = rig
    model.failures = [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE]
    with pytest.raises(Unavailable, match="database is unreachable"):
        await call(backends.model.get_issue, v1.GetIssueRequest(issue_id=7))
    assert model.calls["GetIssue"] == 2


async def test_a_write_that_failed_unavailable_is_not_retried(
    rig: tuple[FailingModel, Backends],
) -> None:
    model, backends = rig
    model.failures = [UNAVAILABLE]
    with pytest.raises(Unavailable):
        await call(backends.model.create_issue, _create())
    assert model.calls["CreateIssue"] == 1


async def test_a_write_refused_while_draining_is_retried(
    rig: tuple[FailingModel, Backends],
) -> None:
    model, backends = rig
    model.failures = [DRAINING]
    created = await call(backends.model.create_issue, _create())
    assert created.title == "once"
    assert model.calls["CreateIssue"] == 2


async def test_other_errors_are_never_retried(rig: tuple[FailingModel, Backends]) -> None:
    model, backends = rig
    model.failures = [GRPCError(Status.NOT_FOUND, "no issue 7")]
    with pytest.raises(NotFound):
        await call(backends.model.get_issue, v1.GetIssueRequest(issue_id=7))
    assert model.calls["GetIssue"] == 1


async def test_calls_and_retries_are_counted_with_the_code_the_page_saw(
    rig: tuple[FailingModel, Backends],
) -> None:
    """--metrics-port: one retried read that then failed, one write that failed once."""
    model, _ = rig
    registry = CollectorRegistry()
    metrics = WebMetrics.for_registry(registry)
    stub = backends_with(model, metrics)
    model.failures = [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE]
    with pytest.raises(Unavailable):
        await call(stub.model.get_issue, v1.GetIssueRequest(issue_id=7))
    with pytest.raises(Unavailable):
        await call(stub.model.create_issue, _create())
    assert (await call(stub.model.get_issue, v1.GetIssueRequest(issue_id=7))).title == "found"

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"grpc_service": "bugless.v1.Model", **labels})

    assert value("grpc_client_handled_total", grpc_method="GetIssue", grpc_code="UNAVAILABLE") == 1
    assert value("grpc_client_handled_total", grpc_method="GetIssue", grpc_code="OK") == 1
    assert (
        value("grpc_client_handled_total", grpc_method="CreateIssue", grpc_code="UNAVAILABLE") == 1
    )
    assert value("bugless_web_backend_retries_total", grpc_method="GetIssue") == 1
    assert value("bugless_web_backend_retries_total", grpc_method="CreateIssue") is None
    assert value("grpc_client_handling_seconds_count", grpc_method="GetIssue") == 2
    stub.close()


async def test_uploads_and_their_retries_are_counted_as_calls_are(
    rig: tuple[FailingModel, Backends],
) -> None:
    """An upload refused while draining is sent again and counted once, with its retry."""
    model, _ = rig
    registry = CollectorRegistry()
    backends = backends_with(model, WebMetrics.for_registry(registry))

    async def upload() -> AsyncIterator[v1.UploadAttachmentRequest]:
        yield v1.UploadAttachmentRequest(header=v1.UploadAttachmentHeader(issue_id=7, name="a"))
        yield v1.UploadAttachmentRequest(chunk=b"x" * 1000)

    model.failures = [DRAINING]
    reply = await backends.upload_attachment(upload())
    assert reply.attachment is not None
    assert reply.attachment.size == 1000
    model.failures = [GRPCError(Status.NOT_FOUND, "no issue 7")]
    with pytest.raises(NotFound):
        await backends.upload_attachment(upload())
    assert model.calls["UploadAttachment"] == 3

    def value(name: str, **labels: str) -> float | None:
        labels = {"grpc_service": "bugless.v1.Model", "grpc_method": "UploadAttachment", **labels}
        return registry.get_sample_value(name, labels)

    assert value("grpc_client_handled_total", grpc_code="OK") == 1
    assert value("grpc_client_handled_total", grpc_code="NOT_FOUND") == 1
    assert value("bugless_web_backend_retries_total") == 1
    assert value("grpc_client_handling_seconds_count") == 2
    backends.close()


def backends_with(model: FailingModel, metrics: WebMetrics) -> Backends:
    """Backends on ``model``'s server (the rig's) that count into ``metrics``."""
    port = model.port
    address = ServiceAddress("127.0.0.1", port)
    settings = WebSettings(
        model=address, auth=address, session_keys=(SESSION_KEY,), insecure_local=True
    )
    return Backends(settings, metrics=metrics)


def test_every_unary_call_is_classified_as_a_read_or_a_write() -> None:
    reads: set[str] = set()
    for service, writes in WRITES.items():
        descriptor = DESCRIPTOR_POOL.FindServiceByName(f"bugless.v1.{service}")
        for method in descriptor.methods:
            if method.server_streaming or method.client_streaming:
                continue
            route = f"/bugless.v1.{service}/{method.name}"
            assert (route in READ_ROUTES) != (method.name in writes), route
            if route in READ_ROUTES:
                reads.add(route)
    assert reads == READ_ROUTES
