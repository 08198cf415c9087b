"""A download the client resumes: at the attachment's end it finishes, past it it says why.

Through the real API over mutual TLS, on the real Model, with ``attachment
get``'s own download (:func:`download_here`). Where the first stream ends is
the test's to choose, not the network's: the real client's download stream
is wrapped so that its first call fails as a dropped connection does
(:class:`Unavailable`) once it has passed everything the API sent, and the
client resumes down a real second call from the bytes it has. Resuming at
exactly the size is a download of nothing (the Model answers it since
193b10a2); past it the Model answers OUT_OF_RANGE.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Bots

from bugless_api.cli.attachments import download_here
from bugless_api.client import BuglessClient, RetryPolicy
from bugless_api.server import RunningApi
from bugless_core.cli import exit_status_of
from bugless_core.errors import BuglessError, Unavailable
from bugless_proto import v1

#: Several chunks, so the first stream is more than its Attachment and one chunk.
SIZE = 300_000
#: Bytes a stream of :class:`_Dropping` brings before it drops.
STEP = 50_000


class _CutAtTheEnd(BuglessClient):
    """The real client, its first download stream cut after the API's last message.

    With ``extra``, those bytes are passed on after the real content (a
    stream that said more than the attachment holds); with ``withheld``, the
    first stream's Attachment message is not (the client cannot tell the
    size from it). Then the call fails as a connection dropped before the
    call's end. ``offsets`` records where each call started.
    """

    extra = b""
    withheld = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.offsets: list[int] = []

    async def iter_attachment(
        self, attachment_id: int, *, offset: int = 0
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        self.offsets.append(offset)
        first = len(self.offsets) == 1
        async for part in super().iter_attachment(attachment_id, offset=offset):
            if not (first and self.withheld and part.attachment is not None):
                yield part
        if first:
            if self.extra:
                yield v1.DownloadAttachmentResponse(chunk=self.extra)
            raise Unavailable("the bugless API is unreachable: connection lost")


async def _attached(client: BuglessClient, tmp_path: Path) -> tuple[int, bytes]:
    component = await client.create_component(f"Resumed-{secrets.token_hex(3)}")
    issue = await client.create_issue("a download resumed at its end", component.id)
    source = tmp_path / "build.log"
    source.write_bytes(secrets.token_bytes(SIZE))
    done = await client.attach(issue.id, source)
    assert done.attachment is not None
    return done.attachment.id, source.read_bytes()


class _Dropping(BuglessClient):
    """The real client, each download stream cut after :data:`STEP` bytes (a link that drops).

    Every call brings bytes, so a download resumed after each drop moves on;
    ``offsets`` records where each call started.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.offsets: list[int] = []

    async def iter_attachment(
        self, attachment_id: int, *, offset: int = 0
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        self.offsets.append(offset)
        async for part in super().iter_attachment(attachment_id, offset=offset):
            if not part.chunk or len(part.chunk) <= STEP:
                yield part
                continue
            yield v1.DownloadAttachmentResponse(chunk=part.chunk[:STEP])
            raise Unavailable("the bugless API is unreachable: connection lost")


def _client(api: RunningApi, bots: Bots, kind: type[BuglessClient] = _CutAtTheEnd) -> Any:
    return kind(
        f"127.0.0.1:{api.port}",
        cert=bots["robot"].cert,
        key=bots["robot"].key,
        ca=bots.stack.pki.ca_file,
        timeout=30,
        retry=RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02),
    )


async def test_a_download_cut_after_its_last_byte_resumes_at_the_end_and_finishes(
    api: RunningApi, bots: Bots, tmp_path: Path
) -> None:
    async with _client(api, bots) as client:
        attachment_id, content = await _attached(client, tmp_path)
        target = tmp_path / "got.log"
        attachment, written = await download_here(client, attachment_id, target, force=False)
    assert client.offsets == [0, SIZE]  # the second call: at the end, nothing to read
    assert written == target
    assert attachment.size == SIZE
    assert target.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["build.log", "got.log"]


@pytest.mark.parametrize(
    ("withheld", "offsets"),
    [
        (False, [0]),  # the client sees the extra byte is past the size: no resume
        (True, [0, SIZE + 1]),  # it cannot: the Model answers the resume OUT_OF_RANGE
    ],
)
async def test_a_download_that_received_more_than_the_attachment_says_so_and_keeps_nothing(
    api: RunningApi, bots: Bots, tmp_path: Path, *, withheld: bool, offsets: list[int]
) -> None:
    """Before, the client wrote the byte too, resumed past the end, and ``attachment
    get`` printed the Model's "offset: 300001 is past the end of attachment N", an
    offset its user never gave."""
    async with _client(api, bots) as client:
        client.extra, client.withheld = b"!", withheld
        attachment_id, _content = await _attached(client, tmp_path)
        target = tmp_path / "got.log"
        with pytest.raises(BuglessError) as failed:
            await download_here(client, attachment_id, target, force=False)
    assert client.offsets == offsets
    assert failed.value.message == (
        f"attachment {attachment_id} is {SIZE} bytes, but its download received {SIZE + 1}: "
        f"what arrived is not the attachment; {target} was left as it was: download it again"
    )
    assert failed.value.reason == "DOWNLOAD_PAST_END"
    assert exit_status_of(failed.value, answered_by_service=True) == 1
    assert sorted(os.listdir(tmp_path)) == ["build.log"]  # no partial file


async def test_a_download_dropped_more_often_than_the_policy_allows_ends_while_calls_bring_bytes(
    api: RunningApi, bots: Bots, tmp_path: Path
) -> None:
    """Before, the policy's attempts (3) counted every drop of the whole download, so
    one cut more times than that failed however far each resume had got."""
    async with _client(api, bots, _Dropping) as client:
        attachment_id, content = await _attached(client, tmp_path)
        target = tmp_path / "got.log"
        attachment, _written = await download_here(client, attachment_id, target, force=False)
    assert len(client.offsets) > client.retry.attempts  # dropped more often than that
    assert client.offsets == sorted(set(client.offsets))  # each resume further on
    assert attachment.size == SIZE
    assert target.read_bytes() == content
