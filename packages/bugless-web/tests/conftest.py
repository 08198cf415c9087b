"""Fixtures: the real Model (PostgreSQL) and Authenticator, and the web app on them.

The services come from ``bugless_testing.stack`` (subprocesses started
through the ``bugless`` CLI). Each test gets a fresh application (its own
gRPC channels) and an ``httpx`` client with its own cookie jar, talking to the
app in-process; browser tests start ``bugless web serve`` for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import PASSWORD, SESSION_KEY, World

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import WebSettings, create_app

if TYPE_CHECKING:
    # Imported for annotations only: pytest imports the plugins below itself,
    # after this module, and can rewrite their asserts only if nothing
    # imported them first (PytestAssertRewriteWarning otherwise).
    from playwright.sync_api import Browser, BrowserContext

    from bugless_dev.stack import LocalStack, RunningService

pytest_plugins = [
    "bugless_testing.postgres",
    "bugless_testing.stack",
    "bugless_testing.oidc_provider",
    "bugless_testing.otlp",
    "bugless_testing.slapd",
]


@pytest.fixture(scope="session")
async def world(bugless_stack: LocalStack) -> World:
    """Users alice (admin), bob, carol and mallory, and a small component tree."""
    people = {
        "alice": ("Alice Admin", True),
        "bob": ("Bob Builder", False),
        "carol": ("Carol Coder", False),
        "mallory": ("Mallory <script>alert(1)</script>", False),
    }
    for username, (display, admin) in people.items():
        _seed_person(bugless_stack, username, display, admin=admin)
    auth_channel = bugless_stack.auth.channel()
    model_channel = bugless_stack.model.channel()
    try:
        auth = v1.AuthenticatorStub(auth_channel)
        found = await call(auth.lookup_users, v1.LookupUsersRequest(usernames=sorted(people)))
        world = World(stack=bugless_stack, users={u.username: u.user_id for u in found.users})
        world.admin = v1.Caller(user_id=world.users["alice"], groups=["admins"], admin=True)
        model = bugless_stack.acting_model(v1.ModelStub(model_channel))
        platform = await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin, name="Platform", description="The platform"
            ),
        )
        storage = await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin,
                parent_id=platform.id,
                name="Storage",
                description="Disks and databases",
                template=v1.IssueTemplate(
                    title="[storage] ",
                    description="## Steps to reproduce\n\n## Expected\n",
                    priority=v1.Priority.P1,
                    type=v1.IssueType.BUG,
                ),
            ),
        )
        secret = await call(
            model.create_component,
            v1.CreateComponentRequest(
                caller=world.admin,
                name="Secret",
                acl=[v1.AclEntry(principal=v1.Principal(group="admins"), role=v1.Role.ADMIN)],
            ),
        )
        world.components = {
            "Platform": platform.id,
            "Platform>Storage": storage.id,
            "Secret": secret.id,
        }
    finally:
        auth_channel.close()
        model_channel.close()
    return world


def _seed_person(stack: LocalStack, username: str, display: str, *, admin: bool) -> None:
    """Add ``username`` as the world has them, or make an existing one so.

    The session stack is shared by every package's tests in one pytest, and
    bugless-import's conftest adds a bob of its own (another password and
    name): when those tests ran first, bob is taken, and is given the world's
    password, name, mail and groups (the imports only matched bob by username).
    """
    # Imported here, not at the top: see the TYPE_CHECKING block.
    from bugless_dev.processes import ServiceFailed

    email = f"{username}@example.com"
    try:
        stack.add_user(username, PASSWORD, display_name=display, admin=admin, email=email)
    except ServiceFailed as exc:
        if f"{username!r} is taken" not in str(exc):
            raise
        stack.run_bugless(
            "auth", "user", "set-password", username, "--password-stdin", input_text=PASSWORD + "\n"
        )
        groups = "admins" if admin else ""
        update = ("--display-name", display, "--email", email, "--groups", groups)
        stack.run_bugless("auth", "user", "update", username, *update)


@pytest.fixture(scope="session")
async def dora(world: World) -> str:
    """A user whose group grants the global create_component permission (the stack's policy).

    Session-wide: the component admin modules share her (a user is added once).
    """
    world.stack.add_user(
        "dora", PASSWORD, display_name="Dora Creator", groups=["component-creators"]
    )
    channel = world.stack.auth.channel()
    try:
        found = await call(
            v1.AuthenticatorStub(channel).lookup_users, v1.LookupUsersRequest(usernames=["dora"])
        )
    finally:
        channel.close()
    world.users["dora"] = found.users[0].user_id
    return "dora"


@pytest.fixture
def web_settings(world: World) -> WebSettings:
    """Settings of a dev-mode replica on the session's services."""
    return WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        token_cache_seconds=5.0,
    )


@pytest.fixture
def app(web_settings: WebSettings) -> Litestar:
    """A fresh application (its own channels and drain state)."""
    return create_app(web_settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A browser-like client with its own cookie jar."""
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        yield test_client


@pytest.fixture
async def model(world: World) -> AsyncIterator[v1.ModelStub]:
    """A Model client for seeding and checking data behind the web's back.

    Each call carries an identity assertion for the user its request's
    ``caller`` names (the Model takes the caller from that, not the request).
    """
    channel = world.stack.model.channel()
    try:
        yield world.stack.acting_model(v1.ModelStub(channel))
    finally:
        channel.close()


@pytest.fixture(scope="module")
def web_server(world: World) -> Iterator[RunningService]:
    """A real ``bugless web serve`` for a module of browser tests."""
    from browser_support import start_web_server

    server = start_web_server(world.stack)
    try:
        yield server
    finally:
        world.stack.stop_service(server)


#: How long a Playwright ``expect`` waits by default in the browser tests.
EXPECT_SECONDS = 15


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, for a module of browser tests."""
    from browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    # An `expect` waits up to this for the page to show what it checks (the
    # default is 5 s): a form's POST, redirect and render on a CI machine at
    # load 13 can take longer, and a wait that passes ends as soon as it does.
    expect.set_options(timeout=EXPECT_SECONDS * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) on a desktop-sized window."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()
