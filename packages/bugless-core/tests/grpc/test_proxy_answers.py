"""An answer that is HTTP but not gRPC (a proxy's error page) is an outage, not an old release.

grpclib's client reads ``:status`` before the content type: a proxy or load
balancer answering HTTP 502 with its HTML page becomes UNAVAILABLE "Received
:status = '502'", a 404 UNIMPLEMENTED, a 200 HTML page UNKNOWN "Invalid
content-type"; only a 200 without a content type (what a grpclib server of an
early release answers a method it does not serve, grpc-status 12) is "Missing
content-type header", which bugless reads as that older release. The "proxy"
here is a real HTTP/2 server over TLS (trustme certificates) on loopback,
answering every request with what the test gives it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from grpc_test_server import Pki
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from bugless_core.clients import call, forward_assertions, method_missing
from bugless_core.errors import MethodNotServed, Unavailable
from bugless_proto import v1

#: Response headers (and a body) the proxy answers every request with.
Answer = tuple[list[tuple[str, str]], bytes]
StartProxy = Callable[[Answer], Awaitable[Channel]]

BAD_GATEWAY: Answer = (
    [(":status", "502"), ("content-type", "text/html")],
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
)
#: A grpclib server of an early release, asked for a method it does not serve.
EARLY_RELEASE: Answer = ([(":status", "200"), ("grpc-status", "12")], b"")


async def _serve(
    answer: Answer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Speak HTTP/2 on one connection, answering each request with ``answer``."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    writer.write(connection.data_to_send())
    headers, body = answer
    try:
        while data := await reader.read(65536):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if isinstance(event, h2.events.RequestReceived):
                    connection.send_headers(event.stream_id, headers, end_stream=not body)
                    if body:
                        connection.send_data(event.stream_id, body, end_stream=True)
            writer.write(connection.data_to_send())
            await writer.drain()
    except (ConnectionError, h2.exceptions.ProtocolError):
        pass  # the client went away or reset its stream: this connection is done
    finally:
        writer.close()


@pytest.fixture
async def start_proxy(pki: Pki) -> AsyncIterator[StartProxy]:
    """Start the answering server over TLS on a loopback port; a channel trusting its CA."""
    servers: list[asyncio.Server] = []
    channels: list[Channel] = []

    async def start(answer: Answer) -> Channel:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.set_alpn_protocols(["h2"])
        server = await asyncio.start_server(
            lambda r, w: _serve(answer, r, w), "127.0.0.1", 0, ssl=context
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=pki.ca)
        client.set_alpn_protocols(["h2"])
        # As every bugless client's: it notes each call's route for call().
        channel = forward_assertions(Channel("127.0.0.1", port, ssl=client))
        channels.append(channel)
        return channel

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (BAD_GATEWAY, "answered HTTP 502, not gRPC"),
        (([(":status", "404")], b""), "answered HTTP 404, not gRPC"),
        (([(":status", "401")], b""), "answered HTTP 401, not gRPC"),
        (
            ([(":status", "200"), ("content-type", "text/html")], b"<html>maintenance</html>"),
            "answered content type 'text/html', not gRPC",
        ),
    ],
)
async def test_a_proxys_answer_is_unavailable_naming_what_was_called(
    start_proxy: StartProxy, answer: Answer, said: str
) -> None:
    """Before: the 502 was "Received :status = '502'", the 404 UNIMPLEMENTED, the 401 a sign-in."""
    channel = await start_proxy(answer)
    with pytest.raises(Unavailable) as refused:
        await call(v1.ModelStub(channel).get_issue, v1.GetIssueRequest(issue_id=9), timeout=10)
    message = str(refused.value)
    assert message.startswith(f"the Model (called for GetIssue) {said}"), message
    assert "a proxy or load balancer in between?" in message
    assert not isinstance(refused.value, MethodNotServed)
    status = answer[0][0][1]
    if status != "200":
        assert refused.value.metadata == {"http_status": status}


async def test_the_502_is_no_missing_method_and_an_early_releases_bare_answer_is_one(
    start_proxy: StartProxy,
) -> None:
    """The same server, answering as an early release does, is read as that release."""
    proxy = await start_proxy(BAD_GATEWAY)
    early = await start_proxy(EARLY_RELEASE)
    request = v1.GetUserGroupsRequest(user_ids=["u_1"])
    with pytest.raises(Unavailable):
        await call(v1.AuthenticatorStub(proxy).get_user_groups, request, timeout=10)
    with pytest.raises(MethodNotServed) as old:
        await call(v1.AuthenticatorStub(early).get_user_groups, request, timeout=10)
    assert "the Authenticator does not serve GetUserGroups" in str(old.value)
    for channel, missing in ((proxy, False), (early, True)):
        with pytest.raises(GRPCError) as raw:
            await v1.AuthenticatorStub(channel).get_user_groups(request, timeout=10)
        assert method_missing(raw.value) is missing
