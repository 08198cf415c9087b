"""A query watch checks the components and hotlists it names at most every few seconds.

Over real gRPC (the Model served on a loopback socket) and PostgreSQL. Each
check is a statement (``_search_refs.check_references``); it used to run
before every batch of changes, so a watch of a busy component read in
batches of a row or two paid it per change. Now a batch is followed by a
check only once ``REFERENCES_THROTTLE_SECONDS`` have passed since the last,
and a reference hidden under the watch still ends it within that bound.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_model_postgres import _watch
from bugless_model_postgres._search_refs import check_references
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.events import EventStream

ADMIN = v1.Caller(user_id="root", admin=True)
CHANGES = 12


async def test_a_busy_watch_checks_its_references_once_per_interval_and_still_ends_in_time(
    model: v1.ModelStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve changes, each read as a batch of its own: a few checks, not thirteen.

    Then the component is closed to the watcher: the watch ends with the
    INVALID_ARGUMENT a new watch gets, within the interval (and the time the
    change takes to arrive), not at the idle check 30 s on.
    """
    watcher = v1.Caller(user_id=f"watcher-{uuid.uuid4().hex[:8]}")
    checks: list[float] = []

    async def counted(conn: Any, query: v1.StructuredQuery, caller: v1.Caller) -> None:
        if caller.user_id == watcher.user_id:
            checks.append(time.monotonic())
        await check_references(conn, query, caller)

    monkeypatch.setattr(_watch, "check_references", counted)
    name = f"busy-{uuid.uuid4().hex[:10]}"
    root = await model.create_component(v1.CreateComponentRequest(caller=ADMIN, name=name))
    query = v1.StructuredQuery(
        filter=v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.COMPONENT,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(integer=root.id)],
            )
        )
    )
    stream = EventStream(model.watch(v1.WatchRequest(caller=watcher, query=query), timeout=120))
    try:
        await stream.subscribed()
        started = time.monotonic()
        for n in range(CHANGES):
            fields = v1.IssueFields(title=f"change {n}", component_id=root.id)
            made = await model.create_issue(v1.CreateIssueRequest(caller=ADMIN, fields=fields))
            event = await stream.next()  # read before the next is written: a batch each
            assert event.issue is not None
            assert event.issue.id == made.id
        took = time.monotonic() - started
        throttle = _watch.REFERENCES_THROTTLE_SECONDS
        # The check before the marker, then at most one per interval (and the one owed at its end).
        assert 1 <= len(checks) <= 2 + math.floor(took / throttle), (len(checks), took)
        gaps = [b - a for a, b in itertools.pairwise(checks)]
        assert all(gap >= throttle * 0.9 for gap in gaps), gaps
        await model.update_component(
            v1.UpdateComponentRequest(
                caller=ADMIN,
                component=v1.Component(
                    id=root.id,
                    acl=[v1.AclEntry(principal=v1.Principal(user="someone"), role=v1.Role.ADMIN)],
                ),
                update_mask=FieldMask(paths=["acl"]),
            )
        )
        with pytest.raises(GRPCError) as ended:
            await asyncio.wait_for(stream.next(), throttle + 8)
    finally:
        await stream.close()
    assert ended.value.status is Status.INVALID_ARGUMENT
    assert ended.value.message == (
        f"query.filter.term.values[0]: there is no component {root.id} that you may view"
    )
