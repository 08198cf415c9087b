"""A service of a local stack drains as a deployment does: a transfer outlasts the grace.

The stack is the test plugin's session stack (``bugless_testing.stack``),
built as ``bugless dev`` and every stack test build theirs (a 5 s grace, no
``--drain-transfer-seconds`` of its own). A second Model started on it gets
SIGTERM while an attachment upload is in progress; the upload goes on past
the grace and is attached, and the Model exits as soon as it ended. Before,
the stack set every transfer bound to the grace, so a drain there cut an
upload at 5 s where a deployment (120 s) would not.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import signal
from collections.abc import AsyncIterator

from bugless_core.clients import acting_as
from bugless_dev.stack import LocalStack
from bugless_proto import v1
from bugless_testing.metrics import metric_total

#: How long the upload goes on after the signal: past the stack's 5 s grace.
UPLOAD_SECONDS = 7.0
PIECES = 28


async def test_an_upload_outlasts_the_grace_of_a_draining_stack_model(
    bugless_stack: LocalStack,
) -> None:
    stack = bugless_stack
    assert stack.config.grace_seconds < UPLOAD_SECONDS
    admin = await asyncio.to_thread(stack.add_user, f"drainer-{secrets.token_hex(3)}", admin=True)
    caller = v1.Caller(user_id=admin["user_id"], admin=True)
    model = await asyncio.to_thread(stack.start_model, "--metrics-port", "0", name="model-drained")
    assert model.address is not None
    channel = model.address.channel()
    try:
        stub = v1.ModelStub(channel)
        with acting_as(stack.assertion_for(caller.user_id, permissions=["admin"])):
            component = await stub.create_component(
                v1.CreateComponentRequest(caller=caller, name=f"Drain-{secrets.token_hex(3)}")
            )
            issue = await stub.create_issue(
                v1.CreateIssueRequest(
                    caller=caller,
                    fields=v1.IssueFields(title="an upload in a drain", component_id=component.id),
                )
            )
            pieces = [secrets.token_bytes(16 * 1024) for _ in range(PIECES)]
            header = v1.UploadAttachmentHeader(
                caller=caller, issue_id=issue.id, name="slow.bin", size=sum(map(len, pieces))
            )
            header_sent = asyncio.Event()

            async def slowly() -> AsyncIterator[v1.UploadAttachmentRequest]:
                yield v1.UploadAttachmentRequest(header=header)
                header_sent.set()
                for piece in pieces:
                    await asyncio.sleep(UPLOAD_SECONDS / PIECES)
                    yield v1.UploadAttachmentRequest(chunk=piece)

            upload = asyncio.create_task(stub.upload_attachment(slowly(), timeout=60))
        await header_sent.wait()
        # The Model must have the call in flight before the signal (the stack
        # drains with no --drain-seconds, so a call arriving after it is
        # refused): asked of the Model, not guessed from a pause, which a
        # loaded machine can outlast before the Model reads the header.
        async with asyncio.timeout(20):
            while not await metric_total(  # noqa: ASYNC110 - polls a process, which has no event
                model.metrics_port, "grpc_server_in_flight_calls", grpc_method="UploadAttachment"
            ):
                await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        model.process.signal(signal.SIGTERM)

        reply = await upload
        answered = loop.time()
        exit_code = await asyncio.to_thread(model.process.wait, 30)
        exited = loop.time()
    finally:
        channel.close()
        stack.stop_service(model)
    assert answered - signalled > stack.config.grace_seconds, "the case this is about"
    assert reply.attachment is not None
    assert reply.attachment.sha256 == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert exit_code == 0
    assert exited - answered < 10, "closed once the upload ended, not at the 120 s bound"
