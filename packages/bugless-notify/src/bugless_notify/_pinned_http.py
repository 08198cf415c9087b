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

The transport (:class:`CheckedTransport`) is httpx's public transport
interface over httpcore's public pool: httpx's own ``AsyncHTTPTransport``
takes no network backend, and replacing its private ``_pool`` (as this module
once did) would break silently when httpx renames it.

Imported where a channel is built (httpcore's import is not free).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

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


#: httpcore's exceptions as httpx raises them, the most specific first (an
#: httpcore.ConnectTimeout is both a timeout and a network error: httpx calls it
#: httpx.ConnectTimeout). Both sides are the libraries' public classes.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Raise httpcore's errors as httpx's, as httpx's own transport does.

    Anything else (:class:`ForbiddenAddress` among them) passes unchanged.
    """
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    """A response body from httpcore, its errors raised as httpx's."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class CheckedTransport(httpx.AsyncBaseTransport):
    """An httpx transport on an httpcore connection pool over a :class:`CheckedBackend`.

    httpx's own transport builds its pool with no way to pass a network
    backend; this one builds the pool (httpcore's public
    ``AsyncConnectionPool(network_backend=...)``) and does what httpx's
    does with it, through public API only: the request handed to httpcore,
    the response and its body handed back, httpcore's errors raised as
    httpx's. HTTP/1.1 only, no retries, as httpx's default.

    No proxy, from the environment or otherwise: a proxy would resolve the
    host itself, past the check.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, backend: CheckedBackend
    ) -> None:
        """Verify TLS with ``ssl_context``, within ``limits``, connecting through ``backend``."""
        self._checked_pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled (or new, checked) connection."""
        assert isinstance(request.stream, httpx.AsyncByteStream)  # an AsyncClient's request
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._checked_pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)  # an async pool's response
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._checked_pool.aclose()
