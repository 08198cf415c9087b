"""Helpers shared by the web tests: the seeded world, signing in, seeding, own replicas."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from litestar.testing import AsyncTestClient

from bugless_core.clients import call
from bugless_proto import v1
from bugless_testing.metrics import metric_total

if TYPE_CHECKING:
    # Not at run time: conftest imports this module before pytest loads the
    # stack plugin, which must be first to import it to rewrite its asserts.
    from bugless_core.clients import ServiceAddress
    from bugless_dev.stack import LocalStack

PASSWORD = "correct horse battery staple"
SESSION_KEY = "test-session-key-" + "x" * 24
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@dataclass
class World:
    """People and components every test may use (created once per session).

    Attributes:
        stack: The running services.
        users: user id by username.
        components: component id by path.
        admin: A Model caller with admin rights, for seeding data directly.
    """

    stack: LocalStack
    users: dict[str, str] = field(default_factory=dict)
    components: dict[str, int] = field(default_factory=dict)
    admin: v1.Caller = field(default_factory=v1.Caller)

    def caller(self, username: str) -> v1.Caller:
        """A plain Model caller for a user (no groups)."""
        return v1.Caller(user_id=self.users[username])


async def acting_for(stack: LocalStack, username: str, times: int) -> None:
    """The notifier asks ``times`` identity assertions for ``username`` (a session each).

    What it does for each mail about an issue: the person's sessions page
    lists these as "services acting for you".
    """
    channel = stack.client_address("auth", identity="notify").channel()
    try:
        stub = v1.AuthenticatorStub(channel)
        found = await stub.lookup_users(v1.LookupUsersRequest(usernames=[username]))
        for _ in range(times):
            await stub.issue_assertion(v1.IssueAssertionRequest(user_id=found.users[0].user_id))
    finally:
        channel.close()


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (in its meta tag)."""
    match = _CSRF.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def bulk_form_fields(html: str) -> dict[str, str]:
    """The hidden fields of a search page's bulk form, as a browser would send them."""
    form = html.split('<form id="bulk"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form))


async def sign_in(client: AsyncTestClient[Any], username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = await client.get("/signin")
    token = csrf_of(page.text)
    response = await client.post(
        "/signin",
        data={"username": username, "password": password, "_csrf": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = await client.get("/")
    assert home.status_code == 200, home.text
    return csrf_of(home.text)


async def create_issue(
    model: v1.ModelStub, world: World, title: str, *, by: str = "bob", **fields: Any
) -> v1.Issue:
    """Create an issue directly on the Model (fast seeding)."""
    component = fields.pop("component", "Platform")
    description = fields.pop("description", "")
    return await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.admin if by == "alice" else world.caller(by),
            fields=v1.IssueFields(title=title, component_id=world.components[component], **fields),
            description=description,
            idempotency_key=secrets.token_hex(8),
        ),
    )


def form_posting_to(html: str, action: str) -> str:
    """The one form posting to ``action`` on the page, as HTML."""
    forms: list[str] = re.findall(rf'<form action="{re.escape(action)}".*?</form>', html, re.S)
    assert len(forms) == 1, (action, forms)
    return forms[0]


async def muted_issue_ids(model: v1.ModelStub, world: World, username: str) -> list[int]:
    """The ids of the issues ``username`` has muted, as the Model holds them."""
    answer = await call(
        model.get_notification_settings,
        v1.GetNotificationSettingsRequest(caller=world.caller(username)),
    )
    return list(answer.settings[0].muted_issue_ids)


async def subscriptions_of(model: v1.ModelStub, world: World, username: str) -> v1.Subscriptions:
    """The components and saved searches ``username`` is subscribed to, from the Model."""
    return await call(
        model.list_subscriptions, v1.ListSubscriptionsRequest(caller=world.caller(username))
    )


async def unfollow_everything(model: v1.ModelStub, world: World, username: str) -> None:
    """Put back the person's subscriptions and mutes (the session's people are shared)."""
    caller = world.caller(username)
    held = await subscriptions_of(model, world, username)
    for c in held.components:
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(
                caller=caller, component_id=c.component_id, subscribed=False
            ),
        )
    for saved_search_id in held.saved_search_ids:
        await call(
            model.set_saved_search_subscription,
            v1.SetSavedSearchSubscriptionRequest(
                caller=caller, saved_search_id=saved_search_id, subscribed=False
            ),
        )
    for issue_id in await muted_issue_ids(model, world, username):
        await call(
            model.set_issue_mute,
            v1.SetIssueMuteRequest(caller=caller, issue_id=issue_id, muted=False),
        )


async def new_saved_search(
    model: v1.ModelStub, world: World, owner: str, name: str, readers: list[str] | None = None
) -> v1.SavedSearch:
    """An ``is:open`` search of ``owner``'s named ``NAME xxxxxx``, readable by ``readers``."""
    return await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller(owner),
            name=f"{name} {secrets.token_hex(3)}",
            query="is:open",
            readers=[v1.Principal(group=g) for g in readers or []],
        ),
    )


