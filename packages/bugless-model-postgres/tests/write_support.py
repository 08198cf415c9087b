"""What the write (and search) tests share: their callers, recorders of the statements sent, a
component of their own, an issue with a custom value, the calls they chain, a
transaction that holds a row lock while a call queues behind it, and a backend
of its own on a fresh database or schema.

Kept in one place so the tests of round trips, races and replies build their
issues and wait for a lock the same way (they were copies of each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres import _queries as q
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="root", admin=True)
ALICE = v1.Caller(user_id="alice", groups=["eng"])
#: The change feed's pruning (``_watch.PRUNE_EVERY_SECONDS``), which the
#: backend sends on its own pool every minute, not for any request: counted,
#: a test over a minute long (CI under load) saw one more statement in the
#: call it happened to overlap (ci87: a hotlist re-rank 10 against 9).
_BACKGROUND = (" ".join(q.PRUNE_FEED.split()),)


class Sent:
    """The statements a backend's pool sends while entered (asyncpg's query logger)."""

    def __init__(self, backend: PostgresBackend, size: int) -> None:
        self._backend = backend
        self._size = size
        self.statements: list[str] = []
        #: Each statement of ``statements`` with the arguments it was sent.
        self.arguments: list[tuple[str, tuple[Any, ...]]] = []

    def _record(self, logged: Any) -> None:
        text = " ".join(str(logged.query).split())
        if "typeinfo_tree" not in text and "'jit'" not in text and text not in _BACKGROUND:
            self.statements.append(text)
            self.arguments.append((text, tuple(logged.args)))

    async def _each_connection(self, method: str) -> None:
        pool = self._backend._pool
        connections = [await pool.acquire() for _ in range(self._size)]  # all of them
        for conn in connections:
            getattr(conn, method)(self._record)
            await pool.release(conn)

    def starting(self, prefix: str) -> int:
        """How many statements sent start with ``prefix``."""
        return sum(s.startswith(prefix) for s in self.statements)

    def take(self) -> list[str]:
        """The statements sent since the last take."""
        taken, self.statements = self.statements, []
        return taken

    async def __aenter__(self) -> Sent:
        await self._each_connection("add_query_logger")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._each_connection("remove_query_logger")


@contextlib.asynccontextmanager
async def logged_statements(backend: PostgresBackend) -> AsyncIterator[list[str]]:
    """The statements run meanwhile on ``backend``'s pool (of one connection).

    Unlike :class:`Sent`, each is kept as sent (whitespace and asyncpg's own
    type look-ups included): the search tests count every statement a page
    costs, so they warm the connection up first rather than filter.
    """
    seen: list[str] = []

    def log(query: Any) -> None:
        seen.append(query.query)

    async with backend._pool.acquire() as conn:
        conn.add_query_logger(log)
    try:
        yield seen
    finally:
        async with backend._pool.acquire() as conn:
            conn.remove_query_logger(log)


async def content(data: bytes) -> AsyncIterator[bytes]:
    """An upload's content in one chunk."""
    yield data


async def create(backend: PostgresBackend, component_id: int, **extra: Any) -> v1.Issue:
    """Alice creates an issue titled "a title" in ``component_id``; ``extra``: the request's."""
    return await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="a title", component_id=component_id),
            **extra,
        )
    )


async def open_and_restricted(
    backend: PostgresBackend, prefix: str, viewer: v1.Principal
) -> tuple[str, v1.Component, v1.Component]:
    """A fresh tag, a component open to all and one only ``viewer`` may see.

    Named ``prefix-tag`` and ``prefix-secret-tag``: the search tests find their
    own issues by the tag and check what a restricted component hides.
    """
    tag = uuid.uuid4().hex[:8]
    restricted = [v1.AclEntry(principal=viewer, role=v1.Role.VIEWER)]
    open_one, secret = [
        await backend.create_component(v1.CreateComponentRequest(caller=ADMIN, name=name, acl=acl))
        for name, acl in ((f"{prefix}-{tag}", []), (f"{prefix}-secret-{tag}", restricted))
    ]
    return tag, open_one, secret


async def fresh_component(
    backend: PostgresBackend,
    prefix: str,
    *,
    parent_id: int = 0,
    acl: list[v1.AclEntry] | None = None,
) -> v1.Component:
    """A new component named ``prefix-`` and a random tag (under ``parent_id``).

    Open to everyone unless ``acl`` is given: tests that share a database
    each write in components of their own.
    """
    return await backend.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"{prefix}-{uuid.uuid4().hex[:8]}",
            parent_id=parent_id,
            acl=acl or [],
        )
    )


async def component_with_field(
    backend: PostgresBackend, prefix: str
) -> tuple[v1.Component, v1.CustomField]:
    """A fresh component (named ``prefix-...``) with a text custom field of its own."""
    component = await fresh_component(backend, prefix)
    field = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name=f"Found in {uuid.uuid4().hex[:6]}",
            type=v1.CustomFieldType.TEXT,
        )
    )
    return component, field


async def valued_issue(backend: PostgresBackend) -> tuple[v1.Issue, v1.CustomField]:
    """An issue in a fresh component, holding a value of the component's custom field."""
    component, field = await component_with_field(backend, "trips")
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="a crash", component_id=component.id),
            description="first words",
            custom_fields=[v1.CustomFieldValue(field_id=field.id, values=["1.2"])],
        )
    )
    return issue, field


