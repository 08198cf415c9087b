"""``bugless notifications show|set``: what notifies you, and everything you follow.

``show`` joins your settings with what you follow, named as people read it:
components by path, saved searches by name, starred and muted issues by id and
title. ``set`` changes the settings named by its flags and keeps the others
(:meth:`~bugless_api.client.BuglessClient.change_notification_settings`:
read, modify, write at the version read; a change made elsewhere in between
is kept, and the flags are applied again to the settings as they are then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import Detail, client_options, command
from bugless_api.cli.following import NOT_VISIBLE, visible_issues
from bugless_api.cli.groups import notifications_group

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: ``v1.NotificationEvent`` by the names the flags take (``test_event_names`` keeps them equal).
EVENTS = ("assigned", "mentioned", "my_issues", "starred", "subscriptions")
_EVENTS_HELP = (
    "assigned (issues assigned to you), mentioned (an @mention of you), my_issues (issues "
    "you reported, verify or are CC'd on), starred (issues you starred), subscriptions "
    "(your component and saved-search subscriptions)"
)
CHANNELS = ("email", "none")
DIGESTS = ("immediate", "daily")


def _settings_plain(settings: v1.NotificationSettings) -> dict[str, object]:
    """The settings for ``--json`` (event and digest names lower case, as the flags take them)."""
    disabled = {event.name.lower() for event in settings.disabled_events}
    return {
        "enabled_events": [e for e in EVENTS if e not in disabled],
        "disabled_events": [e for e in EVENTS if e in disabled],
        "channel": settings.channel,
        "digest": settings.digest.name.lower(),
        "notify_own_changes": settings.notify_own_changes,
    }


def _settings_lines(settings: dict[str, object]) -> list[tuple[str, object]]:
    channel = settings["channel"]
    return [
        ("notified of", settings["enabled_events"] or "nothing"),
        ("not notified of", settings["disabled_events"] or "-"),
        ("channel", "none (notifications off)" if channel == "none" else channel),
        ("digest", settings["digest"]),
        ("own changes", "notified" if settings["notify_own_changes"] else "not notified"),
    ]


def _listed(name: str, items: list[str]) -> list[tuple[str, object]]:
    """``name`` beside the first item, the others on lines of their own (or ``-``)."""
    if not items:
        return [(name, "-")]
    return [(name if i == 0 else "", item) for i, item in enumerate(items)]


def _component_line(subscription: dict[str, object]) -> str:
    shown = subscription["path"] or f"{subscription['component_id']} {NOT_VISIBLE}"
    return f"{shown} and its subtree" if subscription["include_subtree"] else str(shown)


def _saved_search_line(subscription: dict[str, object]) -> str:
    if subscription["name"]:
        return f"{subscription['name']} ({subscription['saved_search_id']})"
    return f"{subscription['saved_search_id']} {NOT_VISIBLE}"


@notifications_group.command("show")
@client_options
@command
async def show_command(client: BuglessClient) -> Detail:
    """Show what notifies you, how, and what you follow (subscriptions, stars, mutes).

    Starred issues are those `is:starred` finds. A component, saved search or
    muted issue you may no longer see is listed by id alone.
    """
    import asyncio  # noqa: PLC0415

    from bugless_api.cli._render import component_paths  # noqa: PLC0415
    from bugless_api.cli.issues import search_all  # noqa: PLC0415

    # Independent reads: sent together, so the command waits for the slowest only.
    settings, subscriptions, paths, readable, (starred, _, _) = await asyncio.gather(
        client.get_notification_settings(),
        client.list_subscriptions(),
        component_paths(client),
        client.all_saved_searches(),
        search_all(client, "is:starred", None, read_mask=("title",)),
    )
    names = {search.id: search.name for search in readable}
    muted_ids = list(settings.muted_issue_ids)
    muted = await visible_issues(client, muted_ids)

    components = [
        {
            "component_id": c.component_id,
            "path": paths.get(c.component_id, ""),
            "include_subtree": c.include_subtree,
        }
        for c in subscriptions.components
    ]
    searches = [
        {"saved_search_id": i, "name": names.get(i, "")} for i in subscriptions.saved_search_ids
    ]
    stars = [{"issue_id": issue.id, "title": issue.title} for issue in starred]
    mutes = [
        {"issue_id": i, "title": muted[i].title if i in muted else "", "visible": i in muted}
        for i in muted_ids
    ]
    plain = _settings_plain(settings)
    lines = _settings_lines(plain)
    lines += _listed("components", [_component_line(c) for c in components])
    lines += _listed("saved searches", [_saved_search_line(s) for s in searches])
    lines += _listed("starred issues", [f"{s['issue_id']}  {s['title']}" for s in stars])
    lines += _listed(
        "muted issues",
        [f"{m['issue_id']}  {m['title'] if m['visible'] else NOT_VISIBLE}" for m in mutes],
    )
    return Detail(
        lines=lines,
        data={
            "settings": plain,
            "components": components,
            "saved_searches": searches,
            "starred_issues": stars,
            "muted_issues": mutes,
        },
    )


@notifications_group.command("set")
@click.option(
    "--enable",
    "enable",
    multiple=True,
    type=click.Choice(EVENTS, case_sensitive=False),
    help=f"Be notified for this reason again (repeatable): {_EVENTS_HELP}.",
)
@click.option(
    "--disable",
    "disable",
    multiple=True,
    type=click.Choice(EVENTS, case_sensitive=False),
    help="Stop being notified for this reason (repeatable; the names of --enable).",
)
@click.option(
    "--channel",
    type=click.Choice(CHANNELS),
    default=None,
    help="How you are notified: email, or none (no notifications at all).",
)
@click.option(
    "--digest",
    type=click.Choice(DIGESTS),
    default=None,
    help="immediate (a message per change) or daily (one message a day listing them).",
)
@click.option(
    "--own/--no-own",
    "own",
    default=None,
    help="--own: be notified of changes you make yourself too; --no-own: not "
    "(as everyone is at first).",
)
@client_options
@command
async def set_command(
    client: BuglessClient,
    *,
    enable: tuple[str, ...],
    disable: tuple[str, ...],
    channel: str | None,
    digest: str | None,
    own: bool | None,
) -> Detail:
    """Change the notification settings named by the flags; the others keep their value.

    Prints the settings as saved. The settings are read, changed and written
    back at the version read: if they were changed elsewhere (the web
    settings page, a script) in between, that change is kept and only the
    flags you gave are applied again, to the settings as they are now. If
    they keep changing (3 tries), nothing is saved and the command fails
    (exit 4): run it again. Mutes are not touched (`bugless issue
    mute|unmute`).
    """
    both = sorted(set(enable) & set(disable))
    if both:
        raise click.UsageError(f"both --enable and --disable {', '.join(both)}")
    if not (enable or disable) and channel is None and digest is None and own is None:
        raise click.UsageError(
            "nothing to change: give --enable, --disable, --channel, --digest or --own/--no-own"
        )
    before, after = await client.change_notification_settings(
        enable_events=enable,
        disable_events=disable,
        channel=channel,
        digest=digest,
        notify_own_changes=own,
    )
    old, new = _settings_plain(before), _settings_plain(after)
    changed = [name for name in new if new[name] != old[name] and name != "enabled_events"]
    lines = _settings_lines(new)
    lines.append(("changed", changed or "nothing (already so)"))
    return Detail(lines=lines, data={"settings": new, "changed": changed})
