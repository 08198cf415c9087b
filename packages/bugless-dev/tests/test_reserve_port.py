"""``reserve_port``: a port named before its server starts, that nobody else can take.

``bugless dev`` tells the web where the notifier will listen before the
notifier starts; the reservation must keep every other process off the port
while letting the service itself (a real gRPC runner, as ``bugless notify
serve`` runs) bind and listen on it.
"""

from __future__ import annotations

import errno
import socket

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_dev.processes import check_grpc_health, reserve_port
from bugless_proto import v1


async def test_a_reserved_port_is_refused_to_others_and_served_by_the_service() -> None:
    reservation = reserve_port()
    port: int = reservation.getsockname()[1]
    runner = GrpcServiceRunner(
        [v1.ModelBase()],
        GrpcServerSettings(port=port, insecure_local=True, drain_seconds=0, grace_seconds=1),
        name="reserved",
        metrics_registry=CollectorRegistry(),
    )
    try:
        with socket.socket() as other, pytest.raises(OSError, match="in use") as refused:
            other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE

        await runner.start()
        assert runner.port == port
        with socket.socket() as late:
            late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="in use"):  # even with SO_REUSEADDR
                late.bind(("127.0.0.1", port))
        reservation.close()
        address = ServiceAddress("127.0.0.1", port)
        assert await check_grpc_health(address, "bugless.v1.Model") == "SERVING"
    finally:
        reservation.close()
        await runner.close()
