"""Multi-region DDL: database regions, survival goal and table localities.

``bugless model migrate --regions eu-west1,us-east1,...`` (``ModelSettings.regions``,
primary first) makes the database multi-region and homes each table where its
traffic is (CockroachDB only; a PostgreSQL server refuses). The statements
follow the CockroachDB SQL reference pages "SET PRIMARY REGION", "ADD REGION",
"SURVIVE {ZONE, REGION} FAILURE" and "SET LOCALITY":

* ``issues``, ``issue_history`` and ``attachments`` (the metadata):
  ``REGIONAL BY ROW``. CockroachDB adds the hidden ``crdb_region`` column,
  defaulting to the gateway region of the inserting connection, so an issue
  (and its history and attachment rows) live where it was filed and reads and
  writes there stay in-region.
* ``components`` (ACLs included), ``hotlists`` and ``custom_fields`` (the
  definitions): ``GLOBAL``, read on every search and every visibility check
  from every region, rarely written.
* Everything else (hotlist items, saved searches, attachment content, leases,
  the migration ledger, the change feed, stars, subscriptions, notification
  settings): ``REGIONAL BY TABLE IN PRIMARY REGION``.

The survival goal stays ``ZONE`` (the default): a write commits with a quorum
inside its home region. ``SURVIVE REGION FAILURE`` needs three regions and
makes every write wait for a quorum across regions; an operator who wants it
runs ``ALTER DATABASE ... SURVIVE REGION FAILURE`` once (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bugless_core.errors import InvalidArgument

_REGION = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

REGIONAL_BY_ROW = ("issues", "issue_history", "attachments")
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
    # deployment: its head row is written by every write, wherever it runs.
    "change_feed",
    "change_feed_state",
    "issue_stars",
    "component_subscriptions",
    "saved_search_subscriptions",
    "notification_settings",
    "issue_mutes",
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


def region_statements(database: str, schema: str, regions: Sequence[str]) -> list[str]:
    """The DDL making ``database`` multi-region with ``regions`` (primary first).

    Idempotent: running it again after adding a region adds just that region.
    """
    names = check_regions(regions)
    if not names:
        return []
    db = quote_identifier(database)
    statements = [f"ALTER DATABASE {db} SET PRIMARY REGION = {quote_identifier(names[0])}"]
    statements += [
        f"ALTER DATABASE {db} ADD REGION IF NOT EXISTS {quote_identifier(region)}"
        for region in names[1:]
    ]
    statements.append(f"ALTER DATABASE {db} SURVIVE ZONE FAILURE")
    table = f"{quote_identifier(schema)}."
    statements += [f"ALTER TABLE {table}{t} SET LOCALITY REGIONAL BY ROW" for t in REGIONAL_BY_ROW]
    statements += [f"ALTER TABLE {table}{t} SET LOCALITY GLOBAL" for t in GLOBAL]
    statements += [
        f"ALTER TABLE {table}{t} SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION"
        for t in IN_PRIMARY_REGION
    ]
    return statements
