"""A bulk edit's check of several components: why those it left out were not checked.

Real web backends, Model and Authenticator. The warning names each cause as
it was: a component whose check did not answer in time, and one whose check
ended in an error, which may have come at once and is not said to be slow.
A slow check is made slow for real: a Model replica of two database
connections reaching PostgreSQL through a slowed link (:class:`TcpRelay`),
so a bulk edit over many components has some answer in time and some not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from viewer_check_support import signed_in_viewer
from web_support import SESSION_KEY, World

from bugless_core.clients import call
from bugless_proto import v1
from bugless_testing.tcp_relay import TcpRelay
from bugless_web import WebSettings
from bugless_web.backends import Backends
from bugless_web.viewer_warnings import CHECK_SECONDS, _not_checked, viewer_warning


async def test_a_check_that_fails_at_once_is_not_said_to_be_slow(
    world: World, web_settings: WebSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """bob's check of Secret, which he may not view, is refused at once (NotFound).

    His edit named carol in Platform (checked: she can view it, no sentence)
    and in Secret, whose check failed: the warning says it was not checked
    because its check failed, not that it did not answer within 3 s.
    """
    backends = Backends(dataclasses.replace(web_settings, call_timeout_seconds=30.0))
    try:
        viewer = await signed_in_viewer(backends, "bob")
        carol = world.users["carol"]
        with caplog.at_level(logging.WARNING, logger="bugless.web"):
            warning = await viewer_warning(
                backends,
                viewer,
                {world.components["Platform"]: [carol], world.components["Secret"]: [carol]},
                issue_ids={world.components["Platform"]: [1], world.components["Secret"]: [2]},
            )
    finally:
        backends.close()

    assert warning == (
        "1 component not checked (the check of 1 failed): people it named may not be able "
        "to view its issues."
    )
    assert any("NotFound" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def test_each_cause_of_components_not_checked_is_worded_as_it_was() -> None:
    """Past the limit, no answer in time and a failed check, each said apart and counted."""
    assert _not_checked(0, 0, 0, after_others=False) == ""
    assert _not_checked(0, 2, 0, after_others=False) == (
        f"2 components not checked (2 did not answer within {CHECK_SECONDS:g} s): people it "
        "named may not be able to view their issues."
    )
    assert _not_checked(1, 2, 1, after_others=True) == (
        "4 more components not checked (a bulk edit is checked for its first 20 components, "
        f"2 did not answer within {CHECK_SECONDS:g} s and the check of 1 failed): people it "
        "named may not be able to view their issues either."
    )


@pytest.fixture
async def model_on_a_slow_database(world: World) -> AsyncIterator[tuple[WebSettings, TcpRelay]]:
    """A Model replica with two database connections, reaching PostgreSQL through a relay.

    Each ``CheckViewers`` reads its component's row (one round trip), and
    two at a time share the pool: once the relay is slowed, the checks of
    many components end one pair after another, so those queued last are
    still waiting when the web's deadline passes, as on a database whose
    link or load makes every statement slow.
    """
    url = urlsplit(world.stack.env["BUGLESS_DATABASE_URL"])
    assert url.port is not None
    relay = TcpRelay(url.port)
    replica = None
    try:
        relay.start()
        relayed = url._replace(netloc=url.netloc.replace(f":{url.port}", f":{relay.port}"))
        replica = await asyncio.to_thread(
            world.stack.start,
            "model",
            ["model", "serve", "--port", "0", "--assertion-refresh-seconds", "3600"],
            name=f"model-slow-db-{secrets.token_hex(2)}",
            env={"BUGLESS_DATABASE_URL": urlunsplit(relayed), "BUGLESS_POOL_MAX_SIZE": "2"},
        )
        assert replica.address is not None
        yield (
            WebSettings(
                model=replica.address,
                auth=world.stack.auth,
                session_keys=(SESSION_KEY,),
                dev=True,
                call_timeout_seconds=30.0,
            ),
            relay,
        )
    finally:
        relay.stop()
        if replica is not None:
            await asyncio.to_thread(world.stack.stop_service, replica)


async def test_a_bulk_edit_warns_of_the_components_that_answered_and_counts_those_that_did_not(
    world: World, model: v1.ModelStub, model_on_a_slow_database: tuple[WebSettings, TcpRelay]
) -> None:
    """Sixteen components' checks, two at a time on a slow database: some answer in 3 s, some not.

    Each check reads its component's row, a round trip of 0.4 s on the
    slowed link, two at a time: the eighth pair would end after 3.2 s, past
    the check's deadline. The warning names bob for each component whose
    check answered, and ends saying how many were not checked because they
    did not answer within 3 s; the check does not wait for them.
    """
    settings, relay = model_on_a_slow_database
    tag = secrets.token_hex(3)
    components: dict[int, str] = {}
    for n in range(16):
        made = await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin,
                name=f"Slow {tag} {n}",
                acl=[v1.AclEntry(principal=v1.Principal(group="admins"), role=v1.Role.ADMIN)],
            ),
        )
        components[made.id] = made.name
    bob = world.users["bob"]
    loop = asyncio.get_running_loop()
    backends = Backends(settings)
    try:
        viewer = await signed_in_viewer(backends, "alice")
        # Each pooled connection prepares the component's statement at its
        # first check (more round trips): done before the link is slowed.
        await viewer_warning(backends, viewer, {c: [bob] for c in components})
        relay.delay(0.2)  # a statement's round trip: 0.4 s; two at a time, eight in turn
        spanned = components
        started = loop.time()
        warning = await viewer_warning(
            backends,
            viewer,
            {c: [bob] for c in spanned},
            issue_ids={c: [100 + n] for n, c in enumerate(spanned)},
        )
        took = loop.time() - started
    finally:
        relay.delay(0)
        backends.close()

    answered = re.findall(r"Bob Builder \(bob\) cannot view component (Slow \S+ \d+)", warning)
    unanswered = re.search(
        rf"(\d+) more components? not checked \((\d+) did not answer within "
        rf"{CHECK_SECONDS:g} s\)",
        warning,
    )
    assert unanswered is not None, warning
    assert unanswered.group(1) == unanswered.group(2)
    assert answered, warning
    # Past what the session cookie holds, the rest that answered are counted.
    more = re.search(r"cannot view the issues of (\d+) more components? either", warning)
    shown = len(answered) + (int(more.group(1)) if more else 0)
    assert shown + int(unanswered.group(1)) == len(spanned), warning
    assert set(answered) <= set(spanned.values())
    assert took < CHECK_SECONDS + 1.0, f"the check took {took:.1f} s"
