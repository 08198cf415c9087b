from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import pytest

from bugless_core import hookimpl
from bugless_core.notification_channel import (
    DeliveryResult,
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationMessage,
)
from bugless_core.plugins import load_plugins
from bugless_core.registry import (
    DuplicateRegistrationError,
    NotificationChannelRegistrar,
    UnknownBackendError,
)


def _channel(channel_name: str) -> type[NotificationChannel]:
    class Recording(NotificationChannel):
        name = channel_name

        def __init__(self) -> None:
            self.delivered: list[Notification] = []

        @classmethod
        async def open(cls, config: Mapping[str, Any]) -> Self:
            return cls()

        async def deliver(self, notification: Notification) -> DeliveryResult:
            self.delivered.append(notification)
            return DeliveryResult.delivered()

    return Recording


class _Registers:
    def __init__(self, *classes: type[NotificationChannel]) -> None:
        self.classes = classes

    @hookimpl
    def bugless_register_notification_channels(
        self, register: NotificationChannelRegistrar
    ) -> None:
        for cls in self.classes:
            register(cls)


def test_a_plugin_registers_a_notification_channel_by_name() -> None:
    pager = _channel("pager")
    plugins = load_plugins(entry_points=False, extra=[_Registers(pager)])
    assert plugins.notification_channels.get("pager") is pager
    assert "pager" in plugins.notification_channels.names()


def test_two_channels_under_one_name_is_an_error_naming_both() -> None:
    first, second = _channel("pager"), _channel("pager")
    with pytest.raises(DuplicateRegistrationError, match="notification channel 'pager'"):
        load_plugins(entry_points=False, extra=[_Registers(first, second)])


def test_unknown_channel_lists_the_installed_ones() -> None:
    plugins = load_plugins(entry_points=False, extra=[_Registers(_channel("pager"))])
    with pytest.raises(UnknownBackendError, match="installed: pager"):
        plugins.notification_channels.get("pagr")


async def test_a_registered_channel_opens_and_delivers() -> None:
    plugins = load_plugins(entry_points=False, extra=[_Registers(_channel("pager"))])
    channel = await plugins.notification_channels.get("pager").open({})
    message = NotificationMessage(thread_id="issue-1", subject="s", text="t", html="<p>t</p>")
    result = await channel.deliver(Notification("key-1", "someone", message))
    assert result.status is DeliveryStatus.DELIVERED
    await channel.close()


def test_a_message_survives_its_json_form() -> None:
    message = NotificationMessage(
        thread_id="issue-7",
        subject="[bugless] b/7: disk full",
        text="plain",
        html="<p>html</p>",
        chat_text="chat",
        data={"issue": {"id": 7}},
        reason="cc",
    )
    assert NotificationMessage.from_json(message.to_json()) == message


@pytest.mark.parametrize("thread_id", ["", "issue 1", "<issue-1>", "a@b", "-lead", "x" * 129])
def test_a_thread_id_that_cannot_go_into_a_message_id_is_refused(thread_id: str) -> None:
    with pytest.raises(ValueError, match="thread_id"):
        NotificationMessage(thread_id=thread_id, subject="s", text="t", html="h")


def test_a_multi_line_subject_is_refused() -> None:
    with pytest.raises(ValueError, match="subject"):
        NotificationMessage(thread_id="issue-1", subject="a\r\nBcc: x@y", text="t", html="h")
