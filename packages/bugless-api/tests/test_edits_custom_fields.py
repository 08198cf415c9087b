"""Edits, redaction and custom fields through the API (issue 18)."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

import pytest
from api_support import ConnectAs, signed_in

from bugless_core.errors import Conflict, InvalidArgument, PermissionDenied
from bugless_proto import v1

Kind = v1.CustomFieldType


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


async def test_custom_fields_are_changed_and_deleted_with_their_version(
    connect_as: ConnectAs,
) -> None:
    """UpdateCustomField and DeleteCustomField are version-checked; history keeps the name."""
    (admin,) = await signed_in(connect_as, "robot")
    component = await admin.create_component(
        f"FieldEdits-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    field = await admin.create_custom_field(
        component.id, "Stage", v1.CustomFieldType.ENUM, options=["alpha", "beta"]
    )
    changed = await admin.update_custom_field(
        v1.CustomField(id=field.id, name="Phase", options=["alpha", "beta", "ga"]),
        ["name", "options"],
        expected_version=field.version,
    )
    assert (changed.name, changed.options, changed.version) == (
        "Phase",
        ["alpha", "beta", "ga"],
        field.version + 1,
    )
    with pytest.raises(Conflict):
        await admin.update_custom_field(
            v1.CustomField(id=field.id, name="Stale"), ["name"], expected_version=field.version
        )
    issue = await admin.create_issue("staged", component.id)
    await admin.change_issue(
        issue.id,
        issue.version,
        v1.IssueDelta(custom_fields_set=[v1.CustomFieldValue(field_id=field.id, values=["ga"])]),
    )
    with pytest.raises(Conflict):
        await admin.delete_custom_field(field.id, expected_version=field.version)
    await admin.delete_custom_field(field.id, expected_version=changed.version)
    assert await admin.list_custom_fields(component.id) == []
    assert (await admin.get_issue(issue.id)).custom_fields == []
    history = await admin.list_history(issue.id)
    kept = [c for e in history.entries for c in e.changes if c.field == f"customfield{field.id}"]
    assert [(c.field_name, c.new_value) for c in kept] == [("Phase", "ga")]


async def test_user_fields_take_and_give_usernames(connect_as: ConnectAs) -> None:
    """A USER field's default and values are usernames on the API, user ids on the Model."""
    admin, outsider = await signed_in(connect_as, "robot", "outsider")
    del outsider  # signed in so that the name is known
    component = await admin.create_component(
        f"UserFields-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    owner = await admin.create_custom_field(
        component.id, "Owner", v1.CustomFieldType.USER, default_values=["robot"]
    )
    assert owner.default_values == ["robot"]
    assert [f.default_values for f in await admin.list_custom_fields(component.id)] == [["robot"]]
    changed = await admin.update_custom_field(
        v1.CustomField(id=owner.id, type=v1.CustomFieldType.USER, default_values=["outsider"]),
        ["default_values"],
        expected_version=owner.version,
    )
    assert changed.default_values == ["outsider"]
    issue = await admin.create_issue(
        "owned",
        component.id,
        custom_fields=[v1.CustomFieldValue(field_id=owner.id, values=["robot"])],
    )
    assert [list(v.values) for v in issue.custom_fields] == [["robot"]]
    moved = await admin.update_issue(
        issue.id,
        custom_fields_set=[v1.CustomFieldValue(field_id=owner.id, values=["outsider"])],
    )
    assert moved.issue is not None
    assert [list(v.values) for v in moved.issue.custom_fields] == [["outsider"]]
    # Stored as the user's id: the search resolves the username to it.
    found = await admin.search_issues(f"componentid:{component.id} customfield{owner.id}:outsider")
    assert [i.id for i in found.issues] == [issue.id]
    batch = await admin.batch_change_issues(
        [(issue.id, moved.issue.version)],
        v1.IssueDelta(custom_fields_set=[v1.CustomFieldValue(field_id=owner.id, values=["robot"])]),
    )
    assert batch.results[0].code == 0, batch.results[0].message
    assert batch.results[0].issue is not None
    assert [list(v.values) for v in batch.results[0].issue.custom_fields] == [["robot"]]
    with pytest.raises(InvalidArgument, match="nobody-at-all"):
        await admin.update_issue(
            issue.id,
            custom_fields_set=[v1.CustomFieldValue(field_id=owner.id, values=["nobody-at-all"])],
        )
    # History says the field is a USER field, so its values are usernames too,
    # also once the definition is gone.
    expected = [("", "robot"), ("robot", "outsider"), ("outsider", "robot")]
    assert await _owner_changes(admin, issue.id, owner.id) == expected
    await admin.delete_custom_field(owner.id, expected_version=changed.version)
    assert await _owner_changes(admin, issue.id, owner.id) == expected


