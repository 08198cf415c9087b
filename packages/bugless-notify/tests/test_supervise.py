"""The notifier's loops under supervision, on a real gRPC server over a loopback socket."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_dev.processes import check_grpc_health
from bugless_notify._supervise import LoopEnded, serve_supervised
from bugless_proto import v1


class _Unimplemented(v1.NotifierBase):
    """The Notifier service with no method implemented: the server needs one service."""


async def _runner() -> GrpcServiceRunner:
    settings = GrpcServerSettings(
        host="127.0.0.1", port=0, insecure_local=True, drain_seconds=0.2, grace_seconds=1.0
    )
    runner = GrpcServiceRunner(
        [_Unimplemented()], settings, name="notify", metrics_registry=CollectorRegistry()
    )
    await runner.start()
    return runner


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize("failure", [RuntimeError("lost its connection"), None])
async def test_a_loop_that_ends_on_its_own_drains_the_server_and_raises(
    failure: Exception | None,
) -> None:
    runner = await _runner()
    address = ServiceAddress("127.0.0.1", runner.port)
    release = asyncio.Event()

    async def breaks() -> None:
        await release.wait()
        if failure is not None:
            raise failure

    others = asyncio.ensure_future(_forever())
    broken = asyncio.ensure_future(breaks())
    serving = asyncio.ensure_future(
        serve_supervised(runner, {"delivery worker": broken, "digests": others})
    )
    try:
        assert await check_grpc_health(address, "") == "SERVING"
        release.set()
        with pytest.raises(LoopEnded, match="delivery worker stopped on its own") as raised:
            await asyncio.wait_for(serving, 30)
        assert raised.value.__cause__ is failure
        # Drained and closed: nothing answers on the port any more.
        assert await check_grpc_health(address, "", within_seconds=1.0) is None
        assert not others.done()  # the caller stops the other loops (RunningNotifier.close)
    finally:
        others.cancel()
        serving.cancel()
        await runner.close()
