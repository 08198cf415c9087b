"""Seed a bugless PostgreSQL schema with N realistic issues, fast, and check it.

Components are created through the backend itself (224 calls: paths and
effective ACLs are the backend's own). Issues and their history are generated
in Python (:mod:`bench._dataset`), copied into an unlogged staging table with
``copy_records_to_table`` and turned into ``issues``/``issue_history`` rows by
set-based ``INSERT … SELECT`` using the backend's own tsvector expressions
(:mod:`bench._seed_sql`), while the next chunk is being generated. The
secondary indexes of ``issues`` are dropped for the load and rebuilt from
their ``pg_indexes`` definitions, then ``VACUUM (ANALYZE)``.

The result is checked twice: whole-table consistency of rows and history, and
a replay of sample issues through the backend (create + change calls, into a
scratch schema) whose rows, tsvectors and history must equal the seeded ones.

    python -m bench.seed --issues 1000000 [--database-url URL] [--schema bugless]

Without ``--database-url`` a throwaway server is started and kept running
(its URL printed) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from bench import _dataset as data
from bench import _seed_sql as sql
from bugless_core.errors import BuglessError
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

PAGE_TOKEN_SECRET = "bench-page-token-secret-0123456789"
ADMIN = v1.Caller(user_id="bench-admin", admin=True)
VERIFY_SCHEMA = "bench_verify"
#: GIN builds first: they are the long poles of the index rebuild.
_INDEX_ORDER = ("issues_text_tsv", "issues_comments_tsv", "issues_title_tsv")


@dataclass(frozen=True)
class SeedOptions:
    """What to seed.

    Attributes:
        issues: Number of issues.
        seed: Seed of every random choice (same seed, same data).
        chunk_size: Issues generated and copied per round.
        vocabulary: Words in the vocabulary (Zipf-distributed).
    """

    issues: int = 1_000_000
    seed: int = 1
    chunk_size: int = 50_000
    vocabulary: int = 20_000


@dataclass
class SeedReport:
    """What was seeded and how long each phase took (seconds)."""

    issues: int
    components: dict[str, int]
    custom_fields: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)


def model_settings(database_url: str, schema: str = "bugless", pool: int = 10) -> ModelSettings:
    """Backend settings for the benchmark database."""
    return ModelSettings(
        database_url=database_url,
        page_token_secret=PAGE_TOKEN_SECRET,
        schema=schema,
        pool_max_size=pool,
    )


async def connect(settings: ModelSettings, **extra: str) -> asyncpg.Connection:
    """A plain connection with the schema on the search path."""
    return await asyncpg.connect(
        settings.database_url,
        server_settings={"search_path": f'"{settings.schema}", public', **extra},
    )


_BULK = {
    "maintenance_work_mem": "1GB",
    "work_mem": "256MB",
    "max_parallel_maintenance_workers": "0",
    "synchronous_commit": "off",
}


def _enum_names(enum: Any) -> list[str]:
    return [enum(v).name for v in range(1, max(int(e) for e in enum) + 1)]


ENUM_NAMES = [_enum_names(e) for e in (v1.Status, v1.Priority, v1.Severity, v1.IssueType)]


async def create_components(
    backend: PostgresBackend, specs: list[data.ComponentSpec]
) -> dict[str, int]:
    """Create the tree through the backend; return ids by path."""
    ids: dict[str, int] = {}
    for spec in specs:
        created = await backend.create_component(
            v1.CreateComponentRequest(
                caller=ADMIN,
                parent_id=ids[spec.parent_path] if spec.parent_path else 0,
                name=spec.name,
                acl=spec.acl_entries(),
            )
        )
        ids[spec.path] = created.id
    return ids


async def create_custom_fields(
    backend: PostgresBackend, specs: list[data.ComponentSpec], ids: dict[str, int]
) -> dict[str, int]:
    """The "Found In" enum on every top-level component, through the backend; ids by path."""
    created: dict[str, int] = {}
    for spec in specs:
        if spec.parent_path:
            continue
        field = await backend.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN,
                component_id=ids[spec.path],
                name=data.CUSTOM_FIELD_NAME,
                type=v1.CustomFieldType.ENUM,
                options=list(data.CUSTOM_OPTIONS),
            )
        )
        created[spec.path] = field.id
    return created


async def _timed(report: SeedReport, phase: str, work: Awaitable[None]) -> None:
    started = time.perf_counter()
    await work
    report.timings[phase] = time.perf_counter() - started
    print(f"  {phase}: {report.timings[phase]:.1f} s", flush=True)


async def _load_issues(
    settings: ModelSettings, generator: data.IssueGenerator, options: SeedOptions
) -> None:
    """Generate, stage and transform chunk by chunk (transform overlaps generation)."""
    loader = await connect(settings, **_BULK)
    workers = [await connect(settings, **_BULK) for _ in range(2)]
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()

    async def transform(conn: asyncpg.Connection) -> None:
        while (chunk := await queue.get()) is not None:
            await conn.execute(sql.INSERT_ISSUES, *chunk)
            await conn.execute(sql.INSERT_HISTORY, *chunk, *ENUM_NAMES)

    try:
        # Loads trust the generator; FK triggers are off for this session only.
        for conn in (*workers, loader):
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await conn.execute("SET session_replication_role = replica")
        await loader.execute(sql.DROP_STAGE)
        await loader.execute(sql.CREATE_STAGE)
        # One transformer while Python generates on the other core; a second
        # one joins to drain the queue once generation is done.
        tasks = [asyncio.create_task(transform(workers[0]))]
        for first in range(1, options.issues + 1, options.chunk_size):
            last = min(first + options.chunk_size - 1, options.issues)
            rows = list(generator.chunk(first, last))
            await loader.copy_records_to_table(
                "bench_stage", records=rows, columns=data.STAGE_COLUMNS
            )
            await queue.put((first, last))
            if any(t.done() for t in tasks):
                break  # a transformer failed: stop and surface its error
        tasks.append(asyncio.create_task(transform(workers[1])))
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
        await loader.execute(sql.DROP_STAGE)
    finally:
        for conn in (loader, *workers):
            await conn.close()


async def _parallel(settings: ModelSettings, statements: list[str], connections: int = 2) -> None:
    """Run independent statements on ``connections`` connections, in list order."""
    pending = list(statements)

    async def run() -> None:
        conn = await connect(settings, **_BULK)
        try:
            while pending:
                await conn.execute(pending.pop(0))
        finally:
            await conn.close()

    await asyncio.gather(*(run() for _ in range(connections)))


async def seed(settings: ModelSettings, options: SeedOptions) -> SeedReport:
    """Migrate, then fill an empty schema; return what was made."""
    await PostgresBackend.migrate(settings)
    conn = await connect(settings)
    try:
        if await conn.fetchval("SELECT count(*) FROM components"):
            msg = f"schema {settings.schema} is not empty: seed a fresh database or schema"
            raise RuntimeError(msg)
        await conn.execute(sql.CREATE_META)
        await conn.execute(f"TRUNCATE {sql.BENCH_SCHEMA}.vocabulary")
        await conn.execute(
            sql.FILL_VOCABULARY, data.vocabulary_candidates(options.seed), options.vocabulary
        )
        words = [r["word"] for r in await conn.fetch(sql.VOCABULARY)]
        indexes = await conn.fetch(sql.SECONDARY_INDEXES, settings.schema)
    finally:
        await conn.close()
    if len(words) < options.vocabulary:
        msg = f"only {len(words)} distinct stems among the candidate words"
        raise RuntimeError(msg)

    specs = data.component_tree(options.seed)
    report = SeedReport(issues=options.issues, components={})
    backend = await PostgresBackend.open(settings)
    try:
        started = time.perf_counter()
        report.components = await create_components(backend, specs)
        report.custom_fields = await create_custom_fields(backend, specs, report.components)
        report.timings["components"] = time.perf_counter() - started
    finally:
        await backend.close()
    conn = await connect(settings)
    try:
        await conn.execute(sql.FILL_COMPONENT_FIELDS)
    finally:
        await conn.close()
    generator = data.IssueGenerator(
        options.seed,
        options.issues,
        words,
        [report.components[s.path] for s in specs],
        [s.weight for s in specs],
    )
    ordered = sorted(
        indexes,
        key=lambda r: _INDEX_ORDER.index(r["indexname"]) if r["indexname"] in _INDEX_ORDER else 9,
    )
    await _parallel(
        settings,
        [f'DROP INDEX "{settings.schema}"."{r["indexname"]}"' for r in ordered],
        connections=1,
    )
    await _timed(report, "generate+load", _load_issues(settings, generator, options))
    await _timed(report, "custom value rows", _parallel(settings, [sql.FILL_CUSTOM_VALUES], 1))
    await _timed(report, "indexes", _parallel(settings, [r["indexdef"] for r in ordered]))
    await _timed(
        report,
        "vacuum analyze",
        _parallel(
            settings,
            [
                "VACUUM (ANALYZE) issues",
                "VACUUM (ANALYZE) issue_history",
                "VACUUM (ANALYZE) components",
                "VACUUM (ANALYZE) issue_custom_values",
            ],
        ),
    )
    conn = await connect(settings)
    try:
        await conn.execute(sql.RESET_ISSUE_SEQUENCE)
        for key, value in (
            ("issues", options.issues),
            ("seed", options.seed),
            ("components", report.components),
            ("custom_fields", report.custom_fields),
        ):
            await conn.execute(sql.SAVE_INFO, key, json.dumps(value))
        for table in ("issues", "issue_history"):
            report.sizes[table] = await conn.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size($1::regclass))", table
            )
    finally:
        await conn.close()
    return report


# ---- verification ----


def _comparable(issue: v1.Issue) -> dict[str, Any]:
    out = issue.to_dict()
    for key in ("id", "createdAt", "modifiedAt", "closedAt"):
        out.pop(key, None)
    out["closed"] = issue.closed_at is not None
    return out


async def _replay(backend: PostgresBackend, issue: v1.Issue, history: list[v1.HistoryEntry]) -> int:
    """Create ``issue`` and apply its later entries through ``backend``."""
    created = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=v1.Caller(user_id=issue.reporter, admin=True),
            fields=v1.IssueFields(
                title=issue.title,
                priority=issue.priority,
                severity=issue.severity,
                type=issue.type,
                component_id=issue.component_id,
                assignee=issue.assignee,
            ),
            description=issue.description,
            cc=list(issue.cc),
        )
    )
    for entry in history[1:]:
        status = [c.new_value for c in entry.changes if c.field == "status"]
        delta = v1.IssueDelta()
        if status:
            delta = v1.IssueDelta(
                fields=v1.IssueFields(status=v1.Status[status[0]]),
                update_mask=FieldMask(paths=["status"]),
            )
        await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=v1.Caller(user_id=entry.author, admin=True),
                issue_id=created.id,
                expected_version=entry.version - 1,
                delta=delta,
                comment=entry.comment,
            )
        )
    return created.id


async def verify(settings: ModelSettings) -> list[str]:
    """Problems found in the seeded schema (empty: it is what the backend writes)."""
    problems: list[str] = []
    conn = await connect(settings)
    try:
        consistency = await conn.fetchrow(sql.CONSISTENCY)
        assert consistency is not None  # one row of counts, always
        counts = dict(consistency.items())
        problems += [f"{name}: {n} issues" for name, n in counts.items() if n]
        sample = [r["id"] for r in await conn.fetch(sql.SAMPLE_IDS)]
        seed_value = json.loads(
            await conn.fetchval(
                f"SELECT value FROM {sql.BENCH_SCHEMA}.seed_info WHERE key = 'seed'"
            )
        )
    finally:
        await conn.close()

    scratch = replace(settings, schema=VERIFY_SCHEMA)
    admin = await connect(settings)
    await admin.execute(f"DROP SCHEMA IF EXISTS {VERIFY_SCHEMA} CASCADE")
    await PostgresBackend.migrate(scratch)
    seeded_backend = await PostgresBackend.open(settings)
    replay_backend = await PostgresBackend.open(scratch)
    scratch_conn = await connect(scratch)
    seeded_conn = await connect(settings)
    try:
        await create_components(replay_backend, data.component_tree(int(seed_value)))
        for issue_id in sample:
            issue = await seeded_backend.get_issue(
                v1.GetIssueRequest(caller=ADMIN, issue_id=issue_id)
            )
            history = (
                await seeded_backend.list_history(
                    v1.ListHistoryRequest(
                        caller=ADMIN, issue_id=issue_id, page=v1.PageRequest(page_size=100)
                    )
                )
            ).entries
            try:
                copy_id = await _replay(replay_backend, issue, history)
            except BuglessError as exc:
                problems.append(f"issue {issue_id}: the backend refused its history: {exc}")
                continue
            copy = await replay_backend.get_issue(
                v1.GetIssueRequest(caller=ADMIN, issue_id=copy_id)
            )
            if _comparable(issue) != _comparable(copy):
                problems.append(f"issue {issue_id}: {_comparable(issue)} != {_comparable(copy)}")
            seeded_row = await seeded_conn.fetchrow(sql.ISSUE_SNAPSHOT, issue_id)
            copy_row = await scratch_conn.fetchrow(sql.ISSUE_SNAPSHOT, copy_id)
            if seeded_row is None or copy_row is None:
                problems.append(f"issue {issue_id}: no snapshot (seeded or copy {copy_id})")
                continue
            for part in ("issue", "history"):
                mine, theirs = json.loads(seeded_row[part]), json.loads(copy_row[part])
                if mine != theirs:
                    diff = (
                        {
                            k: (mine.get(k), theirs.get(k))
                            for k in set(mine) | set(theirs)
                            if mine.get(k) != theirs.get(k)
                        }
                        if isinstance(mine, dict)
                        else (mine, theirs)
                    )
                    problems.append(f"issue {issue_id} {part} differs (seeded, backend): {diff}")
        print(
            f"  replayed {len(sample)} seeded issues through the backend: "
            f"{'identical' if not problems else 'DIFFERENT'}"
        )
    finally:
        await scratch_conn.close()
        await seeded_conn.close()
        await replay_backend.close()
        await seeded_backend.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {VERIFY_SCHEMA} CASCADE")
        await admin.close()
    return problems


async def seed_and_verify(
    database_url: str, schema: str, options: SeedOptions, *, check: bool = True
) -> SeedReport:
    """Seed, print the timings, verify (raising on any difference)."""
    settings = model_settings(database_url, schema)
    print(f"seeding {options.issues:,} issues into schema {schema} ...", flush=True)
    started = time.perf_counter()
    report = await seed(settings, options)
    report.timings["total"] = time.perf_counter() - started
    print(f"  seeded in {report.timings['total']:.1f} s; sizes {report.sizes}", flush=True)
    if check:
        started = time.perf_counter()
        problems = await verify(settings)
        print(f"  verified in {time.perf_counter() - started:.1f} s", flush=True)
        if problems:
            raise RuntimeError("seeded data differs from the backend's:\n" + "\n".join(problems))
    return report


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :func:`options_from` reads."""
    parser.add_argument("--issues", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--schema", default="bugless")
    parser.add_argument("--no-verify", action="store_true", help="skip the backend comparison")


def options_from(args: argparse.Namespace) -> SeedOptions:
    """SeedOptions from parsed arguments."""
    return SeedOptions(issues=args.issues, seed=args.seed, chunk_size=args.chunk_size)


def with_database(
    database_url: str | None, work: Callable[[str], Coroutine[Any, Any, None]], *, keep: bool
) -> None:
    """Run ``work`` on ``database_url`` or on a throwaway server's new database.

    With ``keep``, a throwaway server stays up (URL printed) until Ctrl-C.
    """
    if database_url:
        asyncio.run(work(database_url))
        return
    from bugless_dev.postgres import start_postgres  # noqa: PLC0415 - pytest import

    # Ctrl-C or SIGTERM stops the server, also when started in the background
    # (where a shell leaves SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    server = start_postgres()
    try:
        url = server.create_database("bench")
        print(f"throwaway PostgreSQL: {url}", flush=True)
        asyncio.run(work(url))
        if keep:
            print(f"serving {url} until Ctrl-C", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(parser)
    parser.add_argument("--database-url", help="an existing (empty) database; default: throwaway")
    args = parser.parse_args()

    async def work(url: str) -> None:
        await seed_and_verify(url, args.schema, options_from(args), check=not args.no_verify)

    with_database(args.database_url, work, keep=True)


if __name__ == "__main__":
    main()
