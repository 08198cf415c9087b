"""An httpx transport that resolves a host itself, checks every address, and connects to it.

httpcore asks its network backend to ``connect_tcp(host, port)`` with the
URL's host *name*; :class:`CheckedBackend` resolves the name once, refuses the
connection when any address it resolves to is forbidden
(:class:`~bugless_notify.addresses.AddressPolicy`), and opens the socket to an
address it checked. Nothing else changes: TLS is then started by httpcore
with ``server_hostname`` the URL's host, so SNI, the ``Host`` header and the
certificate's check against the host name are as for any request, and the
connection pool stays keyed by the host name. There is no second lookup an
attacker's DNS could answer differently (rebinding).

Imported where a channel is built (httpcore's import is not free).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from bugless_notify.addresses import AddressPolicy

#: ``host, port`` to the addresses it resolves to (tests give a fixed answer).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class ForbiddenAddress(Exception):
    """A component webhook's host resolves to an address the policy forbids.

    Not an httpcore exception, so httpx lets it through unchanged and the
    channel can tell it (permanent) from a network failure (retried).
    """


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system's resolver, in its order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connect only to addresses the policy allows, resolving each host once."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver = system_resolver) -> None:
        """Check with ``policy``; resolve with ``resolver``."""
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, seconds: float | None) -> list[str]:
        try:
            async with asyncio.timeout(seconds):
                return await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {seconds} s") from None
        except OSError as exc:  # socket.gaierror: retried as any failure to connect
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to the first checked address of ``host`` that answers."""
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                shown = reason if address == host else f"{host} resolves to {reason}"
                raise ForbiddenAddress(shown)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # addresses is not empty
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: webhooks go over TCP."""
        raise ForbiddenAddress(f"unix socket {path}")

    async def sleep(self, seconds: float) -> None:
        """As the default backend sleeps."""
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool on a :class:`CheckedBackend`.

    No proxy from the environment: a proxy would resolve the host itself,
    past the check.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, backend: CheckedBackend
    ) -> None:
        """Verify TLS with ``ssl_context``, within ``limits``, connecting through ``backend``."""
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        # httpx builds the pool without a way to pass a network backend; the
        # same pool as its own, but on ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
