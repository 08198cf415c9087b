"""The ``bugless`` commands of bugless-api: ``api serve`` and the client commands.

Client commands live one module per command group (``issues``,
``issue_changes``, ``hotlists``, ``components``, ``saved_searches``,
``following``, ``notifications``), each
adding its commands to a group of :mod:`bugless_api.cli.groups`. The groups
are registered with every command named by reference (:data:`COMMANDS`), so
``bugless issue show`` imports the module that holds ``show`` and nothing
else: a bot's script runs it many times, and ``bugless api serve``'s
settings (the gRPC clients, the search language) or ``bugless login``'s X.509
code would cost each run more than the call. To add a command, write it in a
module as the others are and name it in :data:`COMMANDS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup

#: Each group's commands: name -> (``module:attribute`` under this package, the short
#: help ``bugless GROUP --help`` lists it with, the first sentence of its docstring).
#: ``test_lazy_commands`` fails when a summary no longer matches its command.
COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "issue": {
        "list": (
            "issues:list_command",
            'List issues matching QUERY (the search language, for example "is:open a:me p<p2").',
        ),
        "show": ("issues:show_command", "Show one issue (and, with --comments, its comments)."),
        "history": (
            "issues:history_command",
            "Show an issue's history, oldest first: every change and comment, and who made it.",
        ),
        "create": (
            "issues:create_command",
            "Create an issue (its retries never make a second one; see --idempotency-key).",
        ),
        "comment": (
            "issues:comment_command",
            "Add a comment to an issue; prints the comment as recorded (#version, author, time).",
        ),
        "watch": (
            "issues:watch_command",
            "Print each change to ISSUE_ID (or to issues matching --query) as it is committed.",
        ),
        "update": (
            "issue_changes:update_command",
            "Change fields and relations of ISSUE_IDS, or of every issue --query matches.",
        ),
        "edit-comment": (
            "comment_edits:edit_comment_command",
            "Replace the text of your comment #ENTRY (1: the description) of ISSUE_ID.",
        ),
        "redact": (
            "comment_edits:redact_command",
            "Remove a leaked secret for good: --entry, --description, --attachment[-description].",
        ),
        "attach": (
            "attachments:attach_command",
            "Attach FILE to an issue (streamed; a file over the size limit is refused up front).",
        ),
        "attachments": (
            "attachments:attachments_command",
            "List an issue's attachments, oldest first.",
        ),
        "star": (
            "following:star_command",
            "Star issues: be notified of their changes, and find them with is:starred.",
        ),
        "unstar": (
            "following:unstar_command",
            "Remove your star from issues (one not starred is reported, not an error).",
        ),
        "mute": (
            "following:mute_command",
            "Mute issues: no notification about them, whatever the reason (assignee, star, ...).",
        ),
        "unmute": (
            "following:unmute_command",
            "Be notified about muted issues again (one not muted is reported, not an error).",
        ),
    },
    "attachment": {
        "get": (
            "attachments:get_command",
            "Download an attachment's content to a file (resumes if the connection drops).",
        ),
        "show": ("attachments:show_command", "Show an attachment's metadata."),
        "delete": (
            "attachments:delete_command",
            "Detach a file (its uploader or a component admin); history records it.",
        ),
    },
    "hotlist": {
        "list": ("hotlists:hotlist_list", "List visible hotlists (every page)."),
        "show": ("hotlists:hotlist_show", "Show a hotlist's items in rank order."),
        "create": ("hotlists:hotlist_create", "Create a hotlist owned by you."),
        "rename": ("hotlists:hotlist_rename", "Rename a hotlist (owner, editors or admins)."),
        "update": (
            "hotlists:hotlist_update",
            "Change a hotlist's description, editors, visibility or owner.",
        ),
        "delete": (
            "hotlists:hotlist_delete",
            "Delete a hotlist (its owner or an admin); the issues stay.",
        ),
        "add": ("hotlists:hotlist_add", "Add issues to a hotlist."),
        "remove": ("hotlists:hotlist_remove", "Remove issues from a hotlist."),
        "rank": (
            "hotlists:hotlist_rank",
            "Move ISSUE_ID to POSITION of the hotlist: 0 is the first place, -1 the last.",
        ),
        "rerank": (
            "hotlists:hotlist_rerank",
            "Put ISSUE_IDS at the top of the hotlist in the order given (the rest follow).",
        ),
        "note": ("hotlists:hotlist_note", 'Set the note of an issue on a hotlist ("" clears it).'),
    },
    "component": {
        "list": ("components:component_list", "List the components you can see, in path order."),
        "show": ("components:component_show", "Show a component by id or path (Platform>Storage)."),
        "create": (
            "components:component_create",
            "Create a component (top level needs the create_component permission).",
        ),
        "update": (
            "components:component_update",
            "Rename, describe, move a component or change its access list (its admins).",
        ),
        "archive": (
            "components:component_archive",
            "Archive a component: hidden from pickers, its issues stay searchable.",
        ),
        "unarchive": ("components:component_unarchive", "Bring an archived component back."),
        "field": (
            "custom_fields:field_group",
            "Custom fields of a component (defined by its admins, inherited by its subtree).",
        ),
        "webhook": (
            "webhooks:webhook_group",
            "A component's webhook endpoints (signed POSTs of its issues' changes; admins only).",
        ),
        "subscribe": (
            "following:component_subscribe",
            "Be notified of changes to a component's issues (--subtree: its descendants' too).",
        ),
        "unsubscribe": (
            "following:component_unsubscribe",
            "Stop being notified of a component's issues (its subtree's too, if subscribed so).",
        ),
    },
    "saved-search": {
        "list": (
            "saved_searches:saved_search_list",
            "List your saved searches and those shared with you.",
        ),
        "run": ("saved_searches:saved_search_run", "List the issues a saved search finds now."),
        "create": (
            "saved_searches:saved_search_create",
            "Save QUERY under NAME (shared with --reader, shown with --columns).",
        ),
        "update": (
            "saved_searches:saved_search_update",
            "Rename a saved search, change its query, who it is shared with or its columns.",
        ),
        "delete": ("saved_searches:saved_search_delete", "Delete one of your saved searches."),
        "subscribe": (
            "following:saved_search_subscribe",
            "Be notified when an issue starts or stops matching a saved search.",
        ),
        "unsubscribe": (
            "following:saved_search_unsubscribe",
            "Stop being notified about a saved search's matches.",
        ),
    },
    "notifications": {
        "show": (
            "notifications:show_command",
            "Show what notifies you, how, and what you follow (subscriptions, stars, mutes).",
        ),
        "set": (
            "notifications:set_command",
            "Change the notification settings named by the flags; the others keep their value.",
        ),
    },
}

#: Commands directly under ``bugless``: name -> (``module:attribute``, the short help
#: ``bugless --help`` lists it with, the first sentence of its docstring).
TOP_LEVEL: dict[str, tuple[str, str]] = {
    "api": ("serve:api_group", "Run the gRPC API frontend for bots and scripts (mTLS only)."),
    "login": (
        "login:login_command",
        "Get a short-lived client certificate for yourself, approved in the web UI.",
    ),
    "logout": ("login:logout_command", "Revoke this machine's login certificate and delete it."),
    "whoami": (
        "login:whoami_command",
        "Who the configured certificate acts as (username, groups, permissions).",
    ),
}


def register(cli: CommandGroup) -> None:
    """Add ``bugless api`` and every client command group to ``cli``, importing no command.

    Each group lists its commands by their summaries, so ``bugless issue --help``
    imports none of them either.
    """
    from bugless_api.cli.groups import GROUPS  # noqa: PLC0415

    for group in GROUPS:
        for name, (reference, summary) in COMMANDS[group.name or ""].items():
            group.add_lazy_command(name, f"{__name__}.{reference}", summary)
        cli.add_command(group)
    for name, (reference, summary) in TOP_LEVEL.items():
        cli.add_lazy_command(name, f"{__name__}.{reference}", summary)
