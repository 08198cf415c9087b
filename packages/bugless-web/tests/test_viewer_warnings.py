"""Saving an issue that names someone who cannot view it warns, and never fails the save.

Real web app, Model and Authenticator: the Model judges the people with the
groups the Authenticator knows (``CheckViewers``). The world's ``Secret``
component is for the ``admins`` group only, so bob and carol cannot view it,
and alice (an admin) can.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from viewer_check_support import signed_in_viewer
from web_support import (
    SESSION_KEY,
    World,
    bulk_form_fields,
    create_issue,
    issue_form_of,
    sign_in,
)

from bugless_core.clients import call
from bugless_core.limits import MAX_VIEWER_CHECK
from bugless_proto import v1
from bugless_testing.tcp_relay import TcpRelay
from bugless_web import WebSettings, create_app
from bugless_web.backends import Backends
from bugless_web.form_errors import input_name
from bugless_web.viewer_warnings import (
    CHECK_SECONDS,
    MAX_BULK_COMPONENTS,
    MAX_WARNING_BYTES,
    _fitting_the_cookie,
    _sentences,
    viewer_warning,
)

_WARNING = re.compile(r'<div class="banner warn save-warning" role="status">(.*?)</div>', re.S)
_ROWS = re.compile(r'name="issue" value="(\d+):(\d+)"')


def _warning(page: str) -> str:
    found = _WARNING.search(page)
    return html.unescape(found.group(1)) if found else ""


async def _edit(client: AsyncTestClient[Any], issue_id: int, **changes: str) -> tuple[int, str]:
    """Post the issue's edit form with ``changes``; the status and the page it leads to."""
    form = issue_form_of((await client.get(f"/issues/{issue_id}")).text)
    form.update(changes)
    response = await client.post(f"/issues/{issue_id}", data=form, follow_redirects=False)
    page = await client.get(response.headers.get("location", f"/issues/{issue_id}"))
    return response.status_code, page.text


async def test_assigning_and_ccing_people_who_cannot_view_warns_naming_them(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Secret rotation", by="alice", component="Secret")
    await sign_in(client, "alice")

    status, page = await _edit(client, issue.id, assignee="bob", cc="carol alice")

    assert status == 303
    assert _warning(page) == (
        "Bob Builder (bob) and Carol Coder (carol) cannot view component Secret: they will "
        "not see this issue or get mail about it. An admin of Secret can add them to its "
        "access list."
    )
    # Warned, not refused: the change is made.
    saved = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert saved.assignee == world.users["bob"]
    assert set(saved.cc) == {world.users["carol"], world.users["alice"]}
    # Once: the next page load does not repeat it.
    assert _warning((await client.get(f"/issues/{issue.id}")).text) == ""
    # People already on the issue are not warned of again by a later save.
    status, page = await _edit(client, issue.id, comment="Still on it")
    assert status == 303
    assert _warning(page) == ""


async def test_naming_someone_in_a_user_field_warns_as_assigning_does(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    field = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=world.admin,
            component_id=world.components["Secret"],
            name=f"Reviewer {secrets.token_hex(3)}",
            type=v1.CustomFieldType.USER,
        ),
    )
    issue = await create_issue(model, world, "Review the vault", by="alice", component="Secret")
    await sign_in(client, "alice")

    status, page = await _edit(client, issue.id, **{input_name(field.id): "bob"})

    assert status == 303
    assert _warning(page) == (
        "Bob Builder (bob) cannot view component Secret: they will not see this issue or get "
        "mail about it. An admin of Secret can add them to its access list."
    )
    # Bob is on the issue now: a later save does not warn of him again.
    status, page = await _edit(client, issue.id, comment="Over to bob")
    assert status == 303
    assert _warning(page) == ""


