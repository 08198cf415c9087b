"""The ``retry-after`` trailer of a RESOURCE_EXHAUSTED answer, whatever its ErrorInfo says.

The runner copies a rate limit's ``retry_after`` (from the ErrorInfo a
handler raised, or forwarded from another service) into a ``retry-after``
trailer, whole seconds rounded up. A value that is no wait ("1e999" reads
as infinity, on which rounding up raised OverflowError) used to break the
call's trailers; now the call ends with its status and message, and no
trailer.
"""

from __future__ import annotations

import pytest
from grpc_test_server import RETRY_AFTER_KEY, OpenChannel, StartRunner
from grpclib.const import Status
from grpclib.events import RecvTrailingMetadata, listen
from grpclib.exceptions import GRPCError

from bugless_proto import v1


@pytest.mark.parametrize(
    ("retry_after", "trailer"),
    [
        ("2.5", "3"),
        ("0", "1"),
        ("1e999", None),
        ("-1e999", None),
        ("inf", None),
        ("nan", None),
        ("1e300", None),
        ("soon", None),
    ],
)
async def test_a_rate_limit_ends_with_its_status_and_a_trailer_only_for_a_wait(
    start_runner: StartRunner, open_channel: OpenChannel, retry_after: str, trailer: str | None
) -> None:
    runner = await start_runner()
    channel = open_channel(runner.port)
    trailers: list[dict[str, str]] = []

    async def record(event: RecvTrailingMetadata) -> None:
        trailers.append({str(k): str(v) for k, v in event.metadata.items()})

    listen(channel, RecvTrailingMetadata, record)
    with pytest.raises(GRPCError) as caught:
        await v1.ModelStub(channel).get_server_info(
            timeout=5, metadata={RETRY_AFTER_KEY: retry_after}
        )
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
    assert caught.value.message == "the test asked for a rate limit"
    (received,) = trailers
    assert received.get("retry-after") == trailer
