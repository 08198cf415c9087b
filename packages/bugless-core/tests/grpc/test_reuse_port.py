"""Several processes of one service on one port (``reuse_port``)."""

from __future__ import annotations

import pytest
from grpc_test_server import StartRunner

from bugless_core.grpc import GrpcServerSettings


async def test_runners_with_reuse_port_share_a_port_and_others_cannot_bind_it(
    start_runner: StartRunner,
) -> None:
    first = await start_runner(
        GrpcServerSettings(insecure_local=True, port=0, reuse_port=True, drain_seconds=0)
    )
    second = await start_runner(
        GrpcServerSettings(insecure_local=True, port=first.port, reuse_port=True, drain_seconds=0)
    )
    assert second.port == first.port
    with pytest.raises(OSError, match="in use"):
        await start_runner(
            GrpcServerSettings(insecure_local=True, port=first.port, drain_seconds=0)
        )
