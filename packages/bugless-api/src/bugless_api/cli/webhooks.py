"""``bugless component webhook ...``: a component's webhook endpoints, for its admins.

The secret that signs the deliveries is the admin's to keep: ``add`` reads it
from a file (``--secret-file``, so that it is in no shell history or process
list) or makes one and prints it once, since the API only ever answers its
last 4 characters.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import Detail, Table, client_options, command, id_or_path
from bugless_api.cli._option_names import WEBHOOK_ADD_OPTIONS, WEBHOOK_NAME_OPTIONS
from bugless_api.cli.groups import component_group

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: The notifier's minimum for an HMAC key.
MIN_SECRET_LENGTH = 32


@component_group.group("webhook")
def webhook_group() -> None:
    """A component's webhook endpoints (signed POSTs of its issues' changes; admins only)."""


async def _component_id(client: BuglessClient, component_ref: str) -> int:
    ref = id_or_path(component_ref)
    if isinstance(ref, int):
        return ref
    return (await client.get_component(ref)).id


def _table(webhooks: v1.ComponentWebhooks) -> Table:
    return Table(
        headers=["name", "origin", "format", "subtree", "enabled", "secret"],
        rows=[
            [
                w.name,
                w.url_origin,
                w.payload_format,
                "yes" if w.include_subtree else "",
                "yes" if w.enabled else "no",
                f"…{w.secret_hint}",
            ]
            for w in webhooks.webhooks
        ],
        data=webhooks,
    )


def _detail(webhook: v1.ComponentWebhook, secret: str | None = None) -> Detail:
    lines: list[tuple[str, object]] = [
        ("name", webhook.name),
        ("component", webhook.component_id),
        ("origin", webhook.url_origin),
        ("format", webhook.payload_format),
        ("subtree", webhook.include_subtree),
        ("enabled", webhook.enabled),
    ]
    if secret is not None:
        lines.append(("secret (shown once; keep it)", secret))
    else:
        lines.append(("secret", f"…{webhook.secret_hint}"))
    data: object = webhook if secret is None else {"webhook": webhook, "secret": secret}
    return Detail(lines=lines, data=data)


@webhook_group.command("list")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def webhook_list(client: BuglessClient, component_ref: str) -> Table:
    """List a component's webhook endpoints (secrets as their last 4 characters)."""
    component_id = await _component_id(client, component_ref)
    return _table(await client.list_component_webhooks(component_id))


@webhook_group.command("add")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.argument("url")
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"File holding the signing secret ({MIN_SECRET_LENGTH}+ characters); "
    "without it one is made and printed once.",
)
@click.option(
    "--format",
    "payload_format",
    type=click.Choice(["json", "chat"]),
    default="json",
    show_default=True,
    help='json: the change as JSON; chat: {"text": ...} for Slack/Google Chat.',
)
@click.option("--include-subtree", is_flag=True, help="Also the subcomponents' issues.")
@client_options
@command(option_names=WEBHOOK_ADD_OPTIONS)
async def webhook_add(
    client: BuglessClient,
    *,
    component_ref: str,
    url: str,
    secret_file: Path | None,
    payload_format: str,
    include_subtree: bool,
) -> Detail:
    """Add an endpoint that gets a signed POST for each change of the component's issues."""
    made = secret_file is None
    secret = (
        secrets.token_urlsafe(32)
        if secret_file is None
        else (await asyncio.to_thread(secret_file.read_text)).strip()
    )
    if len(secret) < MIN_SECRET_LENGTH:
        raise click.BadParameter(
            f"the secret in {secret_file} has {len(secret)} characters; "
            f"give {MIN_SECRET_LENGTH} or more",
            param_hint="--secret-file",
        )
    component_id = await _component_id(client, component_ref)
    webhook = await client.add_component_webhook(
        component_id,
        url,
        secret,
        payload_format=payload_format,
        include_subtree=include_subtree,
    )
    return _detail(webhook, secret if made else None)


def _switch_command(command_name: str, *, enabled: bool, summary: str) -> None:
    """Add ``webhook COMMAND_NAME``: the one implementation behind ``enable`` and ``disable``."""

    @webhook_group.command(command_name, help=summary)
    @click.argument("component_ref", metavar="ID_OR_PATH")
    @click.argument("name")
    @client_options
    @command(option_names=WEBHOOK_NAME_OPTIONS)
    async def switch(client: BuglessClient, component_ref: str, name: str) -> Detail:
        component_id = await _component_id(client, component_ref)
        return _detail(
            await client.set_component_webhook_enabled(component_id, name, enabled=enabled)
        )


_switch_command(
    "enable", enabled=True, summary="Enable an endpoint (deliveries resume with the next change)."
)
_switch_command(
    "disable",
    enabled=False,
    summary="Disable an endpoint (it gets no new deliveries until enabled).",
)


@webhook_group.command("delete")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.argument("name")
@client_options
@command(option_names=WEBHOOK_NAME_OPTIONS)
async def webhook_delete(client: BuglessClient, component_ref: str, name: str) -> Table:
    """Delete an endpoint; lists those left."""
    component_id = await _component_id(client, component_ref)
    return _table(await client.delete_component_webhook(component_id, name))