async def _owner_changes(client: Any, issue_id: int, field_id: int) -> list[tuple[str, str]]:
    history = await client.list_history(issue_id)
    changes = [c for e in history.entries for c in e.changes if c.field == f"customfield{field_id}"]
    assert {c.field_type for c in changes} == {v1.CustomFieldType.USER}
    return [(c.old_value, c.new_value) for c in changes]


async def test_custom_fields_are_set_by_name_in_one_call(connect_as: ConnectAs) -> None:
    """``create_issue``/``update_issue`` take ``fields`` by name; the client finds the ids.

    Before, a script listed the component's fields itself and built
    ``CustomFieldValue``s by id: two calls and its own name matching.
    """
    (admin,) = await signed_in(connect_as, "robot")
    component = await admin.create_component(
        f"Named-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    await admin.create_custom_field(component.id, "Found In", Kind.ENUM, options=["4.1", "4.2"])
    await admin.create_custom_field(component.id, "OS", Kind.ENUM_MULTI, options=["linux", "mac"])
    await admin.create_custom_field(component.id, "Build", Kind.INTEGER)
    await admin.create_custom_field(component.id, "Due", Kind.DATE)

    def shown(issue: v1.Issue) -> dict[str, list[str]]:
        return {v.name: list(v.values) for v in issue.custom_fields if v.values}

    issue = await admin.create_issue(
        "set by name",
        component.id,
        fields={"found in": "4.2", "OS": ["mac", "linux"], "Build": 1234, "Due": date(2027, 1, 5)},
    )
    assert shown(issue) == {
        "Found In": ["4.2"],
        "OS": ["linux", "mac"],
        "Build": ["1234"],
        "Due": ["2027-01-05"],
    }
    changed = await admin.update_issue(issue.id, fields={"Build": "77", "OS": "linux", "Due": None})
    assert changed.issue is not None
    assert shown(changed.issue) == {"Found In": ["4.2"], "OS": ["linux"], "Build": ["77"]}

    # A field, and an option, an admin adds after the client kept the list.
    await admin.create_custom_field(component.id, "Team", Kind.TEXT)
    found_in = next(f for f in await admin.list_custom_fields(component.id) if f.name == "Found In")
    found_in.options = ["4.1", "4.2", "4.3"]
    await admin.update_custom_field(found_in, ["options"])
    changed = await admin.update_issue(
        issue.id, expected_version=changed.issue.version, fields={"Team": "io", "Found In": "4.3"}
    )
    assert changed.issue is not None
    assert shown(changed.issue)["Team"] == ["io"]
    assert shown(changed.issue)["Found In"] == ["4.3"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Fixed In": "4.2"}, "fields['Fixed In']: no custom field 'Fixed In' applies here"),
        ({"Build": "soon"}, "custom field 'Build' takes a whole number, not 'soon'"),
        ({"Build": 1.5}, "custom field 'Build' is integer; give an int"),
        ({"Found In": 4}, "custom field 'Found In' is enum; give a str, not int"),
        ({"Found In": ["4.1", "4.2"]}, "custom field 'Found In' is enum; give a str, not list"),
        ({"Found In": "9.9"}, "'9.9' is not an option of custom field 'Found In'"),
        ({"Due": "tomorrow"}, "custom field 'Due' takes a day written YYYY-MM-DD"),
        ({"found in": "4.1", "Found In": "4.2"}, "custom field 'Found In' is given twice"),
    ],
)
async def test_a_field_name_or_value_that_does_not_fit_is_refused_before_anything_is_written(
    connect_as: ConnectAs, fields: dict[str, Any], message: str
) -> None:
    """The client says which entry is wrong and why; no issue is made, none changed."""
    (admin,) = await signed_in(connect_as, "robot")
    component = await admin.create_component(
        f"Refused-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    await admin.create_custom_field(component.id, "Found In", Kind.ENUM, options=["4.1", "4.2"])
    await admin.create_custom_field(component.id, "Build", Kind.INTEGER)
    await admin.create_custom_field(component.id, "Due", Kind.DATE)
    with pytest.raises(InvalidArgument) as refused:
        await admin.create_issue("refused", component.id, fields=fields)
    assert message in refused.value.message
    assert refused.value.metadata["origin"] == "client"
    assert (await admin.search_issues(f"componentid:{component.id}")).issues == []
    issue = await admin.create_issue("kept", component.id)
    with pytest.raises(InvalidArgument) as again:
        await admin.update_issue(issue.id, fields=fields)
    assert message in again.value.message
    assert (await admin.get_issue(issue.id)).version == issue.version
