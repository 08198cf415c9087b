"""The ``bugless`` commands of bugless-api: ``api serve`` and the client commands.

Client commands live one module per command group (``issues``,
``issue_changes``, ``hotlists``, ``components``, ``saved_searches``), each
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

#: Each group's commands: name -> ``module:attribute`` under this package.
COMMANDS: dict[str, dict[str, str]] = {
    "issue": {
        "list": "issues:list_command",
        "show": "issues:show_command",
        "history": "issues:history_command",
        "create": "issues:create_command",
        "comment": "issues:comment_command",
        "watch": "issues:watch_command",
        "update": "issue_changes:update_command",
        "edit-comment": "comment_edits:edit_comment_command",
        "redact": "comment_edits:redact_command",
        "attach": "attachments:attach_command",
        "attachments": "attachments:attachments_command",
    },
    "attachment": {
        "get": "attachments:get_command",
        "show": "attachments:show_command",
        "delete": "attachments:delete_command",
    },
    "hotlist": {
        "list": "hotlists:hotlist_list",
        "show": "hotlists:hotlist_show",
        "create": "hotlists:hotlist_create",
        "rename": "hotlists:hotlist_rename",
        "update": "hotlists:hotlist_update",
        "delete": "hotlists:hotlist_delete",
        "add": "hotlists:hotlist_add",
        "remove": "hotlists:hotlist_remove",
        "rank": "hotlists:hotlist_rank",
        "rerank": "hotlists:hotlist_rerank",
        "note": "hotlists:hotlist_note",
    },
    "component": {
        "list": "components:component_list",
        "show": "components:component_show",
        "create": "components:component_create",
        "update": "components:component_update",
        "archive": "components:component_archive",
        "unarchive": "components:component_unarchive",
        "field": "custom_fields:field_group",
        "webhook": "webhooks:webhook_group",
    },
    "saved-search": {
        "list": "saved_searches:saved_search_list",
        "run": "saved_searches:saved_search_run",
        "create": "saved_searches:saved_search_create",
        "update": "saved_searches:saved_search_update",
        "delete": "saved_searches:saved_search_delete",
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
    """Add ``bugless api`` and every client command group to ``cli``, importing no command."""
    from bugless_api.cli.groups import GROUPS  # noqa: PLC0415

    for group in GROUPS:
        for name, reference in COMMANDS[group.name or ""].items():
            group.add_lazy_command(name, f"{__name__}.{reference}")
        cli.add_command(group)
    for name, (reference, summary) in TOP_LEVEL.items():
        cli.add_lazy_command(name, f"{__name__}.{reference}", summary)
