"""Ids past int64 never alias another issue: CLI, Python client, API and Model.

``2**64 + n`` put into an ``int64`` field is encoded as ``n``; ``2**63 + n``
arrives negative. The client and the CLI refuse both before encoding (with
:mod:`bugless_core.ids`), and the Model refuses what arrives out of range.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Awaitable, Callable

import click
import pytest
from api_support import Bots, ConnectAs
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given
from hypothesis import strategies as st

from bugless_api.cli._common import ID, ID_OR_ZERO
from bugless_core.errors import InvalidArgument
from bugless_core.ids import MAX_ID
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_proto import v1

WRAPPED = 2**64


@given(st.integers(min_value=1, max_value=MAX_ID), st.integers(min_value=0, max_value=3))
def test_the_cli_reads_every_id_in_range(value: int, zeros: int) -> None:
    assert ID.convert("0" * zeros + str(value), None, None) == value


@given(
    st.one_of(
        st.integers(min_value=MAX_ID + 1, max_value=2**80),
        st.integers(max_value=0),
    ).map(str)
    | st.integers(min_value=1, max_value=MAX_ID).map(lambda n: f"+{n}")
    | st.integers(min_value=10, max_value=MAX_ID).map(lambda n: f"{str(n)[0]}_{str(n)[1:]}")
    | st.text(min_size=1).filter(lambda t: not (t.strip().isascii() and t.strip().isdigit()))
)
def test_the_cli_refuses_everything_else_as_a_usage_error(text: str) -> None:
    with pytest.raises(click.BadParameter):
        ID.convert(text, None, None)


def test_zero_is_an_id_only_where_it_means_none() -> None:
    assert ID_OR_ZERO.convert("0", None, None) == 0
    with pytest.raises(click.BadParameter):
        ID.convert("0", None, None)


@pytest.mark.parametrize(
    "args",
    [
        ["issue", "show", str(WRAPPED + 1)],
        ["issue", "update", "1", "--component", str(WRAPPED + 1)],
        ["hotlist", "add", str(WRAPPED + 1), "1"],
        ["component", "show", str(WRAPPED + 1)],
    ],
)
def test_the_cli_refuses_wrapped_ids_before_calling(args: list[str], bots: Bots) -> None:
    # No API is reachable at this address: the refusal cannot come from a call.
    env = {**os.environ, "BUGLESS_API": "127.0.0.1:9", "BUGLESS_CA": str(bots.stack.pki.ca_file)}
    files = bots["cli-bot"]
    env.update({"BUGLESS_CERT": str(files.cert), "BUGLESS_KEY": str(files.key)})

    done = subprocess.run(
        [*BUGLESS_COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert "1..9223372036854775807" in done.stderr


async def _issue(connect_as: ConnectAs) -> tuple[int, int]:
    robot = connect_as("robot")
    component = await robot.create_component(f"Ids-{secrets.token_hex(3)}")
    issue = await robot.create_issue("an issue to alias", component.id)
    return component.id, issue.id


async def test_the_client_refuses_wrapped_ids_before_encoding(connect_as: ConnectAs) -> None:
    component_id, issue_id = await _issue(connect_as)
    robot = connect_as("robot")
    hotlist = await robot.create_hotlist(f"ids-{secrets.token_hex(3)}")
    assert (await robot.get_issue(issue_id)).id == issue_id

    for attempt, field in (
        (robot.get_issue(WRAPPED + issue_id), "issue_id"),
        (robot.get_component(WRAPPED + component_id), "component_id"),
        (robot.get_hotlist(WRAPPED + hotlist.id), "hotlist_id"),
        (robot.add_to_hotlist(hotlist.id, [WRAPPED + issue_id]), "issue_ids[0]"),
        (robot.update_issue(issue_id, blocking_add=[WRAPPED + issue_id]), "blocking_add[0]"),
        (robot.batch_get_issues([issue_id, WRAPPED + issue_id]), "issue_ids[1]"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            await attempt
        assert refused.value.metadata["field"] == field


async def test_ids_past_int63_are_invalid_argument_at_the_api_and_the_model(
    connect_as: ConnectAs, bots: Bots
) -> None:
    _, issue_id = await _issue(connect_as)
    robot = connect_as("robot")
    # The raw stub, as any gRPC client: 2**63 + n is a negative int64 on the wire.
    with pytest.raises(GRPCError) as at_api:
        await robot.issues.get_issue(v1.GetIssueRequest(issue_id=2**63 + issue_id))
    assert at_api.value.status is Status.INVALID_ARGUMENT
    assert "issue_id" in (at_api.value.message or "")

    boss = await connect_as("boss").whoami()
    assert boss.user is not None
    channel = bots.stack.model.channel()
    try:
        model = bots.stack.acting_model(v1.ModelStub(channel))
        caller = v1.Caller(user_id=boss.user.user_id, admin=True)
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            (
                "get_issue",
                lambda: model.get_issue(
                    v1.GetIssueRequest(caller=caller, issue_id=2**63 + issue_id)
                ),
            ),
            (
                "get_component",
                lambda: model.get_component(v1.GetComponentRequest(caller=caller, component_id=-1)),
            ),
            (
                "get_hotlist",
                lambda: model.get_hotlist(v1.GetHotlistRequest(caller=caller, hotlist_id=2**63)),
            ),
        ]
        for name, call in calls:
            with pytest.raises(GRPCError) as at_model:
                await call()
            assert at_model.value.status is Status.INVALID_ARGUMENT, name
    finally:
        channel.close()
