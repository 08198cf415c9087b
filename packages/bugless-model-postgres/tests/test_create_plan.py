"""A create's plan without its delta is the plan the delta gives.

``_issue_plan.plan_create`` plans the common create (fields and cc, no
relations, hotlists, parent or duplicate) by ``_plan_fields`` and every other
one as a delta from an empty issue (``_plan_as_delta``, through
``plan_delta``). Both must give the same new state and the same FieldChanges,
in the same order: the history entry and the issue a create answers are
built from them.
"""

from __future__ import annotations

import datetime
import itertools
import random
from typing import Any

import pytest

from bugless_core.errors import NotFound
from bugless_model_postgres import PostgresBackend, _issue_plan
from bugless_model_postgres._context import WriteContext
from bugless_proto import v1

CALLER = v1.Caller(user_id="u_planner", groups=["eng"])
NOW = datetime.datetime(2026, 12, 5, 1, 2, 3, tzinfo=datetime.UTC)


def _cases() -> list[tuple[v1.IssueFields, list[str]]]:
    """Every status, priority, severity and type (0 included), then random mixes."""
    cases: list[tuple[v1.IssueFields, list[str]]] = []
    for status, priority, severity, kind in itertools.zip_longest(
        list(v1.Status), list(v1.Priority), list(v1.Severity), list(v1.IssueType)
    ):
        cases.append(
            (
                v1.IssueFields(
                    title="every enum",
                    status=status or v1.Status.UNSPECIFIED,
                    priority=priority or v1.Priority.UNSPECIFIED,
                    severity=severity or v1.Severity.UNSPECIFIED,
                    type=kind or v1.IssueType.UNSPECIFIED,
                    component_id=7,
                ),
                [],
            )
        )
    rng = random.Random(23)
    people = ["", "u_alice", "u_bob", "u_carol"]
    for n in range(300):
        fields = v1.IssueFields(
            title=rng.choice(["", "a title", f"issue {n} mentions @u_bob"]),
            status=rng.choice(list(v1.Status)),
            priority=rng.choice(list(v1.Priority)),
            severity=rng.choice(list(v1.Severity)),
            type=rng.choice(list(v1.IssueType)),
            component_id=rng.choice([1, 7, 12345]),
            assignee=rng.choice(people),
            verifier=rng.choice(people),
        )
        cc = rng.sample(["u_bob", "u_carol", "u_dave", "u_alice"], rng.randint(0, 3))
        cases.append((fields, [*cc, *cc[:1]]))  # a repeated cc too
    return cases


def _state(plan: _issue_plan.DeltaPlan) -> dict[str, Any]:
    return {
        "old": plan.old,
        "new": plan.new,
        "changes": [bytes(change) for change in plan.changes],
        "equal": plan.changes,
        "other": plan.other,
        "hotlists": (plan.hotlists_added, plan.hotlists_removed),
    }


async def test_a_create_without_relations_plans_as_its_delta(
    bugless_model_backend: PostgresBackend,
) -> None:
    async with bugless_model_backend._pool.acquire() as conn:
        ctx = WriteContext(conn=conn, caller=CALLER, now=NOW, channel="unused")
        for fields, cc in _cases():
            status = int(fields.status) or int(
                v1.Status.ASSIGNED if fields.assignee else v1.Status.NEW
            )
            request = v1.CreateIssueRequest(fields=fields, cc=cc)
            direct = _issue_plan._plan_fields(ctx, fields, status, cc)
            as_delta = await _issue_plan._plan_as_delta(ctx, request, fields, status, {})
            assert _state(direct) == _state(as_delta), (fields, cc)


async def test_plan_create_takes_the_delta_for_a_parent(
    bugless_model_backend: PostgresBackend,
) -> None:
    """A create naming a parent goes through the delta, which checks the parent."""
    async with bugless_model_backend._pool.acquire() as conn:
        ctx = WriteContext(conn=conn, caller=CALLER, now=NOW, channel="unused")
        request = v1.CreateIssueRequest(
            fields=v1.IssueFields(title="child", component_id=7, parent_id=99)
        )
        with pytest.raises(NotFound, match=r"^parent_id: issue 99 not found$"):
            await _issue_plan.plan_create(ctx, request, has_custom_fields=False, rows={})
