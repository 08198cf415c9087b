"""Health follows the database: NOT_SERVING while it is unreachable, SERVING when back."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from auth_support import StartAuth
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from bugless_testing.cuttable_proxy import CuttableProxy, via_proxy


async def status(port: int) -> int:
    from grpclib.client import Channel

    channel = Channel("127.0.0.1", port)
    try:
        answer = await HealthStub(channel).Check(
            HealthCheckRequest(service="bugless.v1.Authenticator")
        )
        assert answer is not None
        return int(answer.status)
    finally:
        channel.close()


async def wait_for(port: int, wanted: int, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while await status(port) != wanted:  # noqa: ASYNC110 - polling a remote state
            await asyncio.sleep(0.2)


async def test_health_is_not_serving_while_the_database_is_down(
    start_auth_server: StartAuth, auth_database: str
) -> None:
    parts = urlsplit(auth_database)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    server = await start_auth_server(database_url=via_proxy(auth_database, proxy.port))
    port = server.runner.port
    await wait_for(port, HealthCheckResponse.SERVING)

    await proxy.cut()
    await wait_for(port, HealthCheckResponse.NOT_SERVING)

    await proxy.start()
    await wait_for(port, HealthCheckResponse.SERVING)
    await proxy.cut()
