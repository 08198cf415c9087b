"""The webhook receiver checks signatures exactly as the notifier makes them.

Its check is written from the documented header format, not imported from the
notifier, so this is where the two are held to agree: a real POST over HTTP,
signed with the notifier's own ``sign``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from bugless_notify.webhook import SIGNATURE_HEADER, sign
from bugless_testing.webhooks import DEFAULT_STATUS, REDIRECT_LOCATION, WebhookReceiver

SECRET = "receiver-secret-" + "0123456789abcdef" * 2


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.post(url, content=body, headers=headers)
    return response.status_code


async def test_the_notifiers_signature_is_accepted_and_others_are_not() -> None:
    body = json.dumps({"delivery_id": "d1", "issue": {"id": 7}}).encode()
    with WebhookReceiver(SECRET) as receiver:
        statuses = [
            await _post(f"{receiver.url}/good", body, {SIGNATURE_HEADER: sign(SECRET, body)}),
            await _post(f"{receiver.url}/other", body, {SIGNATURE_HEADER: sign("x" * 32, body)}),
            await _post(f"{receiver.url}/unsigned", body, {}),
            await _post(f"{receiver.url}/text", b"not json", {SIGNATURE_HEADER: "sha256=00"}),
        ]
        got = await receiver.wait_for(lambda received: len(received) == 4)
    assert statuses == [204, 204, 204, 204]
    assert [(hook.path, hook.signed) for hook in got] == [
        ("/good", True),
        ("/other", False),
        ("/unsigned", False),
        ("/text", False),
    ]
    assert got[0].body == {"delivery_id": "d1", "issue": {"id": 7}}
    assert got[0].raw == body
    assert got[0].headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body)
    assert got[3].body is None


async def test_waiting_for_what_never_comes_fails_with_what_came() -> None:
    with WebhookReceiver(SECRET) as receiver:
        await _post(f"{receiver.url}/one", b"{}", {})
        with pytest.raises(AssertionError, match="/one"):
            await receiver.wait_for(lambda received: len(received) > 1, within_seconds=0)


async def test_scripted_answers_per_path_then_the_default() -> None:
    with WebhookReceiver(SECRET) as receiver:
        receiver.script("/flaky", 503, 302)
        receiver.retry_after["/flaky"] = "120"
        async with httpx.AsyncClient() as client:
            answers = [await client.post(f"{receiver.url}/flaky", content=b"{}") for _ in range(3)]
            other = await client.post(f"{receiver.url}/other", content=b"{}")
        got = await receiver.wait_for(lambda received: len(received) == 4)
    assert [a.status_code for a in answers] == [503, 302, DEFAULT_STATUS]
    assert [a.headers.get("retry-after") for a in answers] == ["120", "120", None]
    assert answers[1].headers["location"] == REDIRECT_LOCATION
    assert other.status_code == DEFAULT_STATUS
    assert [(hook.path, hook.status) for hook in got] == [
        ("/flaky", 503),
        ("/flaky", 302),
        ("/flaky", DEFAULT_STATUS),
        ("/other", DEFAULT_STATUS),
    ]


async def test_a_delayed_path_holds_only_its_own_post() -> None:
    with WebhookReceiver(SECRET) as receiver:
        receiver.delays["/slow"] = 60.0  # a hung endpoint, as far as any test can tell
        async with httpx.AsyncClient() as client:
            slow = asyncio.create_task(client.post(f"{receiver.url}/slow", content=b"{}"))
            fast = await client.post(f"{receiver.url}/fast", content=b"{}")
            assert fast.status_code == DEFAULT_STATUS
            # Recorded once answered: the hung POST is not there yet.
            assert [hook.path for hook in receiver.received] == ["/fast"]
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
