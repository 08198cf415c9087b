"""Marking an issue a duplicate closes it as Duplicate; reopening it ends the link.

Google's issue tracker sets the status Duplicate when "Duplicate of" is set,
and people expect it: an issue marked a duplicate that stayed New still
showed in every ``is:open`` search and saved search. The rule is the
Model's, so that every client keeps it alike (the web's form, the API, the
CLI's ``issue update --duplicate-of``, bulk edits):

- A change or a new issue that sets ``duplicate_of_id`` (not 0) and says
  no status gets status Duplicate. A status it does say is kept: whoever
  sets both means both. An import keeps its source's record as it was.
- A change that sets a status other than Duplicate and leaves
  ``duplicate_of_id`` alone clears it: an issue reopened (or fixed on its
  own) is no longer a duplicate of the other. An issue that was no
  duplicate is not changed by that (its link is already 0).

Nothing is refused: status Duplicate without a duplicate-of stays allowed
(imports bring such issues, whose original was never in the tracker).
"""

from __future__ import annotations

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

_STATUS = "status"
_DUPLICATE_OF = "duplicate_of_id"


def apply_to_delta(delta: v1.IssueDelta | None) -> None:
    """Complete ``delta`` (in place) by the duplicate rule of this module."""
    if delta is None or delta.fields is None:
        return
    paths = list(delta.update_mask.paths) if delta.update_mask is not None else []
    if _DUPLICATE_OF in paths and delta.fields.duplicate_of_id and _STATUS not in paths:
        delta.fields.status = v1.Status.DUPLICATE
        delta.update_mask = FieldMask(paths=[*paths, _STATUS])
    elif (
        _STATUS in paths
        and delta.fields.status not in (v1.Status.DUPLICATE, v1.Status.UNSPECIFIED)
        and _DUPLICATE_OF not in paths
    ):
        delta.fields.duplicate_of_id = 0
        delta.update_mask = FieldMask(paths=[*paths, _DUPLICATE_OF])


def apply_to_new(request: v1.CreateIssueRequest) -> None:
    """A new issue made a duplicate and given no status is created as Duplicate."""
    fields = request.fields
    if fields is not None and fields.duplicate_of_id and not fields.status:
        fields.status = v1.Status.DUPLICATE
