"""The API's upload relay when the Model answers before the upload has ended.

The Model may refuse an upload after its header (no such issue, no access, a
declared size over the limit) while the gateway is still relaying the rest:
it then sends its status and resets the stream. Whatever the relay was doing
at that moment, the caller must get that status, never a transport error.
Real gRPC over a loopback socket, to a stand-in Model that refuses every
upload once it has read the header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_api import _wire_issues as named
from bugless_api._users import UserDirectory
from bugless_core._compat.grpclib import server_listener
from bugless_core.errors import NotFound
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_proto import v1


class _RefusingModel(v1.ModelBase):
    """Answers every upload NOT_FOUND as soon as its header is in."""

    def __init__(self) -> None:
        self.refused = asyncio.Event()

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        await anext(messages)
        self.refused.set()
        raise GRPCError(Status.NOT_FOUND, "issue 404 does not exist")


@pytest.fixture
async def refusing_model() -> AsyncIterator[tuple[_RefusingModel, v1.ModelStub]]:
    """The stand-in Model served on a loopback port, and a stub on a channel to it."""
    model = _RefusingModel()
    server = CorkedServer([model])
    await server.start("127.0.0.1", 0)
    listener = server_listener(server)
    assert listener is not None
    channel = CorkedChannel("127.0.0.1", listener.sockets[0].getsockname()[1])
    try:
        yield model, v1.ModelStub(channel)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_a_refusal_after_the_last_chunk_is_the_models_status(
    refusing_model: tuple[_RefusingModel, v1.ModelStub],
) -> None:
    """The Model's reset arrives after the last chunk went out, before the upload ended.

    That is the moment the gateway waits for its caller's end of stream (the
    Model's flow-control window takes a whole file): it used to end a stream
    the Model had closed and fail with h2's ``StreamClosedError``.
    """
    model, stub = refusing_model

    async def upload() -> AsyncIterator[v1.UploadAttachmentRequest]:
        yield v1.UploadAttachmentRequest(header=v1.UploadAttachmentHeader(issue_id=404))
        yield v1.UploadAttachmentRequest(chunk=b"the whole file")
        await model.refused.wait()
        # Frames of one connection arrive in order: once another call's answer
        # is in, the refusal's reset, written before it, has been read.
        with pytest.raises(GRPCError):
            await stub.get_server_info(v1.GetServerInfoRequest())

    users = UserDirectory(v1.AuthenticatorStub(stub.channel), timeout_seconds=10)
    with pytest.raises(NotFound, match="issue 404 does not exist"):
        await named.UPLOAD_ATTACHMENT.call_streamed(stub, users, upload())
