"""Hook implementations of bugless-notify (the ``bugless`` entry point names this module).

Registration only: the ``email`` and ``webhook`` notification channels and
the ``bugless notify serve`` command. The channel modules import their client
libraries at module level, so they are registered by reference and imported
only by the notifier that opens them: ``bugless --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup
    from bugless_core.registry import NotificationChannelRegistrar


@hookimpl
def bugless_register_notification_channels(register: NotificationChannelRegistrar) -> None:
    """Register ``email`` and ``webhook`` by reference."""
    register("email", "bugless_notify.mail:EmailChannel")
    register("webhook", "bugless_notify.webhook:WebhookChannel")


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless notify serve``."""
    cli.add_lazy_command(
        "notify",
        "bugless_notify.cli:notify_group",
        "Run the notifier (change feed in, e-mail and webhooks out).",
    )
