"""Edits, redaction and custom fields through the API (issue 18)."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs, signed_in

from bugless_core.errors import InvalidArgument, PermissionDenied
from bugless_proto import v1


async def test_the_author_edits_and_an_admin_redacts(connect_as: ConnectAs) -> None:
    """Edits come back as entries by username; a redaction leaves no trace of the text."""
    owner, other = await signed_in(connect_as, "robot", "outsider")
    component = await owner.create_component(
        f"Edits-{secrets.token_hex(3)}",
        acl=[
            v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(user="outsider"), role=v1.Role.EDITOR),
        ],
    )
    issue = await owner.create_issue("edit me", component.id)
    commented = await owner.comment(issue.id, "typo hre")
    assert commented.entry is not None
    assert commented.issue is not None
    version, entry_version = commented.issue.version, commented.entry.version
    with pytest.raises(PermissionDenied):
        await other.edit_comment(issue.id, entry_version, "typo here", expected_version=version)
    edited = await owner.edit_comment(
        issue.id, entry_version, "typo here", expected_version=version
    )
    assert edited.entry is not None
    assert edited.issue is not None
    assert (edited.entry.author, edited.entry.edits_version) == (
        "robot",
        entry_version,
    )

    version = edited.issue.version
    with pytest.raises(PermissionDenied):
        await other.redact(issue.id, entry_version=entry_version, expected_version=version)
    redacted = await owner.redact(issue.id, entry_version=entry_version, expected_version=version)
    assert redacted.entry is not None
    assert redacted.entry.author == "robot"
    assert redacted.entry.redacted_version == commented.entry.version
    history = await owner.list_history(issue.id)
    assert all("typo" not in e.comment for e in history.entries)


async def test_custom_fields_are_defined_set_and_searched(connect_as: ConnectAs) -> None:
    """A component admin defines a field; a delta sets it; the query language finds it."""
    (admin,) = await signed_in(connect_as, "robot")
    component = await admin.create_component(
        f"Fields-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    name = f"Found In {secrets.token_hex(2)}"
    field = await admin.create_custom_field(
        component.id, name, v1.CustomFieldType.ENUM, options=["4.1", "4.2"]
    )
    listed = await admin.list_custom_fields(component.id)
    assert [f.id for f in listed] == [field.id]
    issue = await admin.create_issue("found in 4.2", component.id)
    changed = await admin.change_issue(
        issue.id,
        issue.version,
        v1.IssueDelta(custom_fields_set=[v1.CustomFieldValue(field_id=field.id, values=["4.2"])]),
    )
    assert changed.issue is not None
    assert [(v.name, list(v.values)) for v in changed.issue.custom_fields] == [(name, ["4.2"])]
    for query in (f"customfield{field.id}:4.2", f'"{name}":4.2', f"has:customfield{field.id}"):
        found = await admin.search_issues(f"componentid:{component.id} {query}")
        assert [i.id for i in found.issues] == [issue.id], query
    with pytest.raises(InvalidArgument, match="not an option"):
        await admin.search_issues(f"componentid:{component.id} customfield{field.id}:9.9")
