"""The CockroachDB-only statements, statement by statement, and the dialect switch.

What compatibility mode cannot execute (PostgreSQL has no regions and no
``AS OF SYSTEM TIME``) is asserted here against the synopses of the
CockroachDB 23.2 SQL reference: "SET PRIMARY REGION"
(``ALTER DATABASE database_name SET PRIMARY REGION = region_name``), "ADD
REGION" (``ALTER DATABASE database_name ADD REGION IF NOT EXISTS region_name``),
"SURVIVE {ZONE, REGION} FAILURE", "SET LOCALITY" (``ALTER TABLE table_name SET
LOCALITY {REGIONAL BY ROW | GLOBAL | REGIONAL BY TABLE IN PRIMARY REGION}``) and
"SET TRANSACTION" / "Follower Reads" (``SET TRANSACTION AS OF SYSTEM TIME
follower_read_timestamp()`` as the first statement of a read-only
transaction). The other side of each switch runs for real below.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable, Callable

import pytest

from bugless_core.cli import EXIT_USAGE, exit_status_of
from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.migrations import AdvisoryLock, LeaseLock
from bugless_core.model.backend import ModelSettings
from bugless_core.model.commands import ModelMigrateSettings, ModelServeSettings
from bugless_core.settings import settings_from_environ
from bugless_model_cockroach import CockroachBackend
from bugless_model_cockroach import _queries as q
from bugless_model_cockroach._dialect import COCKROACH, COMPATIBILITY, dialect_for
from bugless_model_cockroach._regions import (
    DATABASE_REGIONS,
    GATEWAY_REGION,
    GLOBAL,
    IN_PRIMARY_REGION,
    REGIONAL_BY_ROW,
    check_locality_region,
    locality_region,
    region_statements,
)
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres.seam import POSTGRES
from bugless_proto import v1
from bugless_testing.cockroach_sql import cockroach_incompatibilities
from bugless_testing.postgres import ThrowawayPostgres

ADMIN = v1.Caller(user_id="root", admin=True)
SECRET = "test-page-token-secret-0123456789"


def test_regions_set_the_primary_add_the_others_and_home_each_table() -> None:
    assert region_statements("bugless", "tracker", ["eu-west1", "us-east1", "asia-south1"]) == [
        'ALTER DATABASE "bugless" SET PRIMARY REGION = "eu-west1"',
        'ALTER DATABASE "bugless" ADD REGION IF NOT EXISTS "us-east1"',
        'ALTER DATABASE "bugless" ADD REGION IF NOT EXISTS "asia-south1"',
        'ALTER DATABASE "bugless" SURVIVE ZONE FAILURE',
        'ALTER TABLE "tracker".issues SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".issue_history SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".attachments SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".issue_custom_values SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".issue_mentions SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".issue_entry_vectors SET LOCALITY REGIONAL BY ROW',
        'ALTER TABLE "tracker".components SET LOCALITY GLOBAL',
        'ALTER TABLE "tracker".hotlists SET LOCALITY GLOBAL',
        'ALTER TABLE "tracker".custom_fields SET LOCALITY GLOBAL',
        'ALTER TABLE "tracker".hotlist_items SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        'ALTER TABLE "tracker".saved_searches SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        'ALTER TABLE "tracker".blobs SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        'ALTER TABLE "tracker".blob_chunks SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        'ALTER TABLE "tracker".attachment_contents SET LOCALITY'
        " REGIONAL BY TABLE IN PRIMARY REGION",
        'ALTER TABLE "tracker".bugless_leases SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        'ALTER TABLE "tracker".schema_migrations SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION',
        *(
            f'ALTER TABLE "tracker".{table} SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION'
            for table in (
                "change_feed",
                "change_feed_state",
                "change_feed_pending",
                "issue_stars",
                "component_subscriptions",
                "saved_search_subscriptions",
                "saved_search_subscriptions_version",
                "notification_settings",
                "issue_mutes",
                "issue_mentions_pending",
                "custom_value_spellings_pending",
                "issue_mention_scans",
                "issue_text_rebuilds",
            )
        ),
    ]


THREE = ["eu-west1", "us-east1", "asia-south1"]


@pytest.mark.parametrize(
    ("goal", "statement"),
    [
        ("zone", 'ALTER DATABASE "bugless" SURVIVE ZONE FAILURE'),
        ("region", 'ALTER DATABASE "bugless" SURVIVE REGION FAILURE'),
    ],
)
def test_the_survival_goal_setting_is_the_survive_statement(goal: str, statement: str) -> None:
    statements = region_statements("bugless", "tracker", THREE, goal)
    assert [s for s in statements if "SURVIVE" in s] == [statement]
    # The goal follows the regions (SURVIVE needs them) and precedes the localities.
    assert statements.index(statement) == len(THREE)


@pytest.mark.parametrize("regions", [[], ["eu-west1"], ["eu-west1", "us-east1"]])
def test_region_survival_with_fewer_than_three_regions_is_refused(regions: list[str]) -> None:
    """Before: with no regions nothing ran, so "region" silently meant no goal at all."""
    with pytest.raises(InvalidArgument, match="region needs 3 or more regions"):
        region_statements("bugless", "tracker", regions, "region")


def test_an_unknown_survival_goal_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'continent' is not one of zone, region"):
        region_statements("bugless", "tracker", THREE, "continent")


def test_the_locality_setting_names_the_replicas_region() -> None:
    assert locality_region("region=us-east1,zone=us-east1-b") == "us-east1"
    assert locality_region(" zone=b , region=eu-west1 ") == "eu-west1"
    assert locality_region("") is None
    for bad, message in [
        ("us-east1", "key=value tiers"),
        ("zone=us-east1-b", "no region tier"),
        ("region=US_EAST", "is not a region name"),
        ("region=us-east1;DROP", "key=value tiers"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            locality_region(bad)


def test_a_locality_naming_a_region_the_database_lacks_is_bad_configuration() -> None:
    """``serve --locality`` on a region ``migrate --regions`` did not make exits 2.

    The operator's setting at fault, as a locality on PostgreSQL; it was
    FailedPrecondition, which ``bugless model serve`` exits 1 for.
    """
    check_locality_region("europe-west1", ["us-east1", "europe-west1"])
    with pytest.raises(InvalidArgument) as refused:
        check_locality_region("asia-east1", ["us-east1", "europe-west1"])
    assert refused.value.message.startswith(
        "locality: region 'asia-east1' is not a region of the database (us-east1, europe-west1)"
    )
    assert exit_status_of(refused.value) == EXIT_USAGE
    with pytest.raises(InvalidArgument, match=r"\(none: run migrate with --regions\)"):
        check_locality_region("us-east1", [])


def test_the_locality_checks_are_the_documented_statements() -> None:
    """CockroachDB docs: "SHOW REGIONS" and ``gateway_region()`` ("Functions and Operators")."""
    assert DATABASE_REGIONS == "SELECT region FROM [SHOW REGIONS FROM DATABASE]"
    assert GATEWAY_REGION == "SELECT gateway_region()"


def test_every_table_the_migrations_create_has_a_home_region() -> None:
    """A new table with no locality would stay wherever CockroachDB put it."""
    created: set[str] = set()
    for migration in CockroachBackend.migrations():
        created |= set(re.findall(r"CREATE TABLE(?: IF NOT EXISTS)? (\w+)", migration.sql))
    homed = set(REGIONAL_BY_ROW) | set(GLOBAL) | set(IN_PRIMARY_REGION)
    assert created - homed == set()


def test_one_region_is_a_primary_only_and_none_changes_nothing() -> None:
    assert region_statements('odd"name', "s", ["us-east1"])[:2] == [
        'ALTER DATABASE "odd""name" SET PRIMARY REGION = "us-east1"',
        'ALTER DATABASE "odd""name" SURVIVE ZONE FAILURE',
    ]
    assert region_statements("bugless", "s", []) == []
    assert region_statements("bugless", "s", [], "zone") == []


@pytest.mark.parametrize("bad", ['us-east1"; DROP TABLE issues; --', "US-EAST1", "eu--west", ""])
def test_region_names_that_are_not_region_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a region name"):
        region_statements("bugless", "s", ["eu-west1", bad])


def test_a_region_named_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="names a region twice"):
        region_statements("bugless", "s", ["eu-west1", "eu-west1"])


def test_follower_reads_are_the_documented_transaction_clause() -> None:
    assert q.FOLLOWER_READ == "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()"
    assert COCKROACH.stale_read == q.FOLLOWER_READ
    assert COMPATIBILITY.stale_read is None


def test_the_cockroach_dialects_use_no_advisory_lock_and_no_notify() -> None:
    for dialect in (COCKROACH, COMPATIBILITY):
        assert dialect.hierarchy_lock is None
        assert dialect.notify is None
    assert "pg_advisory_xact_lock" in (POSTGRES.hierarchy_lock or "")
    assert isinstance(CockroachBackend.migration_lock, LeaseLock)
    assert isinstance(PostgresBackend.migration_lock, AdvisoryLock)


def test_the_server_version_picks_the_dialect() -> None:
    crdb = "CockroachDB CCL v23.2.4 (x86_64-pc-linux-gnu, built 2024/04/08, go1.21.9)"
    assert dialect_for(crdb) is COCKROACH
    assert dialect_for("PostgreSQL 18.0 on x86_64-pc-linux-gnu") is COMPATIBILITY


async def test_compatibility_mode_reads_stale_searches_fresh(
    bugless_model_backend: CockroachBackend,
) -> None:
    backend = bugless_model_backend
    if backend.on_cockroach:
        assert backend._dialect is COCKROACH
        return
    assert backend._dialect is COMPATIBILITY
    component = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name="stale-reads")
    )
    made = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title="fresh", component_id=component.id)
        )
    )
    query = v1.StructuredQuery(
        filter=v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.COMPONENT,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(integer=component.id)],
            )
        )
    )
    found = await backend.search_issues(
        v1.SearchIssuesRequest(caller=ADMIN, query=query, allow_stale=True)
    )
    assert [i.id for i in found.issues] == [made.id]


async def test_the_stale_read_statement_opens_the_search_transaction(
    bugless_model_backend: CockroachBackend,
) -> None:
    """The seam runs ``stale_read`` first in the search's transaction.

    PostgreSQL accepts ``SET TRANSACTION ISOLATION LEVEL`` only before any
    query of a transaction, as CockroachDB accepts ``SET TRANSACTION AS OF
    SYSTEM TIME``; standing in for it, it proves the position. Only
    ``allow_stale`` searches run it.
    """
    backend = bugless_model_backend
    if backend.on_cockroach:
        return
    probe = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    backend._dialect = dataclasses.replace(COMPATIBILITY, stale_read=probe)
    try:
        await backend.search_issues(v1.SearchIssuesRequest(caller=ADMIN, allow_stale=True))
        backend._dialect = dataclasses.replace(COMPATIBILITY, stale_read="SELECT 1/0")
        await backend.search_issues(v1.SearchIssuesRequest(caller=ADMIN, allow_stale=False))
        with pytest.raises(Exception, match="division by zero"):
            await backend.search_issues(v1.SearchIssuesRequest(caller=ADMIN, allow_stale=True))
    finally:
        backend._dialect = COMPATIBILITY


async def test_regions_on_postgresql_are_refused_before_anything_is_written(
    make_serializable_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_serializable_database("cockroach_regions")
    settings = ModelSettings(
        database_url=url, page_token_secret=SECRET, regions=("eu-west1", "us-east1")
    )
    with pytest.raises(InvalidArgument, match="multi-region database needs CockroachDB"):
        await CockroachBackend.migrate(settings)
    with pytest.raises(FailedPrecondition, match="run `bugless model migrate` first"):
        await CockroachBackend.open(dataclasses.replace(settings, regions=()))


async def test_region_survival_without_regions_is_refused_before_anything_is_written(
    make_serializable_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_serializable_database("cockroach_survival")
    settings = ModelSettings(database_url=url, page_token_secret=SECRET, survival_goal="region")
    with pytest.raises(InvalidArgument, match="region needs 3 or more regions"):
        await CockroachBackend.migrate(settings)
    with pytest.raises(FailedPrecondition, match="run `bugless model migrate` first"):
        await CockroachBackend.open(dataclasses.replace(settings, survival_goal="zone"))


async def test_a_locality_on_postgresql_is_refused_at_open(
    bugless_model_backend: CockroachBackend,
) -> None:
    if bugless_model_backend.on_cockroach:
        return
    settings = dataclasses.replace(bugless_model_backend.settings, locality="region=us-east1")
    with pytest.raises(InvalidArgument, match="locality: regions need CockroachDB"):
        await CockroachBackend.open(settings)
    assert bugless_model_backend.home_region is None


def test_the_migrate_command_reads_the_survival_goal_and_serve_the_locality() -> None:
    environ = {
        "BUGLESS_DATABASE_URL": "postgresql://x/y",
        "BUGLESS_PAGE_TOKEN_SECRET": SECRET,
        "BUGLESS_REGIONS": "eu-west1,us-east1,asia-south1",
        "BUGLESS_COCKROACH_SURVIVAL_GOAL": "region",
        "BUGLESS_COCKROACH_LOCALITY": "region=us-east1,zone=us-east1-b",
        # serve needs mutual TLS or an explicit opt-out; not what this test is about
        "BUGLESS_MODEL_INSECURE_LOCAL": "true",
    }
    migrate = settings_from_environ(ModelMigrateSettings, environ, env_prefix="BUGLESS_MODEL_")
    assert migrate.storage.survival_goal == "region"
    serve = settings_from_environ(ModelServeSettings, environ, env_prefix="BUGLESS_MODEL_")
    assert serve.storage.locality == "region=us-east1,zone=us-east1-b"


async def test_postgresql_not_running_serializable_is_refused(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = await postgres_server.acreate_database("cockroach_read_committed")
    settings = ModelSettings(database_url=url, page_token_secret=SECRET)
    with pytest.raises(InvalidArgument, match="needs default_transaction_isolation"):
        await CockroachBackend.migrate(settings)


async def test_edits_make_the_comment_vector_from_the_texts_with_no_aggregate(
    bugless_model_backend: CockroachBackend,
) -> None:
    """CockroachDB has no CREATE AGGREGATE: migration 13 is a no-op, edits parse the texts.

    No entry vector is stored (the table stays empty), and an edit and a
    redaction leave the vector of the current texts joined, as before 0012.
    """
    assert POSTGRES.stored_comment_vectors
    assert not COCKROACH.stored_comment_vectors
    assert not COMPATIBILITY.stored_comment_vectors
    (aggregate,) = [m for m in CockroachBackend.migrations() if m.version == 13]
    assert aggregate.sql == "SELECT 1"
    assert not [m.version for m in CockroachBackend.migrations() if "AGGREGATE" in m.sql]
    backend = bugless_model_backend
    component = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"vectors-{uuid.uuid4().hex[:8]}")
    )
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title="texts", component_id=component.id),
            description="the first words",
        )
    )
    changed = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN, issue_id=issue.id, expected_version=issue.version, comment="old text"
        )
    )
    assert changed.issue is not None
    assert changed.entry is not None
    edited = await backend.edit_comment(
        v1.EditCommentRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=changed.issue.version,
            entry_version=changed.entry.version,
            comment="new text",
        )
    )
    assert edited.issue is not None
    redacted = await backend.redact(
        v1.RedactRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=edited.issue.version,
            target=v1.RedactionTarget.DESCRIPTION,
        )
    )
    assert redacted.issue is not None
    async with backend._pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM issue_entry_vectors WHERE issue_id = $1", issue.id
        )
        assert await conn.fetchval(
            "SELECT comments_tsv = to_tsvector('english', ' new text ') FROM issues WHERE id = $1",
            issue.id,
        )


def test_no_migration_the_backend_runs_has_what_cockroachdb_lacks() -> None:
    """The recorder's check reads a migration file's statements after its header comment.

    PostgreSQL's migration 13 makes an aggregate, which CockroachDB cannot:
    the check finds it there, and in none of this backend's migrations.
    """
    (postgres_13,) = [m for m in PostgresBackend.migrations() if m.version == 13]
    assert cockroach_incompatibilities(postgres_13.sql) == ["CREATE AGGREGATE"]
    found = {m.version: cockroach_incompatibilities(m.sql) for m in CockroachBackend.migrations()}
    assert found == {version: [] for version in found}
