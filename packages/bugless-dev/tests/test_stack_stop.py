"""Stopping a stack's service: the stop signal, then "stop now", and SIGKILL only last.

A drain may wait up to 120 s for a transfer (the services' default
``--drain-transfer-seconds``), longer than a stack waits for a service to
stop. A service still stopping then is told to stop now (a bugless service's
second SIGTERM), so it still exits on its own, its connections closed and its
log complete (with status 1, as that cut a call); before, it was killed. Only a
process that ignores that too is killed. Both late steps are noted in the
process's log.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bugless_core.clients import acting_as
from bugless_core.exit_status import EXIT_CUT_AT_SIGNAL
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack
from bugless_proto import v1
from bugless_testing.metrics import metric_total


async def test_a_model_waiting_for_a_hung_upload_is_told_to_stop_now_not_killed(
    bugless_stack: LocalStack,
) -> None:
    stack = bugless_stack
    admin = await asyncio.to_thread(stack.add_user, f"stopper-{secrets.token_hex(3)}", admin=True)
    caller = v1.Caller(user_id=admin["user_id"], admin=True)
    model = await asyncio.to_thread(
        stack.start_model, "--metrics-port", "0", name="model-hung-upload"
    )
    assert model.address is not None
    assert model.metrics_port is not None
    channel = model.address.channel()
    # Past the drain and the grace, so the Model is waiting for the transfer (120 s).
    within = stack.config.drain_seconds + stack.config.grace_seconds + 2
    never = asyncio.Event()
    try:
        stub = v1.ModelStub(channel)
        with acting_as(stack.assertion_for(caller.user_id, permissions=["admin"])):
            component = await stub.create_component(
                v1.CreateComponentRequest(caller=caller, name=f"Stop-{secrets.token_hex(3)}")
            )
            issue = await stub.create_issue(
                v1.CreateIssueRequest(
                    caller=caller,
                    fields=v1.IssueFields(title="a hung upload", component_id=component.id),
                )
            )
            header = v1.UploadAttachmentHeader(
                caller=caller, issue_id=issue.id, name="hung.bin", size=1024
            )

            async def hung() -> AsyncIterator[v1.UploadAttachmentRequest]:
                yield v1.UploadAttachmentRequest(header=header)
                await never.wait()  # the browser behind it went quiet

            upload = asyncio.create_task(stub.upload_attachment(hung(), timeout=120))
        offset = model.log.stat().st_size
        await _in_flight(model.metrics_port, "UploadAttachment")
        started = time.monotonic()
        await asyncio.to_thread(model.process.stop, within, 10)
        stopped = time.monotonic() - started
        upload.cancel()
        await asyncio.gather(upload, return_exceptions=True)
    finally:
        never.set()
        channel.close()
        stack.stop_service(model)
    lines = model.log.read_text(errors="replace")[offset:].splitlines()
    # Exited on its own (not -SIGKILL), saying that the second SIGTERM cut a call.
    assert model.process.returncode == EXIT_CUT_AT_SIGNAL, lines
    assert [line for line in lines if "1 transfer(s) still running after the grace" in line]
    assert [line for line in lines if f"still running {within:g}s after SIGTERM: SIGTERM" in line]
    assert [line for line in lines if "received SIGTERM again; stopping now" in line], lines
    assert not [line for line in lines if "SIGKILL" in line], lines
    assert stopped < within + 10, "ended by the second SIGTERM, not the transfer bound"


async def _in_flight(metrics_port: int, method: str) -> None:
    """Wait until the server's ``/metrics`` counts a ``method`` call in flight."""
    in_flight = "grpc_server_in_flight_calls"
    async with asyncio.timeout(30):
        while True:
            if await metric_total(metrics_port, in_flight, grpc_method=method) >= 1:
                return
            await asyncio.sleep(0.05)


def test_a_process_that_ignores_stop_now_too_is_killed(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(120)\n"
    )
    log = tmp_path / "stubborn.log"
    child = spawn("stubborn", [sys.executable, "-c", script], {}, log)
    child.wait_until(lambda: "ignoring SIGTERM" in child.output(), 30)
    child.stop(0.5, 0.5)
    assert child.returncode == -signal.SIGKILL
    output = child.output()
    assert "still running 0.5s after SIGTERM: SIGTERM" in output
    assert "still running 0.5s after SIGTERM: SIGKILL" in output
