"""Hook implementations of bugless-notify (the ``bugless`` entry point names this module).

Registration only: the ``email`` and ``webhook`` notification channels and
the ``bugless notify serve`` command. The
channel modules import their client libraries at module level, so they are
imported inside the hook, not here: ``bugless --help`` stays fast.
"""

from __future__ import annotations

import click

from bugless_core.hookspecs import hookimpl
from bugless_core.registry import NotificationChannelRegistrar


@hookimpl
def bugless_register_notification_channels(register: NotificationChannelRegistrar) -> None:
    """Register ``email`` and ``webhook``."""
    from bugless_notify.mail import EmailChannel  # noqa: PLC0415
    from bugless_notify.webhook import WebhookChannel  # noqa: PLC0415

    register(EmailChannel)
    register(WebhookChannel)


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless notify serve``."""
    from bugless_notify.cli import notify_group  # noqa: PLC0415

    cli.add_command(notify_group)
