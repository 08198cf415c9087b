"""The webhook receiver checks signatures exactly as the notifier makes them.

Its check is written from the documented header format, not imported from the
notifier, so this is where the two are held to agree: a real POST over HTTP,
signed with the notifier's own ``sign``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from bugless_notify.webhook import SIGNATURE_HEADER, sign
from bugless_testing.webhooks import WebhookReceiver

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
