"""Reading a channel's string options (flags, ``BUGLESS_NOTIFY_*`` variables) into types.

Every error names the option as the operator wrote it (``email.port``) and
what would be accepted, so a misconfigured notifier refuses to start with a
message that says what to fix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from bugless_core.errors import InvalidArgument

E = TypeVar("E", bound=enum.Enum)


class ChannelOptions:
    """The options of one channel, read once each with a type and a default."""

    def __init__(self, channel: str, config: Mapping[str, Any]) -> None:
        """Wrap ``config`` (what ``NotificationChannel.open`` received) for ``channel``."""
        self.channel = channel
        self.config = config

    def _raw(self, key: str) -> Any:
        value = self.config.get(key)
        return None if value is None or value == "" else value

    def text(self, key: str, default: str = "") -> str:
        """A string option."""
        value = self._raw(key)
        return default if value is None else str(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        """A whole number of at least ``minimum``."""
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self.error(key, f"{value!r} is not a whole number") from None
        if number < minimum:
            raise self.error(key, f"{number} is less than {minimum}")
        return number

    def seconds(self, key: str, default: float) -> float:
        """A positive duration in seconds."""
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(key, f"{value!r} is not a number of seconds") from None
        if not number > 0:
            raise self.error(key, f"{number} must be more than 0 seconds")
        return number

    def choice(self, key: str, enum_type: type[E], default: E) -> E:
        """One of an enum's values."""
        value = self._raw(key)
        if value is None:
            return default
        if isinstance(value, enum_type):
            return value
        try:
            return enum_type(str(value).lower())
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum_type)
            raise self.error(key, f"{value!r} is not one of {allowed}") from None

    def path(self, key: str) -> Path | None:
        """An existing file, or None when unset."""
        value = self._raw(key)
        if value is None:
            return None
        path = Path(value)
        if not path.is_file():
            raise self.error(key, f"{str(path)!r} is not a readable file")
        return path

    def error(self, key: str, problem: str) -> InvalidArgument:
        """The error for a wrong option."""
        return InvalidArgument(f"{self.channel}.{key}: {problem}")
