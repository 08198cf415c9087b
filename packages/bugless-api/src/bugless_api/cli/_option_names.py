"""A refused request's field, named as the command's option that set it.

The Model and the API name the field at fault by its path in the request
(``delta.fields.assignee: no bugless user is named 'x'``, ``cc[1]: ...``),
and keep that path in the error's ``field`` metadata: bots read it, and it
stays as it is on the wire. A person who typed ``bugless issue update 5
--assignee x`` reads ``--assignee: no bugless user is named 'x'`` instead.
Each command hands :func:`run_with_client` the table of the wire paths its
options fill; a path the table lacks (or an error naming none) is printed
as the server wrote it.

The Model names some fields by their own name rather than their path
(``parent_id: an issue cannot be its own parent``, ``blocking_add: issue 9
not found``), so the tables hold those names too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: Wire path (without list indexes) -> the option, for one command's request.
OptionNames = Mapping[str, str]
#: The table for one invocation, from its parameters, where the option that
#: set a field depends on which were given (``--description`` or ``--entry``).
OptionNamesOf = Callable[[Mapping[str, Any]], OptionNames]

#: ``bugless issue update`` (ChangeIssueRequest, or BatchChangeIssuesRequest
#: for several issues: the same delta and comment).
ISSUE_UPDATE_OPTIONS: OptionNames = {
    "delta.fields.title": "--title",
    "delta.fields.component_id": "--component",
    "component_id": "--component",
    "delta.fields.status": "--status",
    "delta.fields.priority": "--priority",
    "delta.fields.severity": "--severity",
    "delta.fields.type": "--type",
    "delta.fields.assignee": "--assignee",
    "delta.fields.verifier": "--verifier",
    "delta.fields.parent_id": "--parent",
    "parent_id": "--parent",
    "delta.fields.duplicate_of_id": "--duplicate-of",
    "duplicate_of_id": "--duplicate-of",
    **{
        f"{where}{name}_{way}": f"--{name.replace('_', '-')}-{way}"
        for where in ("delta.", "")
        for name in ("cc", "hotlist", "blocking", "blocked_by")
        for way in ("add", "remove")
    },
    "delta.custom_fields_set": "--field",
    "field": "--field",  # the CLI's own reading of NAME=VALUE
    "fields[]": "--field",  # the client's by name (BuglessClient.custom_field_values)
    "comment": "--comment",
    "expected_version": "--expected-version",
}

#: ``bugless issue create`` (CreateIssueRequest).
ISSUE_CREATE_OPTIONS: OptionNames = {
    "fields.title": "--title",
    "fields.component_id": "--component",
    "component_id": "--component",
    "fields.status": "--status",
    "fields.priority": "--priority",
    "fields.severity": "--severity",
    "fields.type": "--type",
    "fields.assignee": "--assignee",
    "fields.verifier": "--verifier",
    "description": "--description",
    "cc": "--cc",
    "hotlist_ids": "--hotlist",
    "blocking_ids": "--blocking",
    "blocked_by_ids": "--blocked-by",
    "custom_fields": "--field",
    "field": "--field",  # the CLI's own reading of NAME=VALUE
    "fields[]": "--field",  # the client's by name (BuglessClient.custom_field_values)
    "idempotency_key": "--idempotency-key",
}

#: ``bugless issue comment ISSUE_ID TEXT`` (ChangeIssueRequest with a comment).
ISSUE_COMMENT_OPTIONS: OptionNames = {
    "comment": "TEXT",
    "expected_version": "--expected-version",
}

#: ``bugless hotlist create NAME`` (CreateHotlistRequest).
HOTLIST_CREATE_OPTIONS: OptionNames = {
    "name": "NAME",
    "description": "--description",
    "editors": "--editor",
}

#: ``bugless hotlist update HOTLIST_ID`` (UpdateHotlistRequest).
HOTLIST_UPDATE_OPTIONS: OptionNames = {
    "hotlist.description": "--description",
    "hotlist.editors": "--editor",
    "hotlist.owner": "--owner",
    "expected_version": "--expected-version",
}

#: ``bugless saved-search create NAME QUERY`` (CreateSavedSearchRequest).
SAVED_SEARCH_CREATE_OPTIONS: OptionNames = {
    "name": "NAME",
    "query": "QUERY",
    "readers": "--reader",
    "columns": "--columns",
}

#: ``bugless saved-search update SAVED_SEARCH_ID`` (UpdateSavedSearchRequest).
SAVED_SEARCH_UPDATE_OPTIONS: OptionNames = {
    "saved_search.name": "--name",
    "saved_search.query": "--query",
    "saved_search.readers": "--reader",
    "saved_search.columns": "--columns",
    "expected_version": "--expected-version",
}

#: ``bugless component create NAME`` (CreateComponentRequest).
COMPONENT_CREATE_OPTIONS: OptionNames = {
    "name": "NAME",
    "parent_id": "--parent",
    "description": "--description",
    **{f"acl.principal.{kind}": "--admin/--editor/--viewer" for kind in ("user", "group")},
}

#: ``bugless component update ID_OR_PATH`` (UpdateComponentRequest).
COMPONENT_UPDATE_OPTIONS: OptionNames = {
    "component.name": "--name",
    "component.description": "--description",
    "component.parent_id": "--parent",
    "parent_id": "--parent",
    "expected_version": "--expected-version",
    **{
        f"component.acl.principal.{kind}": "--admin/--editor/--viewer" for kind in ("user", "group")
    },
}

#: ``bugless hotlist rename HOTLIST_ID NAME`` (UpdateHotlistRequest).
HOTLIST_RENAME_OPTIONS: OptionNames = {"hotlist.name": "NAME"}

#: ``bugless hotlist add HOTLIST_ID ISSUE_IDS...`` (AddToHotlistRequest).
HOTLIST_ADD_OPTIONS: OptionNames = {
    "issue_ids": "ISSUE_IDS",
    "position": "--position",
    "note": "--note",
}

#: ``bugless hotlist remove HOTLIST_ID ISSUE_IDS...`` (RemoveFromHotlistRequest).
HOTLIST_REMOVE_OPTIONS: OptionNames = {"issue_ids": "ISSUE_IDS"}

#: ``bugless hotlist rank HOTLIST_ID ISSUE_ID POSITION`` (RankHotlistItemRequest).
HOTLIST_RANK_OPTIONS: OptionNames = {"issue_id": "ISSUE_ID", "position": "POSITION"}

#: ``bugless hotlist rerank HOTLIST_ID ISSUE_IDS...``: a RankHotlistItemRequest
#: per issue, at the positions the order given makes.
HOTLIST_RERANK_OPTIONS: OptionNames = {"issue_id": "ISSUE_IDS"}

#: ``bugless hotlist note HOTLIST_ID ISSUE_ID NOTE`` (SetHotlistItemNoteRequest).
HOTLIST_NOTE_OPTIONS: OptionNames = {"issue_id": "ISSUE_ID", "note": "NOTE"}

#: ``bugless issue edit-comment ISSUE_ID ENTRY TEXT`` (EditCommentRequest).
EDIT_COMMENT_OPTIONS: OptionNames = {
    "entry_version": "ENTRY",
    "comment": "TEXT",
    "expected_version": "--expected-version",
}


def redact_options(params: Mapping[str, Any]) -> OptionNames:
    """``bugless issue redact`` (RedactRequest): ``--description`` sends entry 1."""
    return {
        "entry_version": "--description" if params.get("description") else "--entry",
        "attachment_id": (
            "--attachment-description" if params.get("described_id") else "--attachment"
        ),
        "expected_version": "--expected-version",
    }


#: ``bugless component field create ID_OR_PATH NAME`` (CreateCustomFieldRequest).
FIELD_CREATE_OPTIONS: OptionNames = {
    "component_id": "ID_OR_PATH",
    "name": "NAME",
    "type": "--type",
    "description": "--description",
    "options": "--option",
    "required": "--required",
    "default_values": "--default",
}


def field_update_options(params: Mapping[str, Any]) -> OptionNames:
    """``bugless component field update ID_OR_PATH FIELD_ID`` (UpdateCustomFieldRequest)."""
    return {
        "field_id": "FIELD_ID",  # the CLI's own look-up of the field
        "custom_field.id": "FIELD_ID",
        "custom_field.name": "--name",
        "custom_field.description": "--description",
        "custom_field.options": "--option",
        "custom_field.required": "--required" if params.get("required") else "--optional",
        "custom_field.default_values": "--no-default" if params.get("no_default") else "--default",
        "expected_version": "--expected-version",
    }


#: ``bugless component field delete ID_OR_PATH FIELD_ID`` (DeleteCustomFieldRequest).
FIELD_DELETE_OPTIONS: OptionNames = {
    "field_id": "FIELD_ID",
    "expected_version": "--expected-version",
}

#: ``bugless component webhook add ID_OR_PATH URL`` (AddComponentWebhookRequest).
WEBHOOK_ADD_OPTIONS: OptionNames = {
    "component_id": "ID_OR_PATH",
    "url": "URL",
    "secret": "--secret-file",
    "payload_format": "--format",
}

#: ``bugless component webhook enable|disable|delete ID_OR_PATH NAME``.
WEBHOOK_NAME_OPTIONS: OptionNames = {"component_id": "ID_OR_PATH", "name": "NAME"}


def attach_options(params: Mapping[str, Any]) -> OptionNames:
    """``bugless issue attach ISSUE_ID FILE`` (UploadAttachment's header).

    The name and the content type come from FILE unless ``--name`` and
    ``--type`` are given.
    """
    return {
        "header.issue_id": "ISSUE_ID",
        "header.name": "FILE" if params.get("name") is None else "--name",
        "header.content_type": "FILE" if params.get("content_type") is None else "--type",
        "header.comment": "--comment",
        "header.size": "FILE",
    }


_INDEX = re.compile(r"\[\d+\]")
#: A key's subscript, as the client names an entry of a mapping (``fields['OS']``).
_KEY = re.compile(r"""\[(?:'[^']*'|"[^"]*")\]""")
_SUBSCRIPT = r"""(?:\[\d+\]|\['[^']*'\]|\["[^"]*"\])"""
#: A message's leading ``path: `` (``delta.cc_add[1]: ...``, ``fields['OS']: ...``).
_LEADING_PATH = re.compile(
    rf"([a-z_][a-z0-9_]*{_SUBSCRIPT}*(?:\.[a-z_][a-z0-9_]*{_SUBSCRIPT}*)*): "
)


def option_for(path: str, options: OptionNames) -> str | None:
    """The option that set the field at ``path``, or of the nearest field holding it.

    ``delta.cc_add[1]`` is ``--cc-add``'s second value;
    ``delta.custom_fields_set[0].values[2]`` is inside ``--field``'s; a
    mapping's entry is looked up as ``name[]`` (the client's ``fields['OS']``,
    a custom field given by name, is ``fields[]``).
    """
    key = _KEY.sub("[]", _INDEX.sub("", path))
    while key:
        found = options.get(key)
        if found is not None:
            return found
        key = key.rpartition(".")[0]
    return None


def in_option_terms(message: str, field: str | None, options: OptionNames) -> str:
    """``message`` with its leading wire path replaced by the option that set that field.

    Args:
        message: The error's message, ``"<path>: <problem>"`` when it names a field.
        field: The error's ``field`` metadata (the same path), if it has one.
        options: The command's :data:`OptionNames`.

    Returns:
        ``"<option>: <problem>"``; ``message`` unchanged when it names no
        field the command set.
    """
    if field and message.startswith(f"{field}: "):
        path = field
    else:
        leading = _LEADING_PATH.match(message)
        if leading is None:
            return message
        path = leading.group(1)
    option = option_for(path, options)
    if option is None:
        return message
    return f"{option}: {message[len(path) + 2 :]}"
