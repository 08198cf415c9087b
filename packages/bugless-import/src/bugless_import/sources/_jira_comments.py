"""Which Jira comments the import leaves out: those some readers of their issue may not see.

bugless has no per-comment visibility: whoever may read an issue reads all
its comments. So a comment Jira restricts to a role or a group
(``visibility``), and a Jira Service Management internal comment (an agents'
note the customer portal does not show), is left out and named in the
report, unless ``--option internal-comments=import`` says the deployment's
accounts are all agents' (then an internal comment widens nobody's reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bugless_core.errors import InvalidArgument

#: The values of ``--option internal-comments=``; the first is the default.
INTERNAL_COMMENTS = ("leave-out", "import")


def imports_internal_comments(options: Mapping[str, str]) -> bool:
    """Whether ``--option internal-comments=import`` was given.

    Raises:
        InvalidArgument: the option has another value than leave-out or import.
    """
    value = options.get("internal-comments", INTERNAL_COMMENTS[0])
    if value not in INTERNAL_COMMENTS:
        msg = (
            f"--option internal-comments={value!r}: give leave-out (the default: Jira Service "
            "Management's internal comments are not imported) or import (they become ordinary "
            "comments, read by whoever may read the issue: for a deployment where only agents "
            "have accounts)"
        )
        raise InvalidArgument(msg)
    return value == "import"


def is_internal(comment: Mapping[str, Any]) -> bool:
    """Whether a Jira Service Management comment is internal (agents only, not the portal).

    The REST API says so in ``jsdPublic`` (``false``: internal); a comment
    read with ``expand=properties`` also carries the ``sd.public.comment``
    property, ``{"internal": true}`` for the same. A comment of a project
    that is no service desk has neither and is public.
    """
    if comment.get("jsdPublic") is False:
        return True
    for prop in comment.get("properties") or []:
        if isinstance(prop, dict) and prop.get("key") == "sd.public.comment":
            value = prop.get("value")
            if isinstance(value, dict) and value.get("internal") in (True, "true"):
                return True
    return False


def withheld_because(comment: Mapping[str, Any], *, import_internal: bool) -> str | None:
    """Why the import leaves ``comment`` out, for the report (never its text); None: imported."""
    author = (comment.get("author") or {}).get("displayName") or "someone"
    visibility = comment.get("visibility") or {}
    if visibility:
        kind = str(visibility.get("type") or "role")
        whom = str(visibility.get("value") or visibility.get("identifier") or "?")
        return f"by {author} of {comment.get('created')}, visible to the {kind} {whom!r} only"
    if is_internal(comment) and not import_internal:
        return (
            f"internal comment by {author} of {comment.get('created')} (Jira Service Management "
            "shows it to the service desk's agents only; --option internal-comments=import "
            "imports such comments)"
        )
    return None