async def test_naming_people_who_can_view_brings_no_warning(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Open to all")
    await sign_in(client, "alice")

    status, page = await _edit(
        client, issue.id, assignee="bob", cc="carol", comment="Over to @bob; @carol, FYI."
    )

    assert status == 303
    assert _warning(page) == ""
    assert "cannot view" not in page


async def test_moving_an_issue_warns_of_the_people_already_on_it(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(
        model,
        world,
        "Move me",
        by="alice",
        assignee=world.users["bob"],
        verifier=world.users["carol"],
    )
    await sign_in(client, "alice")

    status, page = await _edit(client, issue.id, component_id=str(world.components["Secret"]))

    assert status == 303
    assert _warning(page) == (
        "Bob Builder (bob) and Carol Coder (carol) cannot view component Secret: they will "
        "not see this issue or get mail about it. An admin of Secret can add them to its "
        "access list."
    )


async def test_a_new_issue_warns_of_its_assignee_and_cc(
    client: AsyncTestClient[Any], world: World
) -> None:
    token = await sign_in(client, "alice")

    made = await client.post(
        "/issues/new",
        data={
            "_csrf": token,
            "component_id": str(world.components["Secret"]),
            "title": "New secret",
            "assignee": "bob",
            "cc": "alice",
            "idempotency_key": secrets.token_hex(8),
        },
        follow_redirects=False,
    )

    assert made.status_code == 303, made.text
    page = (await client.get(made.headers["location"])).text
    assert "Created issue" in page
    assert _warning(page) == (
        "Bob Builder (bob) cannot view component Secret: they will not see this issue or get "
        "mail about it. An admin of Secret can add them to its access list."
    )


async def test_mentioning_someone_who_cannot_view_warns_as_ccing_does(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    # The notifier mails only people who may view the issue: the mention reaches nobody.
    token = await sign_in(client, "alice")
    made = await client.post(
        "/issues/new",
        data={
            "_csrf": token,
            "component_id": str(world.components["Secret"]),
            "title": "Rotate the keys, @carol",
            "description": "@bob can you look? @nobody-of-that-name and `@alice` too.",
            "idempotency_key": secrets.token_hex(8),
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    issue_id = int(made.headers["location"].rsplit("/", 1)[1])
    warning = _warning((await client.get(made.headers["location"])).text)
    people = ("Bob Builder (bob)", "Carol Coder (carol)")
    assert warning in {
        f"{one} and {other} cannot view component Secret: they will not see this issue or get "
        "mail about it. An admin of Secret can add them to its access list."
        for one, other in (people, people[::-1])
    }

    # A comment mentioning bob warns again; one mentioning only the writer does not.
    status, page = await _edit(client, issue_id, comment="Still waiting for @Bob.")
    assert status == 303
    assert _warning(page).startswith("Bob Builder (bob) cannot view component Secret:")
    status, page = await _edit(client, issue_id, comment="Note to @alice: done.")
    assert status == 303
    assert _warning(page) == ""

    # Someone already on the issue was warned of when named, and is not again.
    status, page = await _edit(client, issue_id, cc="carol")
    assert _warning(page).startswith("Carol Coder (carol) cannot view")
    status, page = await _edit(client, issue_id, comment="@carol see above")
    assert _warning(page) == ""

    # Editing one's comment to mention someone warns too.
    issue = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))
    edited = await client.post(
        f"/issues/{issue_id}/entries/{issue.version}/edit",
        data={"_csrf": token, "version": str(issue.version), "comment": "@bob: see above"},
        follow_redirects=False,
    )
    assert edited.status_code == 303, edited.text
    page = (await client.get(edited.headers["location"])).text
    assert "Edit saved" in page
    assert _warning(page).startswith("Bob Builder (bob) cannot view component Secret:")

    # Editing it again warns only of whom the edit newly mentions: bob was warned of.
    again = await client.post(
        f"/issues/{issue_id}/entries/{issue.version}/edit",
        data={"_csrf": token, "version": str(issue.version + 1), "comment": "@bob: see above!"},
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    page = (await client.get(again.headers["location"])).text
    assert "Edit saved" in page
    assert _warning(page) == ""


async def test_a_bulk_edit_warns_per_component_naming_the_issues(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    tag = secrets.token_hex(3)
    first = await create_issue(model, world, f"Bulkwarn {tag} one", by="alice", component="Secret")
    second = await create_issue(model, world, f"Bulkwarn {tag} two", by="alice", component="Secret")
    await create_issue(model, world, f"Bulkwarn {tag} open", by="alice")
    token = await sign_in(client, "alice")
    page = await client.get("/search", params={"q": f"Bulkwarn {tag}"})
    rows = _ROWS.findall(page.text)
    assert len(rows) == 3

    changed = await client.post(
        "/issues/bulk",
        data={
            **bulk_form_fields(page.text),
            "_csrf": token,
            "issue": [f"{issue_id}:{version}" for issue_id, version in rows],
            "cc_add": "carol",
        },
        follow_redirects=False,
    )

    assert changed.status_code == 303, changed.text
    after = (await client.get(changed.headers["location"])).text
    assert _warning(after) == (
        f"Carol Coder (carol) cannot view component Secret: they will not see issues "
        f"{first.id} and {second.id} or get mail about them. An admin of Secret can add them "
        "to its access list."
    )


async def test_a_bulk_edit_setting_a_user_field_warns_of_the_person_it_put_there(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The bulk bar's custom field, of type USER: the person typed is checked as an assignee is.

    The delta carries no field type, so the web reads it from the changed
    issues' values; a person already on the issues (carol, their verifier) who is not
    what the edit set is not warned of.
    """
    tag = secrets.token_hex(3)
    field = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=world.admin,
            component_id=world.components["Secret"],
            name=f"Owner {tag}",
            type=v1.CustomFieldType.USER,
        ),
    )
    made = [
        await create_issue(
            model,
            world,
            f"Userfield {tag} {n}",
            by="alice",
            component="Secret",
            verifier=world.users["carol"],
        )
        for n in range(2)
    ]
    token = await sign_in(client, "alice")
    page = await client.get("/search", params={"q": f"Userfield {tag}"})
    rows = _ROWS.findall(page.text)
    assert len(rows) == 2
    assert f'value="{field.id}:USER"' in page.text  # the bulk bar offers the field

    changed = await client.post(
        "/issues/bulk",
        data={
            **bulk_form_fields(page.text),
            "_csrf": token,
            "issue": [f"{issue_id}:{version}" for issue_id, version in rows],
            "custom_field": f"{field.id}:USER",
            "custom_value": "bob",
        },
        follow_redirects=False,
    )

    assert changed.status_code == 303, changed.text
    after = (await client.get(changed.headers["location"])).text
    assert "Changed 2 issues" in after
    first, second = sorted(issue.id for issue in made)
    assert _warning(after) == (
        f"Bob Builder (bob) cannot view component Secret: they will not see issues "
        f"{first} and {second} or get mail about them. An admin of Secret can add them "
        "to its access list."
    )
    for issue in made:
        saved = await call(
            model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id)
        )
        assert [(v.field_id, list(v.values)) for v in saved.custom_fields] == [
            (field.id, [world.users["bob"]])
        ]


async def test_a_bulk_edit_over_many_components_warns_within_what_a_cookie_holds(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The warning rides in the session cookie, which a browser drops whole over
    4096 bytes (the warning and the notice with it): one sentence per component,
    as many as fit, and a count of the rest; the components past the ones
    checked are said not to be, not left out silently."""
    tag = secrets.token_hex(3)
    rows = []
    for n in range(MAX_BULK_COMPONENTS + 1):
        component = await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin,
                parent_id=world.components["Secret"],
                name=f"Reconciliation of ledger entries {tag} {n:02d}",
            ),
        )
        for _ in range(3):
            made = await call(
                model.create_issue,
                v1.CreateIssueRequest(
                    caller=world.admin,
                    fields=v1.IssueFields(title=f"Manywarn {tag}", component_id=component.id),
                    idempotency_key=secrets.token_hex(8),
                ),
            )
            rows.append(f"{made.id}:{made.version}")
    token = await sign_in(client, "alice")
    page = await client.get("/search", params={"q": f"Manywarn {tag}"})

    changed = await client.post(
        "/issues/bulk",
        data={**bulk_form_fields(page.text), "_csrf": token, "issue": rows, "cc_add": "bob carol"},
        follow_redirects=False,
    )

    assert changed.status_code == 303, changed.text
    cookies = [c.split(";", 1)[0] for c in changed.headers.get_list("set-cookie")]
    assert cookies
    assert all(len(c.encode()) <= 4096 for c in cookies), [len(c) for c in cookies]
    warning = _warning((await client.get(changed.headers["location"])).text)
    assert warning.startswith(
        "Bob Builder (bob) and Carol Coder (carol) cannot view component "
        f"Secret>Reconciliation of ledger entries {tag} 00:"
    )
    shown = warning.count("Bob Builder (bob) and Carol Coder (carol) cannot view component")
    assert 1 < shown < MAX_BULK_COMPONENTS
    more = MAX_BULK_COMPONENTS - shown
    assert warning.endswith(
        f"People it named cannot view the issues of {more} more components either. "
        "1 more component not checked (a bulk edit is checked for its first "
        f"{MAX_BULK_COMPONENTS} components): people it named may not be able to view its "
        "issues either."
    )


def test_each_reason_names_people_as_pages_show_them_and_says_what_can_be_done() -> None:
    """An imported person no account took over, a disabled one, someone bugless does not know.

    Named as the issue page's chips show them, with the username that was
    typed; each sentence ends with who can change it.
    """
    blocked = [
        v1.BlockedViewer(user_id="u1", reason=v1.ViewerBlock.CANNOT_SIGN_IN),
        v1.BlockedViewer(user_id="u2", reason=v1.ViewerBlock.NO_ACCESS),
        v1.BlockedViewer(user_id="u3", reason=v1.ViewerBlock.UNKNOWN_USER),
    ]
    users = {
        "u1": v1.User(user_id="u1", username="cyd@trac", display_name="Cyd Lee"),
        "u2": v1.User(user_id="u2", username="eve", display_name="eve"),
    }

    assert _sentences("Rocket>Core", blocked, users, "this issue") == [
        "eve cannot view component Rocket>Core: they will not see this issue or get mail about "
        "it. An admin of Rocket>Core can add them to its access list.",
        "Cyd Lee (cyd@trac) cannot sign in (a disabled account, or a person an import brought "
        "in whom no account has taken over yet): they will not see this issue or get mail about "
        "it. A bugless administrator can enable the account, or merge the imported person into "
        "the account they sign in with.",
        "u3 is not known to bugless: they will not see this issue or get mail about it.",
    ]


def test_a_sentence_longer_than_the_cookie_holds_is_cut() -> None:
    """A path of long component names and ten long usernames: cut, not dropped."""
    long = "x" * 3000
    later = "y" * 400
    warning = _fitting_the_cookie([(1, f"{long} cannot view component {long}."), (2, later)])
    assert warning.startswith("xxx")
    assert "…" in warning
    assert warning.endswith("People it named cannot view the issues of 1 more component either.")
    assert len(json.dumps(warning)) <= MAX_WARNING_BYTES


@pytest.fixture
async def model_behind_relay(world: World) -> AsyncIterator[tuple[WebSettings, TcpRelay]]:
    """A Model replica reaching the Authenticator through a :class:`TcpRelay`.

    It fetches the assertion keys once an hour, so once it has them it
    verifies callers without the Authenticator, and a cut relay fails only
    what needs the Authenticator now: GetUserGroups.
    """
    auth = world.stack.auth
    relay = TcpRelay(auth.port)
    replica = None
    try:
        relay.start()
        args = ["model", "serve", "--port", "0", "--auth", f"127.0.0.1:{relay.port}"]
        replica = await asyncio.to_thread(
            world.stack.start,
            "model",
            [*args, "--assertion-refresh-seconds", "3600"],
            name=f"model-relayed-{secrets.token_hex(2)}",
        )
        assert replica.address is not None
        yield (
            WebSettings(
                model=replica.address,
                auth=auth,
                session_keys=(SESSION_KEY,),
                dev=True,
                token_cache_seconds=5.0,
            ),
            relay,
        )
    finally:
        relay.stop()
        if replica is not None:
            await asyncio.to_thread(world.stack.stop_service, replica)


async def test_a_check_that_fails_saves_without_a_warning_and_logs_why(
    world: World,
    model: v1.ModelStub,
    model_behind_relay: tuple[WebSettings, TcpRelay],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, relay = model_behind_relay
    issue = await create_issue(model, world, "Unjudged", by="alice", component="Secret")
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        await sign_in(client, "alice")
        assert (await client.get(f"/issues/{issue.id}")).status_code == 200  # keys fetched
        relay.cut()

        with caplog.at_level(logging.WARNING, logger="bugless.web"):
            status, page = await _edit(client, issue.id, assignee="bob")

    assert status == 303
    assert _warning(page) == ""
    saved = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert saved.assignee == world.users["bob"]
    assert any(
        "could not check who can view the issue just saved" in r.getMessage()
        and "Unavailable" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


async def test_a_check_of_more_people_than_one_call_takes_makes_its_calls_at_once(
    world: World, model_behind_relay: tuple[WebSettings, TcpRelay]
) -> None:
    """A hundred and one people are two ``CheckViewers`` calls, made at once: as long as one.

    The Model replica's path to the Authenticator is slow (0.6 s each way),
    so every call takes over 1.2 s. One after the other, as they were, the
    two took twice as long as a check of one person; at once, about as long,
    well within the check's one deadline, and the warning names bob. Timed
    against the one-person check on the same path, so a slow machine slows
    both.
    """
    settings, relay = model_behind_relay
    secret = world.components["Secret"]
    backends = Backends(dataclasses.replace(settings, call_timeout_seconds=30.0))
    try:
        viewer = await signed_in_viewer(backends, "alice")
        assert "Bob Builder (bob) cannot view" in await viewer_warning(
            backends, viewer, {secret: [world.users["bob"]]}
        )
        relay.delay(0.6)
        started = time.monotonic()
        alone = await viewer_warning(backends, viewer, {secret: [world.users["bob"]]})
        one_call = time.monotonic() - started
        people = [*(f"u_nobody{n}" for n in range(MAX_VIEWER_CHECK)), world.users["bob"]]

        started = time.monotonic()
        warning = await viewer_warning(backends, viewer, {secret: people})
        two_calls = time.monotonic() - started
    finally:
        backends.close()

    assert "Bob Builder (bob) cannot view component Secret" in alone
    assert "Bob Builder (bob) cannot view component Secret" in warning
    assert two_calls < 1.5 * one_call, f"{two_calls:.1f} s for two calls, {one_call:.1f} s for one"
    assert two_calls < CHECK_SECONDS


async def test_the_names_of_those_who_cannot_view_are_looked_up_within_the_same_deadline(
    world: World, web_settings: WebSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The Model answers at once; the Authenticator, asked for the names, does not.

    The web reaches the Authenticator through a relay that is then held, and
    keeps no one (``--user-cache-seconds 0``, no change feed), so the names
    must be asked for: the check still ends within its 3 s, not the call
    timeout of every other call (30 s here).
    """
    relay = TcpRelay(web_settings.auth.port)
    relay.start()
    relayed = dataclasses.replace(
        web_settings,
        auth=dataclasses.replace(web_settings.auth, port=relay.port),
        user_cache_seconds=0.0,
        user_changes_seconds=0.0,
        call_timeout_seconds=30.0,
    )
    backends = Backends(relayed)
    try:
        viewer = await signed_in_viewer(backends, "alice")
        relay.hold()

        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="bugless.web"):
            warning = await viewer_warning(
                backends, viewer, {world.components["Secret"]: [world.users["bob"]]}
            )
        took = time.monotonic() - started
    finally:
        backends.close()
        relay.stop()

    assert warning == ""
    # What this tells apart is the check's own deadline (3 s) from the call
    # timeout (30 s) the look-up would otherwise wait: half the call timeout does,
    # and leaves a loaded machine's event loop room that 1 s past 3 s did not.
    assert took < relayed.call_timeout_seconds / 2, f"the check took {took:.1f} s"
    assert any(
        "could not look up the people who cannot view the issue just saved" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
