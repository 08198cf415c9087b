"""Moving off a replica that drains, when the balancer picks one per connection.

Between services every hop is mutual TLS, so whatever balances the Model or
the Authenticator (a Kubernetes Service, HAProxy in ``mode tcp``) passes TLS
through and picks a replica once per *connection*, not per call: a frontend's
long-lived HTTP/2 connection stays on the replica it first reached. When that
replica drains, it first reports NOT_SERVING, then refuses every new call on
its open connections with UNAVAILABLE tagged ``DRAINING`` (never run, so safe
to send again, writes included), and closes them once its calls in progress
end. A client therefore has to leave by itself:

* :func:`send_again_if_refused` sends a call refused while draining once more
  on a *new* connection (the balancer no longer routes new connections to a
  replica that stopped accepting them); :class:`DrainAwareModelStub` and
  :class:`DrainAwareAuthenticatorStub` do it for every unary call;
* :func:`serving_behind` asks whether *some* replica behind an address is
  SERVING, each time on a fresh connection, so a readiness check does not
  report the whole tier down because its one connection is pinned to the
  replica on its way out.

Nothing else is retried here: a call that failed any other way may have run.
The web tier retries reads as well (``bugless_web.retries``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from bugless_core.clients import ServiceAddress, channel_connection, forget_connection
from bugless_core.errors import Unavailable, from_grpc_error
from bugless_proto import v1
from bugless_proto.stubs import UnaryUnaryInterceptor

_log = logging.getLogger("bugless_core.failover")
T = TypeVar("T")
_Send = Callable[..., Awaitable[T]]

#: Bounds of the pause before sending a refused call again, in seconds
#: (jittered, so that every client of a draining replica does not return at once).
PAUSE_SECONDS = (0.02, 0.1)


def refused_while_draining(error: GRPCError) -> bool:
    """Whether ``error`` is a draining server's refusal of a call it never ran."""
    if error.status is not Status.UNAVAILABLE:
        return False
    mapped = from_grpc_error(error)
    return isinstance(mapped, Unavailable) and mapped.refused_while_draining


async def send_again_if_refused(
    channel: Channel, send: _Send[T], route: str, request: Any, *args: Any, **options: Any
) -> T:
    """``send(route, request, ...)``; once more on a new connection if a draining server refused it.

    The connection the refused call went down is forgotten, not closed: the
    calls still running on it finish, and the server closes it afterwards.

    Raises:
        GRPCError: The call failed (the second attempt's error if there was one).
        StreamTerminatedError: The connection dropped.
        OSError: No connection could be made.
    """
    used = channel_connection(channel)
    try:
        return await send(route, request, *args, **options)
    except GRPCError as exc:
        if not refused_while_draining(exc):
            raise
        forget_connection(channel, used)
    pause = random.uniform(*PAUSE_SECONDS)
    _log.info(
        "%s was refused by a draining replica; sending it again on a new connection",
        route,
        extra={"route": route},
    )
    await asyncio.sleep(pause)
    return await send(route, request, *args, **options)


class DrainAwareModelStub(UnaryUnaryInterceptor, v1.ModelStub):
    """The Model's stub; a unary call refused while draining goes once more, elsewhere."""

    async def intercept_unary_unary(
        self, send: _Send[T], route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        """Send through :func:`send_again_if_refused`."""
        return await send_again_if_refused(
            self.channel, send, route, request, response_type, **options
        )


class DrainAwareAuthenticatorStub(UnaryUnaryInterceptor, v1.AuthenticatorStub):
    """The Authenticator's stub; a unary call refused while draining goes once more, elsewhere."""

    async def intercept_unary_unary(
        self, send: _Send[T], route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        """Send through :func:`send_again_if_refused`."""
        return await send_again_if_refused(
            self.channel, send, route, request, response_type, **options
        )


async def serving_behind(
    address: ServiceAddress, service: str, *, attempts: int = 2, each_seconds: float = 1.0
) -> bool:
    """Whether a replica behind ``address`` reports ``service`` SERVING.

    Each attempt opens a connection of its own (closed afterwards), which the
    balancer may route to another replica: a replica that drains, or one cut
    off from its database, does not by itself make the answer False while
    another one serves.
    """
    for _ in range(attempts):
        channel = address.channel()
        try:
            reply = await HealthStub(channel).Check(
                HealthCheckRequest(service=service), timeout=each_seconds
            )
        except Exception:  # unreachable or erroring reads as "not serving"
            reply = None
        finally:
            channel.close()
        if reply is not None and reply.status == HealthCheckResponse.SERVING:
            return True
    return False
