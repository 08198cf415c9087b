"""A Model servicer for the gRPC bootstrap tests, and a server process serving it.

The tests import :class:`SlowModel`; ``test_signals.py`` also runs this file as
a script, because signal handling is only honest in a process of its own.
Run as a script it prints ``{"port": N}`` on stdout once listening, logs JSON
on stderr, and serves until SIGTERM, exiting with the status a service would.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from google.rpc import error_details_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from bugless_core import eventloop
from bugless_core.errors import ERROR_DOMAIN, IssueVersionConflict, to_grpc_error
from bugless_core.grpc import (
    ANY_CLIENT,
    AccessTable,
    GrpcServerSettings,
    GrpcServiceRunner,
    build_client_ssl_context,
    current_metadata,
    current_peer,
    current_peer_certificate,
    every_method,
)
from bugless_core.logs import configure_logging
from bugless_proto import v1

#: Request metadata key: seconds the handler sleeps before answering.
DELAY_KEY = "x-test-delay-seconds"
#: Request metadata key: the handler answers once the test calls
#: :meth:`SlowModel.release_held` (a call in flight for exactly as long as a
#: test needs, where a delay would race the test's steps on a loaded machine).
HOLD_KEY = "x-test-hold"
#: Request metadata key: "grpc" raises INVALID_ARGUMENT, "crash" a RuntimeError,
#: "conflict" an ``IssueVersionConflict`` (a status with ``ErrorInfo`` details).
FAIL_KEY = "x-test-fail"
#: Request metadata key: RESOURCE_EXHAUSTED whose ``ErrorInfo`` carries this
#: ``retry_after``, as written (a server forwarding what it was told).
RETRY_AFTER_KEY = "x-test-retry-after"


#: Type of the ``start_runner`` fixture (see conftest.py).
StartRunner = Callable[..., Awaitable[GrpcServiceRunner]]
#: Type of the ``open_channel`` fixture (see conftest.py).
OpenChannel = Callable[..., Channel]

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM files of a CA, a server and a client it signed, and a stranger it did not."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_der: bytes
    stranger_cert: str
    stranger_key: str

    def mutual_tls_settings(
        self, *, drain_seconds: float = 0.0, grace_seconds: float = 1.0
    ) -> GrpcServerSettings:
        """Settings of a server that requires client certificates signed by ``ca``."""
        return GrpcServerSettings(
            tls_cert=Path(self.server_cert),
            tls_key=Path(self.server_key),
            client_ca=Path(self.ca),
            drain_seconds=drain_seconds,
            grace_seconds=grace_seconds,
        )

    def client_context(self) -> ssl.SSLContext:
        """What a frontend uses to call the server: trusts ``ca``, shows the client cert."""
        return build_client_ssl_context(self.ca, self.client_cert, self.client_key)


async def health_status(channel: Channel, service: str = "") -> int:
    """Ask ``grpc.health.v1.Health/Check`` about ``service`` ("" is the whole server)."""
    response = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=5)
    assert response is not None
    return int(response.status)


class SlowModel(v1.ModelBase):
    """Answers GetServerInfo, as slowly or as badly as the request metadata asks.

    It records what the handler saw of its caller, so that tests can check the
    context variables from inside a real call. Any verified client may call it
    (its test certificates name no service identity).
    """

    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Model", {ANY_CLIENT})

    def __init__(self) -> None:
        self.seen_certificates: list[bytes | None] = []
        self.seen_connection_ids: list[int] = []
        self._released = asyncio.Event()

    def release_held(self) -> None:
        """Let the calls held by :data:`HOLD_KEY` answer (and any later ones at once)."""
        self._released.set()

    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        metadata = current_metadata()
        peer = current_peer()
        self.seen_certificates.append(current_peer_certificate())
        if peer is not None:
            self.seen_connection_ids.append(peer.id)
        delay = metadata.get(DELAY_KEY)
        if isinstance(delay, str):
            await asyncio.sleep(float(delay))
        if metadata.get(HOLD_KEY):
            await self._released.wait()
        failure = metadata.get(FAIL_KEY)
        if failure == "grpc":
            raise GRPCError(Status.INVALID_ARGUMENT, "the test asked for a bad argument")
        if failure == "crash":
            raise RuntimeError("the test asked for a crash")
        if failure == "conflict":
            raise to_grpc_error(IssueVersionConflict(7, expected_version=3, current_version=5))
        retry_after = metadata.get(RETRY_AFTER_KEY)
        if isinstance(retry_after, str):
            info = error_details_pb2.ErrorInfo(
                reason="RATE_LIMITED", domain=ERROR_DOMAIN, metadata={"retry_after": retry_after}
            )
            raise GRPCError(Status.RESOURCE_EXHAUSTED, "the test asked for a rate limit", [info])
        return v1.GetServerInfoResponse(backend="test", version="0", capabilities=["slow"])

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        """Take an upload as fast as the client sends it; answer with its size (a transfer)."""
        size = 0
        async for message in messages:
            size += len(message.chunk or b"")
        return v1.UploadAttachmentResponse(attachment=v1.Attachment(id=1, size=size))


HERE = Path(__file__).parent
#: What a process running this file (or a client beside it) needs on ``sys.path``.
SOURCES = [HERE.parent / "src", HERE.parents[1] / "bugless-proto" / "src"]

#: The drain of :class:`ServerProcess`'s server: long enough for a test to see
#: NOT_SERVING before it ends, however late a loaded machine runs the process
#: after the signal (it was 2 s, with 1.8 s to see it).
PROCESS_DRAIN_SECONDS = 5.0


class ServerProcess:
    """A server started from this file, run as a script, in a process of its own."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        #: stderr lines :meth:`wait_logged` has read so far (kept for :meth:`log_records`).
        self._read: list[str] = []

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    async def exit_code(self, within: float) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def wait_logged(self, words: str, within: float) -> None:
        """Return as soon as the process logs a line holding ``words``."""
        assert self.process.stderr is not None
        async with asyncio.timeout(within):
            while True:
                line = (await self.process.stderr.readline()).decode()
                assert line, f"the server process ended without logging {words!r}: {self._read}"
                self._read.append(line)
                if words in line:
                    return

    async def log_records(self) -> list[dict[str, object]]:
        """The JSON log lines the process wrote to stderr (once it has exited)."""
        assert self.process.stderr is not None
        lines = [*self._read, *(await self.process.stderr.read()).decode().splitlines()]
        return [json.loads(line) for line in lines if line.startswith("{")]


async def _serve(drain_seconds: float, grace_seconds: float) -> int:
    settings = GrpcServerSettings(
        insecure_local=True, port=0, drain_seconds=drain_seconds, grace_seconds=grace_seconds
    )
    runner = GrpcServiceRunner([SlowModel()], settings, name="test-model")
    await runner.start()
    serving = asyncio.ensure_future(runner.serve_until_signalled())
    # Its first step installs the signal handlers: a test that signals as soon
    # as it reads the port must not meet the default action (an exit by signal).
    await asyncio.sleep(0)
    print(json.dumps({"port": runner.port}), flush=True)
    return await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drain-seconds", type=float, default=0.5)
    parser.add_argument("--grace-seconds", type=float, default=5.0)
    args = parser.parse_args()
    configure_logging("info", json=True, stream=sys.stderr)
    raise SystemExit(eventloop.run(_serve(args.drain_seconds, args.grace_seconds)))


if __name__ == "__main__":
    main()