async def delete_saved_searches(model: v1.ModelStub, *searches: v1.SavedSearch) -> None:
    """Delete the test's saved searches (the session's people list them on other pages)."""
    for saved in searches:
        await call(
            model.delete_saved_search,
            v1.DeleteSavedSearchRequest(
                caller=v1.Caller(user_id=saved.owner), saved_search_id=saved.id
            ),
        )


async def grpc_calls(metrics_port: int, method: str, code: str = "OK") -> int:
    """How many ``method`` calls a server finished with ``code``, from its ``/metrics``."""
    labels = {"grpc_method": method, "grpc_code": code}
    return await _metric(metrics_port, "grpc_server_handled_total", labels)


async def grpc_in_flight(metrics_port: int, method: str) -> int:
    """How many ``method`` calls a server is handling now, from its ``/metrics``."""
    return await _metric(metrics_port, "grpc_server_in_flight_calls", {"grpc_method": method})


async def _metric(metrics_port: int, name: str, labels: dict[str, str]) -> int:
    return int(await metric_total(metrics_port, name, **labels))


@asynccontextmanager
async def own_model_replica(
    stack: LocalStack, name: str
) -> AsyncIterator[tuple[ServiceAddress, int]]:
    """A Model replica of the test's own: its address, and its metrics port.

    Its ``/metrics`` count only the calls made to it (:func:`grpc_calls`), so a
    test can say how many calls a page cost, whatever other tests do.
    """
    replica = await asyncio.to_thread(
        stack.start, "model", ["model", "serve", "--port", "0", "--metrics-port", "0"], name=name
    )
    try:
        assert replica.address is not None
        assert replica.metrics_port is not None
        yield replica.address, replica.metrics_port
    finally:
        await asyncio.to_thread(stack.stop_service, replica)


async def create_component(
    client: AsyncTestClient[Any], token: str, name: str, parent_id: int = 0
) -> int:
    """Create component ``name`` with the web's admin form (as ``client``); its id."""
    response = await client.post(
        "/components",
        data={
            "_csrf": token,
            "name": name,
            "description": "made in a test",
            "parent_id": parent_id,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def version_of(html: str) -> str:
    """The version an admin page's form sends (what a stale save is told apart by)."""
    match = re.search(r'name="version" value="(\d+)"', html)
    assert match, "the page has no admin form"
    return match.group(1)


def issue_form_of(html: str) -> dict[str, str]:
    """The edit form's current values, as a browser would submit them."""
    form = html.split('id="issue-form"', 1)[1].split("</form>", 1)[0]
    values: dict[str, str] = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form):
        values.setdefault(name, value)
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        values[name] = chosen.group(1) if chosen else ""
    values["comment"] = ""
    values.pop("hotlist_remove", None)
    return values


async def upload_attachment(
    client: AsyncTestClient[Any],
    csrf: str,
    issue_id: int,
    content: bytes,
    name: str,
    *,
    content_type: str = "application/octet-stream",
) -> Any:
    """Upload ``content`` as the issue page's script does (one body, its name in a header)."""
    return await client.post(
        f"/issues/{issue_id}/attachments",
        content=content,
        headers={
            "x-csrf-token": csrf,
            "x-file-name": quote(name),
            "content-type": content_type,
        },
    )
