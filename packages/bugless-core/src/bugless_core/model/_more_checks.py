"""Shape checks of the edit, redaction and custom-field calls (issue 18).

Kept beside :mod:`._validation` (whose helpers they use) so that the checks
of the original calls stay as they were; the servicer calls both.
"""

from __future__ import annotations

from bugless_core import custom_fields, limits
from bugless_core.model._validation import (
    _fail,
    check_enum,
    check_id,
    check_mask,
    check_page,
    check_text,
    require_caller,
)
from bugless_proto import v1

CUSTOM_FIELD_MASK_PATHS = custom_fields.MASK_PATHS


def check_expected_version(value: int) -> None:
    """Issue writes name the version they were made against."""
    if value <= 0:
        raise _fail(
            "expected_version", "required: pass the version of the issue you read (Issue.version)"
        )


def check_edit_comment(request: v1.EditCommentRequest) -> None:
    """EditComment: which entry, against which version, and a non-blank text."""
    require_caller(request.caller)
    check_id(request.issue_id, "issue_id")
    check_expected_version(request.expected_version)
    check_id(request.entry_version, "entry_version")
    check_text(request.comment, "comment", limits.MAX_COMMENT_LENGTH)
    if request.entry_version != 1 and not request.comment.strip():
        raise _fail("comment", "required and must not be blank (an admin can redact it instead)")


def check_redact(request: v1.RedactRequest) -> None:
    """Redact: a target and the one id that target needs."""
    require_caller(request.caller)
    check_id(request.issue_id, "issue_id")
    check_expected_version(request.expected_version)
    check_enum(request.target, "target", allow_unspecified=False)
    target = request.target
    if target is v1.RedactionTarget.COMMENT:
        check_id(request.entry_version, "entry_version")
    elif request.entry_version:
        raise _fail("entry_version", f"only a COMMENT redaction names an entry, not {target.name}")
    of_a_file = (v1.RedactionTarget.ATTACHMENT, v1.RedactionTarget.ATTACHMENT_DESCRIPTION)
    if target in of_a_file:
        check_id(request.attachment_id, "attachment_id")
    elif request.attachment_id:
        raise _fail(
            "attachment_id",
            f"only an ATTACHMENT or ATTACHMENT_DESCRIPTION redaction names one, not {target.name}",
        )


def check_create_custom_field(request: v1.CreateCustomFieldRequest) -> None:
    """CreateCustomField: a component and a definition that holds together."""
    require_caller(request.caller)
    check_id(request.component_id, "component_id")
    check_text(request.description, "description", limits.MAX_DESCRIPTION_LENGTH)
    custom_fields.check_definition(
        name=request.name,
        field_type=request.type,
        options=request.options,
        default_values=request.default_values,
    )


def check_list_custom_fields(request: v1.ListCustomFieldsRequest) -> None:
    """ListCustomFields: a component, or all_visible with an optional page (not both)."""
    require_caller(request.caller)
    if request.all_visible:
        if request.component_id:
            raise _fail(
                "component_id",
                "give a component or set all_visible, not both (all_visible lists the fields "
                "of every component you can view)",
            )
        check_page(request.page, "page", limits.MAX_PAGE_SIZE)
        return
    check_id(request.component_id, "component_id")
    if request.page is not None:
        raise _fail("page", "only with all_visible (one component's fields come in one answer)")


def check_update_custom_field(request: v1.UpdateCustomFieldRequest) -> list[str]:
    """UpdateCustomField: an id and known mask paths; returns the paths."""
    require_caller(request.caller)
    field = request.custom_field
    if field is None:
        raise _fail("custom_field", "required (with its id)")
    check_id(field.id, "custom_field.id")
    paths = check_mask(request.update_mask, "update_mask", CUSTOM_FIELD_MASK_PATHS)
    if "description" in paths:
        check_text(field.description, "custom_field.description", limits.MAX_DESCRIPTION_LENGTH)
    if request.expected_version < 0:
        raise _fail("expected_version", "must not be negative")
    return paths


def check_delete_custom_field(request: v1.DeleteCustomFieldRequest) -> None:
    """DeleteCustomField: an id."""
    require_caller(request.caller)
    check_id(request.field_id, "field_id")
    if request.expected_version < 0:
        raise _fail("expected_version", "must not be negative")
