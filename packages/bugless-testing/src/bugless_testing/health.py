"""A gRPC server's health as a kubelet probe reads it, for tests that wait on readiness."""

from __future__ import annotations

import asyncio

from bugless_core.service_address import ServiceAddress
from bugless_dev.processes import check_grpc_health


async def health_until(
    address: ServiceAddress, service: str, wanted: str, *, seconds: float = 15.0
) -> None:
    """Ask ``grpc.health.v1`` for ``service`` at ``address`` until it answers ``wanted``.

    ``wanted`` is a status name (``SERVING``, ``NOT_SERVING``). Each ask is a
    new connection, as a probe's; bugless servers cache a readiness answer
    for about 2 s, so a change shows within that.

    Raises:
        AssertionError: it did not answer ``wanted`` within ``seconds`` (the
            last answer is named; None: no answer).
    """
    last: str | None = None
    try:
        async with asyncio.timeout(seconds):
            while (last := await check_grpc_health(address, service)) != wanted:  # noqa: ASYNC110 - a remote state
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(
            f"{service} at {address.authority} answered {last}, not {wanted}, for {seconds:g} s"
        ) from None
