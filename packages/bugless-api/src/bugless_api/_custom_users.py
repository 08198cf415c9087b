"""User-typed custom field values: usernames on the API, user ids on the Model.

A custom field value travels as text; for a USER field that text is a
person, so it is translated like every other user reference. Responses say
each value's type (``CustomFieldValue.type``, ``CustomField.type``), so they
are translated by :class:`~bugless_api._users.UserRefs` alone. Requests do
not (a value names only its field), so before translating one the gateway
asks the Model which of the fields that apply to the issue's component hold
people: one ``ListCustomFields`` per component involved, and only when a
request sets custom values at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from bugless_api._gateway import Gateway
from bugless_api._wire_issues import BATCH_GET_ISSUES
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


def sets_values(values: Iterable[v1.CustomFieldValue]) -> bool:
    """Whether any of ``values`` carries a value (clearing needs no translation)."""
    return any(value.values for value in values)


async def user_field_ids(
    gateway: Gateway, caller: v1.Caller, component_ids: Iterable[int]
) -> set[int]:
    """Ids of the USER fields that apply to any of ``component_ids``."""
    found: set[int] = set()
    for component_id in sorted(set(component_ids) - {0}):
        reply = await gateway.model_call(
            gateway.model.list_custom_fields,
            v1.ListCustomFieldsRequest(caller=caller, component_id=component_id),
        )
        found |= {f.id for f in reply.custom_fields if f.type is v1.CustomFieldType.USER}
    return found


async def delta_components(
    gateway: Gateway, caller: v1.Caller, delta: v1.IssueDelta | None, issue_ids: Iterable[int]
) -> set[int]:
    """The components a delta's custom values must fit: the new one, or the issues' own."""
    mask = delta.update_mask.paths if delta is not None and delta.update_mask else []
    if delta is not None and delta.fields is not None and "component_id" in mask:
        return {delta.fields.component_id}
    # Only the component ids are read: the Model reads and sends nothing else,
    # and upb parses the reply (betterproto2 decoded every field, ~11 µs an issue).
    reply = await BATCH_GET_ISSUES.fetch(
        gateway.model,
        v1.BatchGetIssuesRequest(
            caller=caller,
            issue_ids=sorted(set(issue_ids)),
            read_mask=FieldMask(paths=["component_id"]),
        ),
        deadline_seconds=gateway.settings.backend_timeout_seconds,
    )
    return {issue.component_id for issue in reply.issues}