async def upload(
    backend: PostgresBackend, issue: v1.Issue, caller: v1.Caller = ALICE, comment: str = ""
) -> v1.UploadAttachmentResponse:
    """``caller`` attaches a log of their own to ``issue`` at its version."""
    return await backend.upload_attachment(
        v1.UploadAttachmentHeader(
            caller=caller,
            issue_id=issue.id,
            expected_version=issue.version,
            name="crash.log",
            comment=comment,
        ),
        content(f"a log of {uuid.uuid4()}\n".encode()),
    )


async def change_with(
    backend: PostgresBackend, issue: v1.Issue, comment: str = "", **delta: Any
) -> v1.ChangeIssueResponse:
    """Alice changes ``issue`` at its version: ``delta`` is the IssueDelta's fields."""
    return await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(**delta),
            comment=comment,
        )
    )


async def change(
    backend: PostgresBackend, issue: v1.Issue, priority: v1.Priority
) -> v1.ChangeIssueResponse:
    """Alice sets ``issue``'s priority, with a comment, at its version."""
    return await change_with(
        backend,
        issue,
        "a comment",
        fields=v1.IssueFields(priority=priority),
        update_mask=FieldMask(["priority"]),
    )


async def delete(
    backend: PostgresBackend, uploaded: v1.UploadAttachmentResponse, version: int = 0
) -> v1.ChangeIssueResponse:
    """Alice deletes the file of ``uploaded`` at issue version ``version`` (0: any)."""
    assert uploaded.attachment is not None
    return await backend.delete_attachment(
        v1.DeleteAttachmentRequest(
            caller=ALICE, attachment_id=uploaded.attachment.id, expected_version=version
        )
    )


async def edit(
    backend: PostgresBackend, issue: v1.Issue, entry: v1.HistoryEntry | None
) -> v1.ChangeIssueResponse:
    """Alice rewrites the comment of ``entry`` (one of ``issue``'s) at ``issue``'s version."""
    assert entry is not None
    return await backend.edit_comment(
        v1.EditCommentRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=issue.version,
            entry_version=entry.version,
            comment="a better comment",
        )
    )


@contextlib.asynccontextmanager
async def migrated(settings: ModelSettings) -> AsyncIterator[PostgresBackend]:
    """A backend on ``settings`` (a database or schema of the test's own), migrated first.

    Closed afterwards; dropping what it was on is left to the caller.
    """
    await PostgresBackend.migrate(settings)
    backend = await PostgresBackend.open(settings)
    try:
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def connected(settings: ModelSettings, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` connections of their own to the Model's database, in its schema."""
    server_settings = {"search_path": f'"{settings.schema}"'}
    connections: list[asyncpg.Connection] = []
    try:
        for _ in range(count):
            connections.append(
                await asyncpg.connect(settings.database_url, server_settings=server_settings)
            )
        yield connections
    finally:
        for conn in connections:
            await conn.close()


#: How many issues hold a value of field $1: in their search rows and in
#: their ``custom_fields`` (the race tests' check that nothing is left behind).
FIELD_VALUES_HELD = """
SELECT (SELECT count(*) FROM issue_custom_values WHERE field_id = $1)
     + (SELECT count(*) FROM issues WHERE custom_fields ? $1::text)
"""


@contextlib.asynccontextmanager
async def advisory_gate(
    settings: ModelSettings, create_triggers: str, drop_triggers: str
) -> AsyncIterator[list[asyncpg.Connection]]:
    """A race test's gate: its triggers, and two connections (the gate's holder, a watcher).

    ``create_triggers`` installs triggers that wait for an advisory lock in
    the transaction that fires them; the test takes that lock on the first
    connection to hold a write at the point of the race, and watches lock
    waits on the second (:func:`wait_behind_lock`). Every lock is let go and
    the triggers dropped (``drop_triggers``) afterwards.
    """
    async with connected(settings, 2) as connections:
        await connections[0].execute(create_triggers)
        try:
            yield connections
        finally:
            # A statement the test left half-sent (asyncpg refusing an argument
            # after the server parsed it) keeps the watcher's transaction, and
            # its lock on the table, open: DROP TRIGGER would wait for it forever.
            await connections[1].close()
            await connections[0].execute("SELECT pg_advisory_unlock_all()")
            await connections[0].execute(drop_triggers)


async def wait_behind_lock(watcher: asyncpg.Connection, call: asyncio.Future[Any]) -> None:
    """Return once some session waits for a lock (``call``, while another holds it).

    Fails when ``call`` finished without waiting: the holder did not block it.
    """
    waiting = 0
    while not waiting and not call.done():
        await asyncio.sleep(0.01)
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    assert waiting, "the call did not wait for the lock"


class Holder:
    """A transaction on a connection of its own, holding issue rows while a call queues."""

    def __init__(self, settings: ModelSettings) -> None:
        self._settings = settings

    async def __aenter__(self) -> Holder:
        server = {"search_path": f'"{self._settings.schema}"'}
        url = self._settings.database_url
        self.conn = await asyncpg.connect(url, server_settings=server)
        self._watcher = await asyncpg.connect(url, server_settings=server)
        self._transaction = self.conn.transaction()
        await self._transaction.start()
        return self

    async def queued(self, call: Awaitable[Any]) -> asyncio.Future[Any]:
        """Start ``call`` and return once it waits for a lock this transaction holds."""
        started = asyncio.ensure_future(call)
        waiting = 0
        while not waiting and not started.done():
            await asyncio.sleep(0.01)
            waiting = await self._watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        assert waiting, "the call did not wait for the held lock"
        return started

    async def commit(self) -> None:
        await self._transaction.commit()

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()
        await self._watcher.close()
