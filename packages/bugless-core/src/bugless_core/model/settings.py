"""What every Model backend is configured with: :class:`ModelSettings`.

A module of its own, apart from the backend contract
(:mod:`bugless_core.model.backend`, which imports the generated messages for
its method signatures): ``bugless model serve --help`` and ``migrate --help``
build their options from these settings and must not load ``bugless_proto``
to print them, as the other services' ``serve --help`` do not. Backends may
import the class from either module (it is the same class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bugless_core import limits
from bugless_core.settings import setting

#: The longest statement timeout PostgreSQL takes (its limit is 2**31 - 1 ms).
MAX_STATEMENT_TIMEOUT_SECONDS = 2_147_483


@dataclass(frozen=True)
class ModelSettings:
    """Settings every Model backend understands (``bugless model serve``).

    Attributes:
        database_url: libpq-style URL of the database
            (``BUGLESS_DATABASE_URL``).
        page_token_secret: Key that signs page tokens so they are
            tamper-evident; every replica of one deployment needs the same one
            (``BUGLESS_PAGE_TOKEN_SECRET``). Required to serve; migrations
            do not use it.
        pool_min_size: Connections kept open per replica.
        pool_max_size: Upper bound of connections per replica.
        statement_timeout_seconds: Server-side bound of one statement
            (``statement_timeout`` of every connection,
            ``BUGLESS_STATEMENT_TIMEOUT_SECONDS``): a runaway search is cut
            off (UNAVAILABLE) rather than holding a connection. Raise it for
            a slow disk whose large searches or migration batches need
            longer; it cannot be switched off (a statement without bound
            holds its connection and locks for as long as it runs).
            Migration files run without it.
        schema: Database schema holding the tables (tests use one per test).
        regions: For multi-region backends, the database regions; first is the
            primary region.
        survival_goal: For multi-region backends, what the database survives:
            ``zone`` (a write commits inside its home region) or ``region``
            (every write waits for a quorum across regions; needs three or
            more regions). Applied by ``migrate`` with the regions.
        locality: For multi-region backends, where this replica runs, in the
            database's locality syntax (``region=us-east1,zone=us-east1-b``):
            the backend checks at open that its region is one of the
            database's and that its connections land in it.
        search_count_cap: A search counts matches up to this many; above it
            ``total_count`` is the cap with ``total_is_lower_bound``. Bounds
            the work of counting a broad query on a large tracker.
        feed_retention_seconds: How long change-feed rows are kept; a
            consumer resuming from an older position gets
            FAILED_PRECONDITION and rebuilds. Longer than any consumer
            (the notifier) may be down.
    """

    database_url: str = setting(
        env="BUGLESS_DATABASE_URL", secret=True, help="postgresql://user:pass@host:port/db."
    )
    page_token_secret: str = setting(
        "",
        env="BUGLESS_PAGE_TOKEN_SECRET",
        secret=True,
        help="Secret (16+ characters) signing page tokens; the same on every replica.",
    )
    pool_min_size: int = setting(2, cli=False, help="Connections kept open per replica.")
    pool_max_size: int = setting(
        10, env="BUGLESS_POOL_MAX_SIZE", help="Database connections per replica."
    )
    statement_timeout_seconds: float = setting(
        30.0,
        env="BUGLESS_STATEMENT_TIMEOUT_SECONDS",
        help="The database cancels a statement running longer than this (UNAVAILABLE).",
    )
    schema: str = setting(
        "bugless", env="BUGLESS_DATABASE_SCHEMA", help="Database schema holding the tables."
    )
    regions: tuple[str, ...] = setting(
        (),
        env="BUGLESS_REGIONS",
        help="Comma-separated database regions, primary first (multi-region backends).",
    )
    survival_goal: str = setting(
        "zone",
        env="BUGLESS_COCKROACH_SURVIVAL_GOAL",
        choices=("zone", "region"),
        help="What a multi-region database survives: zone, or region (3+ regions; every "
        "write waits for a cross-region quorum). Applied by migrate.",
    )
    locality: str = setting(
        "",
        env="BUGLESS_COCKROACH_LOCALITY",
        help="Where this replica runs, e.g. region=us-east1,zone=us-east1-b (multi-region "
        "backends check their connections land in that region).",
    )
    search_count_cap: int = setting(
        limits.SEARCH_COUNT_CAP,
        env="BUGLESS_SEARCH_COUNT_CAP",
        help="Searches count matches up to this many (above: a lower bound).",
    )
    feed_retention_seconds: int = setting(
        14 * 24 * 3600,
        env="BUGLESS_FEED_RETENTION_SECONDS",
        help="Keep change-feed entries this long; a consumer resuming from an older "
        "position must rebuild.",
    )

    @property
    def statement_timeout_ms(self) -> int:
        """``statement_timeout`` in the server's unit: whole milliseconds, at least 1."""
        return max(1, math.ceil(self.statement_timeout_seconds * 1000))

    def __post_init__(self) -> None:
        if self.search_count_cap < 1:
            raise ValueError("search_count_cap must be at least 1")
        if self.feed_retention_seconds < 1:
            raise ValueError("feed_retention_seconds must be at least 1")
        if not 0 < self.statement_timeout_seconds <= MAX_STATEMENT_TIMEOUT_SECONDS:
            raise ValueError(
                "--statement-timeout-seconds (BUGLESS_STATEMENT_TIMEOUT_SECONDS) must be "
                f"more than 0 and at most {MAX_STATEMENT_TIMEOUT_SECONDS} (PostgreSQL's "
                f"limit, about 24 days), got {self.statement_timeout_seconds}: every "
                "statement keeps a bound"
            )
        if self.pool_max_size < 1:
            raise ValueError("pool_max_size must be at least 1")
        if self.pool_min_size > self.pool_max_size:
            object.__setattr__(self, "pool_min_size", self.pool_max_size)
