"""The browser's time zone, for the search language's days.

``app.js`` stores the browser's IANA zone (``Intl.DateTimeFormat``) in the
``bugless_tz`` cookie on every page; searches then count ``today`` and
``2026-01-31`` midnight to midnight in that zone (``created>today-7`` is "since
midnight a week ago, here"). A missing, malformed or unknown zone means UTC,
as it does for every caller that names none. The cookie is a preference, not
a credential: it is read, validated against the zone database, and never
trusted for anything else.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from litestar import Request

#: The cookie ``app.js`` writes the browser's zone into.
TIMEZONE_COOKIE = "bugless_tz"
#: What an IANA zone name looks like (``America/Argentina/Buenos_Aires``, ``Etc/GMT+12``).
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}")
_MAX_ZONE_NAME = 64


@dataclass(frozen=True)
class CallerZone:
    """A time zone and the name shown for it."""

    tz: datetime.tzinfo
    name: str


UTC_ZONE = CallerZone(datetime.UTC, "UTC")


def zone_named(name: str | None) -> CallerZone:
    """The zone ``name`` names, or UTC when it names none this machine knows."""
    if not name or len(name) > _MAX_ZONE_NAME or not _ZONE_NAME.fullmatch(name):
        return UTC_ZONE
    try:
        return CallerZone(zoneinfo.ZoneInfo(name), name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def zone_of(request: Request[Any, Any, Any]) -> CallerZone:
    """The zone the browser behind ``request`` is in (UTC when it has not said)."""
    return zone_named(request.cookies.get(TIMEZONE_COOKIE))
