"""The notification settings form takes only the events it offers; anything else changes nothing.

Real web app, Model and Authenticator.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, sign_in

from bugless_core.clients import call
from bugless_proto import v1


async def test_an_event_value_no_event_has_is_ignored_not_a_server_error(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A crafted "²" (a digit to str.isdigit, not to int) was a 500 page."""
    csrf = await sign_in(client, "mallory")
    page = (await client.get("/settings/notifications")).text
    version = re.findall(r'<input type="hidden" name="version" value="(\d+)">', page)[0]
    response = await client.post(
        "/settings/notifications",
        data={
            "_csrf": csrf,
            "version": version,
            "event": ["²", "1", "999"],
            "channel": "email",
            "digest": "daily",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    now = await call(
        model.get_notification_settings,
        v1.GetNotificationSettingsRequest(caller=world.caller("mallory")),
    )
    enabled = [
        e for e in v1.NotificationEvent if e.value and e not in now.settings[0].disabled_events
    ]
    assert enabled == [v1.NotificationEvent(1)]
