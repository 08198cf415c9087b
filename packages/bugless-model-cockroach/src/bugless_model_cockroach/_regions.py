"""Multi-region DDL: database regions, survival goal and table localities.

``bugless model migrate --regions eu-west1,us-east1,...`` (``ModelSettings.regions``,
primary first) makes the database multi-region and homes each table where its
traffic is (CockroachDB only; a PostgreSQL server refuses). The statements
follow the CockroachDB SQL reference pages "SET PRIMARY REGION", "ADD REGION",
"SURVIVE {ZONE, REGION} FAILURE" and "SET LOCALITY":

* ``issues``, ``issue_history``, ``attachments``, ``issue_custom_values``,
  ``issue_mentions`` and ``issue_entry_vectors`` (the metadata and its search
  rows): ``REGIONAL BY ROW``.
  CockroachDB adds the hidden ``crdb_region`` column, defaulting to the
  gateway region of the inserting connection, so an issue (and its history,
  attachment, value and mention rows) live where it was filed and reads and
  writes there stay in-region.
* ``components`` (ACLs included), ``hotlists`` and ``custom_fields`` (the
  definitions): ``GLOBAL``, read on every search and every visibility check
  from every region, rarely written.
* Everything else (hotlist items, saved searches, attachment content, leases,
  the migration ledger, the change feed, stars, subscriptions, notification
  settings): ``REGIONAL BY TABLE IN PRIMARY REGION``.

The survival goal is ``ModelSettings.survival_goal`` (``BUGLESS_COCKROACH_SURVIVAL_GOAL``):
``zone`` (the default: a write commits with a quorum inside its home region)
or ``region`` (``SURVIVE REGION FAILURE``: needs three or more regions, and
every write waits for a quorum across regions), applied with the regions.

The locality (``ModelSettings.locality``, ``BUGLESS_COCKROACH_LOCALITY``, the
syntax of ``cockroach start --locality``) says where a Model replica runs. A
``REGIONAL BY ROW`` row is homed in the *gateway* region of the connection
that inserts it, so a replica whose database URL leads to another region's
nodes would home every issue it files there, and pay a cross-region round
trip on every read of them. :func:`locality_region` reads the region out of
the setting; on open the backend checks it against the database's regions
and the gateway (:data:`REGION_CHECKS`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bugless_core.errors import InvalidArgument

_REGION = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TIER = re.compile(r"^[A-Za-z0-9_-]+=[A-Za-z0-9_.-]+$")

SURVIVAL_GOALS = ("zone", "region")
#: Regions ``SURVIVE REGION FAILURE`` needs: a quorum must outlive a whole region.
MIN_REGIONS_FOR_REGION_SURVIVAL = 3

REGIONAL_BY_ROW = (
    "issues",
    "issue_history",
    "attachments",
    "issue_custom_values",
    "issue_mentions",
    "issue_entry_vectors",
)
GLOBAL = ("components", "hotlists", "custom_fields")
IN_PRIMARY_REGION = (
    "hotlist_items",
    "saved_searches",
    "blobs",
    "blob_chunks",
    "attachment_contents",
    "bugless_leases",
    "schema_migrations",
    # The change feed is one commit-ordered sequence for the whole
    # deployment: every write, wherever it runs, appends a pending row; the
    # sequencer numbers them there.
    "change_feed",
    "change_feed_state",
    "change_feed_pending",
    "issue_stars",
    "component_subscriptions",
    "saved_search_subscriptions",
    "saved_search_subscriptions_version",
    "notification_settings",
    "issue_mutes",
    # Migrations 0011's and 0018's backfill queues, 0028's scans that fill
    # the first, and 0033's text vectors queue: written by migrate, drained
    # after migrating.
    "issue_mentions_pending",
    "custom_value_spellings_pending",
    "issue_mention_scans",
    "issue_text_rebuilds",
)


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def check_regions(regions: Sequence[str]) -> list[str]:
    """The region names, checked (they are spliced into DDL as identifiers).

    Raises:
        InvalidArgument: a name is not a cloud region name, or repeats.
    """
    for region in regions:
        if not _REGION.match(region):
            msg = (
                f"regions: {region!r} is not a region name (lower-case letters, digits and "
                "single dashes, as in SHOW REGIONS FROM CLUSTER: eu-west1, us-east1)"
            )
            raise InvalidArgument(msg, metadata={"field": "regions"})
    if len(set(regions)) != len(regions):
        msg = f"regions: {', '.join(regions)} names a region twice"
        raise InvalidArgument(msg, metadata={"field": "regions"})
    return list(regions)


def check_survival_goal(goal: str, regions: Sequence[str]) -> str:
    """The survival goal, checked against the regions it must be applied with.

    Raises:
        InvalidArgument: an unknown goal, or ``region`` with fewer than three
            regions (with none, the goal would silently not be applied).
    """
    if goal not in SURVIVAL_GOALS:
        msg = f"survival_goal: {goal!r} is not one of {', '.join(SURVIVAL_GOALS)}"
        raise InvalidArgument(msg, metadata={"field": "survival_goal"})
    if goal == "region" and len(regions) < MIN_REGIONS_FOR_REGION_SURVIVAL:
        msg = (
            f"survival_goal: region needs {MIN_REGIONS_FOR_REGION_SURVIVAL} or more regions "
            f"(a quorum must outlive a whole region), regions has {len(regions)}: "
            "list them with --regions (BUGLESS_REGIONS)"
        )
        raise InvalidArgument(msg, metadata={"field": "survival_goal"})
    return goal


def locality_region(locality: str) -> str | None:
    """The ``region`` tier of a locality (``region=us-east1,zone=us-east1-b``); None if empty.

    Raises:
        InvalidArgument: not ``key=value`` tiers separated by commas, no
            ``region`` tier, or a region that is not a region name.
    """
    if not locality.strip():
        return None
    tiers = [t.strip() for t in locality.split(",")]
    if not all(_TIER.match(t) for t in tiers):
        msg = (
            f"locality: {locality!r} is not key=value tiers separated by commas, "
            "e.g. region=us-east1,zone=us-east1-b"
        )
        raise InvalidArgument(msg, metadata={"field": "locality"})
    found = dict(t.split("=", 1) for t in tiers)
    region = found.get("region")
    if region is None:
        msg = f"locality: {locality!r} has no region tier (region=us-east1,...)"
        raise InvalidArgument(msg, metadata={"field": "locality"})
    check_regions([region])
    return region


def check_locality_region(region: str, known: Sequence[str]) -> None:
    """Refuse a locality's region the database does not have (``known``: its regions).

    New issues could not be homed there, and the regions are the
    operator's to make (``bugless model migrate --regions``): a setting
    that does not fit the server, which ``bugless model serve`` exits 2 for,
    as for a locality on PostgreSQL.

    Raises:
        InvalidArgument: ``region`` is not one of ``known``.
    """
    if region not in known:
        msg = (
            f"locality: region {region!r} is not a region of the database "
            f"({', '.join(known) or 'none: run migrate with --regions'}); serve with a "
            "--locality (BUGLESS_COCKROACH_LOCALITY) naming one of them, or add it with "
            "migrate --regions"
        )
        raise InvalidArgument(msg, metadata={"field": "locality"})


def region_statements(
    database: str, schema: str, regions: Sequence[str], survival_goal: str = "zone"
) -> list[str]:
    """The DDL making ``database`` multi-region with ``regions`` (primary first).

    Idempotent: running it again after adding a region adds just that region;
    running it with another survival goal changes the goal.

    Raises:
        InvalidArgument: bad region names, or a survival goal the regions
            cannot have (:func:`check_survival_goal`).
    """
    names = check_regions(regions)
    goal = check_survival_goal(survival_goal, names)
    if not names:
        return []
    db = quote_identifier(database)
    statements = [f"ALTER DATABASE {db} SET PRIMARY REGION = {quote_identifier(names[0])}"]
    statements += [
        f"ALTER DATABASE {db} ADD REGION IF NOT EXISTS {quote_identifier(region)}"
        for region in names[1:]
    ]
    statements.append(f"ALTER DATABASE {db} SURVIVE {goal.upper()} FAILURE")
    table = f"{quote_identifier(schema)}."
    statements += [f"ALTER TABLE {table}{t} SET LOCALITY REGIONAL BY ROW" for t in REGIONAL_BY_ROW]
    statements += [f"ALTER TABLE {table}{t} SET LOCALITY GLOBAL" for t in GLOBAL]
    statements += [
        f"ALTER TABLE {table}{t} SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION"
        for t in IN_PRIMARY_REGION
    ]
    return statements


#: On open with a locality (CockroachDB): the database's regions, then the
#: region of the node this connection landed on. CockroachDB docs: "SHOW
#: REGIONS" (``SHOW REGIONS FROM DATABASE``) and "Functions and Operators"
#: (``gateway_region()``).
DATABASE_REGIONS = "SELECT region FROM [SHOW REGIONS FROM DATABASE]"
GATEWAY_REGION = "SELECT gateway_region()"
