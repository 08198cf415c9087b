"""The columns an issue list can show, named once for every package.

A saved search keeps the columns its list is shown with (``SavedSearch.columns``),
so the keys are part of the wire contract: the Model refuses a key it does not
know (a typo would otherwise be stored and silently dropped by every page), the
web draws its column picker and table from the same names, and the CLI checks
``--columns`` before calling. The keys are the built-in ones below plus one
per custom field, ``customfield<ID>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from bugless_core.errors import InvalidArgument

#: Built-in column keys with their table headers, in the order a picker lists them.
COLUMN_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "id": "ID",
        "priority": "P",
        "severity": "S",
        "type": "Type",
        "title": "Title",
        "status": "Status",
        "assignee": "Assignee",
        "reporter": "Reporter",
        "verifier": "Verifier",
        "component": "Component",
        "created": "Created",
        "modified": "Modified",
    }
)
#: The columns a list shows when nothing was chosen.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "id",
    "priority",
    "type",
    "title",
    "assignee",
    "status",
    "modified",
)
#: A custom field's column (``customfield12``).
CUSTOM_COLUMN = re.compile(r"customfield([1-9][0-9]{0,18})")
#: At most this many custom field columns in one list.
MAX_CUSTOM_COLUMNS = 5
#: At most this many columns in one list (every built-in one plus the custom ones).
MAX_COLUMNS = len(COLUMN_LABELS) + MAX_CUSTOM_COLUMNS


def custom_column_id(column: str) -> int:
    """The field id of a custom field column, 0 for the built-in columns and unknown keys."""
    match = CUSTOM_COLUMN.fullmatch(column)
    return int(match.group(1)) if match and int(match.group(1)) < 2**63 else 0


def is_column(column: str) -> bool:
    """Whether ``column`` names a column a list can show."""
    return column in COLUMN_LABELS or bool(custom_column_id(column))


def valid_columns_text() -> str:
    """The accepted keys, for error messages and help texts."""
    return ", ".join(COLUMN_LABELS) + ", customfield<ID>"


def check_columns(columns: Sequence[str], path: str) -> None:
    """Refuse unknown, repeated or too many column keys, naming the bad one and the valid ones.

    Raises:
        InvalidArgument: with ``path[i]`` of the first bad key.
    """
    if len(columns) > MAX_COLUMNS:
        msg = f"{path}: {len(columns)} columns; at most {MAX_COLUMNS} are accepted"
        raise InvalidArgument(msg, metadata={"field": path})
    seen: set[str] = set()
    for i, column in enumerate(columns):
        if not is_column(column):
            msg = f"{path}[{i}]: {column!r} is not a list column; use one of {valid_columns_text()}"
            raise InvalidArgument(msg, metadata={"field": f"{path}[{i}]"})
        if column in seen:
            msg = f"{path}[{i}]: {column!r} is named twice"
            raise InvalidArgument(msg, metadata={"field": f"{path}[{i}]"})
        seen.add(column)
    custom = [c for c in columns if c not in COLUMN_LABELS]
    if len(custom) > MAX_CUSTOM_COLUMNS:
        msg = f"{path}: {len(custom)} custom field columns; at most {MAX_CUSTOM_COLUMNS}"
        raise InvalidArgument(msg, metadata={"field": path})
