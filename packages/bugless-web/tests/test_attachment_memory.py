"""A large file up and down through real ``bugless web serve`` and Model processes, memory bounded.

The file is 64 MiB here (the 200 MiB figures are in ``bench/attachments.py``):
enough that holding it whole would show, small enough for CI. Each service's
peak resident memory during the transfer may exceed its resident memory
before by a bound that does not depend on the file's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
from web_support import PASSWORD, World, create_issue, csrf_of

from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.rss import MIB, peak_rss, reset_peak, rss

SIZE = 64 * MIB
#: What a service may grow by while the file passes through, whatever its size.
GROWTH_BOUND = 40 * MIB


async def _content() -> AsyncIterator[bytes]:
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(SIZE // len(block)):
        yield block


async def _signed_in(client: httpx.AsyncClient, username: str) -> str:
    page = await client.get("/signin")
    response = await client.post(
        "/signin",
        data={"username": username, "password": PASSWORD, "_csrf": csrf_of(page.text), "next": "/"},
    )
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


async def test_web_and_model_memory_stays_bounded_while_a_large_file_moves(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "A large attachment")
    model_pid = world.stack.first("model").process.pid
    web_pid = web_server.process.pid
    async with httpx.AsyncClient(
        base_url=str(web_server.url), timeout=120, follow_redirects=True
    ) as client:
        csrf = await _signed_in(client, "bob")
        before = {"web": rss(web_pid), "model": rss(model_pid)}
        reset_peak(web_pid)
        reset_peak(model_pid)
        response = await client.post(
            f"/issues/{issue.id}/attachments",
            content=_content(),
            headers={"x-csrf-token": csrf, "x-file-name": "big.bin", "content-length": str(SIZE)},
        )
        assert response.status_code == 201, response.text
        url = response.json()["url"]
        digest = hashlib.sha256()
        received = 0
        async with client.stream("GET", url) as download:
            assert download.status_code == 200
            async for chunk in download.aiter_bytes():
                digest.update(chunk)
                received += len(chunk)
        peaks = {"web": peak_rss(web_pid), "model": peak_rss(model_pid)}
    assert received == SIZE
    expected = hashlib.sha256()
    async for block in _content():
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()
    for name, peak in peaks.items():
        growth = peak - before[name]
        assert growth < GROWTH_BOUND, (
            f"{name} grew by {growth / MIB:.0f} MiB moving a {SIZE // MIB} MiB file "
            f"(from {before[name] / MIB:.0f} MiB)"
        )
