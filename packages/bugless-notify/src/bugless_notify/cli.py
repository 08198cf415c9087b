"""``bugless notify serve``: the notifier as an operator runs it.

Its flags and ``BUGLESS_NOTIFY_*`` variables are generated from
:class:`bugless_notify.settings.NotifierSettings`, where each is declared once.
"""

from __future__ import annotations

import click

from bugless_core import tracing
from bugless_core.settings import settings_command
from bugless_notify.settings import NotifierSettings

DEFAULT_NOTIFY_PORT = 50054
ENV_PREFIX = "BUGLESS_NOTIFY_"


@click.group("notify")
def notify_group() -> None:
    """Run the notifier (change feed in, e-mail and webhooks out)."""


@notify_group.command("serve")
@settings_command(
    NotifierSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_NOTIFY_PORT}
)
def serve_command(settings: NotifierSettings) -> None:
    """Consume the Model's change feed and deliver notifications until SIGTERM.

    Every replica delivers; one at a time consumes the feed (the others take
    over within seconds when it stops). The gRPC port answers health, metrics
    and bugless.v1.Notifier (delivery counts and dead letters).
    """
    from bugless_core import eventloop  # noqa: PLC0415 - asyncio, not for --help
    from bugless_notify._supervise import LoopEnded  # noqa: PLC0415
    from bugless_notify.service import serve_notifier  # noqa: PLC0415

    settings.log.configure()
    tracing.configure("notify")  # spans of its Model calls join the changes' traces
    try:
        status = eventloop.run(serve_notifier(settings))
    except LoopEnded as exc:
        # Logged with its traceback already; exit non-zero so it is restarted.
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(status)
