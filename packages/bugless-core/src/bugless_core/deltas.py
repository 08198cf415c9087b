"""Building an :class:`~bugless_proto.v1.IssueDelta` from keyword arguments.

An IssueDelta changes only the scalar fields its ``update_mask`` names; a
field set in ``fields`` but missing from the mask is silently ignored, and a
field in the mask but left at its default *clears* it. Keeping the two in step
by hand is easy to get wrong, so every client of the Model and API builds
deltas here: the API's Python client, the Model conformance suites, and
anything else that writes issues.
"""

from __future__ import annotations

from collections.abc import Iterable

from bugless_core.issue_fields import SCALAR_FIELDS
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


def issue_delta(
    *,
    title: str | None = None,
    status: v1.Status | None = None,
    priority: v1.Priority | None = None,
    severity: v1.Severity | None = None,
    issue_type: v1.IssueType | None = None,
    component_id: int | None = None,
    assignee: str | None = None,
    verifier: str | None = None,
    parent_id: int | None = None,
    duplicate_of_id: int | None = None,
    cc_add: Iterable[str] = (),
    cc_remove: Iterable[str] = (),
    hotlist_add: Iterable[int] = (),
    hotlist_remove: Iterable[int] = (),
    blocking_add: Iterable[int] = (),
    blocking_remove: Iterable[int] = (),
    blocked_by_add: Iterable[int] = (),
    blocked_by_remove: Iterable[int] = (),
) -> v1.IssueDelta:
    """An IssueDelta whose ``update_mask`` names exactly the scalar fields given.

    ``None`` means "leave unchanged"; any other value, including ``""`` or
    ``0``, is set and named in the mask, so ``assignee=""`` clears the
    assignee. Mask paths follow the order of the parameters. List fields
    change by the additions and removals given.

    Nothing is validated here: the Model checks every delta (and reports the
    field at fault), and the conformance suites rely on being able to build
    deltas it must refuse, such as one that adds and removes the same cc.

    Args:
        title: New title.
        status: New status.
        priority: New priority.
        severity: New severity.
        issue_type: New type (``IssueFields.type``; named so as not to shadow
            the builtin).
        component_id: Component to move the issue to.
        assignee: New assignee; ``""`` clears it.
        verifier: New verifier; ``""`` clears it.
        parent_id: New parent issue; ``0`` clears it.
        duplicate_of_id: Issue this one duplicates; ``0`` clears it.
        cc_add: Users to add to the cc list.
        cc_remove: Users to remove from the cc list.
        hotlist_add: Hotlists to add the issue to.
        hotlist_remove: Hotlists to remove the issue from.
        blocking_add: Issues this one starts blocking.
        blocking_remove: Issues this one stops blocking.
        blocked_by_add: Issues that start blocking this one.
        blocked_by_remove: Issues that stop blocking this one.

    Returns:
        The delta, ready for ``ChangeIssueRequest.delta``.
    """
    given = (
        title,
        status,
        priority,
        severity,
        issue_type,
        component_id,
        assignee,
        verifier,
        parent_id,
        duplicate_of_id,
    )
    fields = v1.IssueFields()
    paths: list[str] = []
    # The parameters are in proto order; strict, so a field added to
    # IssueFields fails here until the builder takes it.
    for name, value in zip(SCALAR_FIELDS, given, strict=True):
        if value is not None:
            setattr(fields, name, value)
            paths.append(name)
    return v1.IssueDelta(
        fields=fields,
        update_mask=FieldMask(paths=paths),
        cc_add=list(cc_add),
        cc_remove=list(cc_remove),
        hotlist_add=list(hotlist_add),
        hotlist_remove=list(hotlist_remove),
        blocking_add=list(blocking_add),
        blocking_remove=list(blocking_remove),
        blocked_by_add=list(blocked_by_add),
        blocked_by_remove=list(blocked_by_remove),
    )
