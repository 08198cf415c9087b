"""Sessions that end, on real ``bugless web serve`` replicas.

Two replicas share the session keys and the Authenticator, as pods behind a
load balancer do. A cookie copied before sign-out (a stolen cookie) must be
refused by the *other* replica too, within its token cache time; so must the
cookies of every device after "sign out everywhere" or after an
administrator disables the person.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from browser_support import start_web_server
from web_support import PASSWORD, World, acting_for, csrf_of

from bugless_core.clients import call
from bugless_core.errors import Unauthenticated
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_web.routes.sessions import PAGE_SIZE
from bugless_web.session import DEV_COOKIE_NAME, Session, SessionCodec

#: The replicas' --token-cache-seconds: how late a replica may notice.
CACHE_SECONDS = 1.0
#: What "within the cache time" allows on a loaded two-core machine.
SLACK_SECONDS = 4.0
#: How late the Model refuses an ended session's assertions: it reuses the
#: Authenticator's list of ended sessions for --assertion-refresh-seconds (5).
MODEL_REFRESH_SECONDS = 5.0


@pytest.fixture(scope="module")
def replicas(world: World) -> Iterator[tuple[RunningService, RunningService]]:
    """Two web replicas of the session's stack."""
    env = {"BUGLESS_WEB_TOKEN_CACHE_SECONDS": str(CACHE_SECONDS)}
    first = start_web_server(world.stack, extra_env=env)
    second = start_web_server(world.stack, extra_env=env)
    try:
        yield first, second
    finally:
        world.stack.stop_service(first)
        world.stack.stop_service(second)


@pytest.fixture
async def browsers() -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients with their own cookie jars; closed at the end."""
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def browser(made: list[httpx.AsyncClient], replica: RunningService) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=str(replica.url), timeout=30)
    made.append(client)
    return client


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; the session cookie's value."""
    page = await client.get("/signin")
    response = await client.post(
        "/signin",
        data={"username": username, "password": password, "_csrf": csrf_of(page.text)},
    )
    assert response.status_code == 303, response.text
    cookie = client.cookies.get(DEV_COOKIE_NAME)
    assert cookie
    return cookie


async def page_as(replica: RunningService, cookie: str, path: str) -> httpx.Response:
    """``path`` on ``replica`` presenting ``cookie`` (a copy of someone's cookie)."""
    async with httpx.AsyncClient(base_url=str(replica.url), timeout=30) as other:
        other.cookies.set(DEV_COOKIE_NAME, cookie)
        return await other.get(path)


async def dead_within(replica: RunningService, cookie: str, path: str) -> float:
    """Seconds until ``cookie`` no longer opens ``path`` on ``replica`` (polled)."""
    started = time.monotonic()
    while time.monotonic() - started < CACHE_SECONDS + SLACK_SECONDS:
        response = await page_as(replica, cookie, path)
        if response.status_code == 303 and response.headers["location"].startswith("/signin"):
            return time.monotonic() - started
        # Never a 401 page: when the web tier's session cache still knows the
        # cookie but the Model refuses the ended session's identity assertion,
        # the browser is signed out and sent to sign in all the same.
        assert response.status_code == 200, response.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} still opens with the old cookie after {SLACK_SECONDS} s")


async def sign_out(client: httpx.AsyncClient, path: str = "/signout") -> httpx.Response:
    home = await client.get("/")
    return await client.post(path, data={"_csrf": csrf_of(home.text)})


async def restricted_issue(world: World) -> int:
    """An issue in the Secret component (admins only), for alice to look at."""
    channel = world.stack.model.channel()
    try:
        created = await call(
            world.stack.acting_model(v1.ModelStub(channel)).create_issue,
            v1.CreateIssueRequest(
                caller=world.admin,
                fields=v1.IssueFields(title="restricted", component_id=world.components["Secret"]),
            ),
        )
    finally:
        channel.close()
    return created.id


async def test_a_copied_cookie_is_dead_after_sign_out_on_another_replica(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, second = replicas
    issue_id = await restricted_issue(world)
    alice = browser(browsers, first)
    copied = await sign_in(alice, "alice")
    assert (await page_as(second, copied, f"/issues/{issue_id}")).status_code == 200

    response = await sign_out(alice)

    assert response.status_code == 303
    await dead_within(second, copied, f"/issues/{issue_id}")
    await asyncio.sleep(CACHE_SECONDS + 0.5)  # and it stays dead, on both replicas
    for replica in (first, second):
        later = await page_as(replica, copied, f"/issues/{issue_id}")
        assert later.status_code == 303, later.text


async def test_a_page_the_model_refuses_for_an_ended_session_sends_the_browser_to_sign_in(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    """The web tier still trusts the session (a long token cache); the Model does not.

    The page load then signs the browser out and redirects to the sign-in
    page, which opens (no redirect loop), instead of a 401 error page.
    """
    first, _ = replicas
    trusting = start_web_server(world.stack, extra_env={"BUGLESS_WEB_TOKEN_CACHE_SECONDS": "300"})
    try:
        issue_id = await restricted_issue(world)
        path = f"/issues/{issue_id}?tab=history"
        there = browser(browsers, trusting)
        copied = await sign_in(there, "alice")
        assert (await there.get(path)).status_code == 200  # the viewer is cached now
        elsewhere = browser(browsers, first)
        elsewhere.cookies.set(DEV_COOKIE_NAME, copied)
        assert (await sign_out(elsewhere)).status_code == 303

        started = time.monotonic()
        while (refused := await there.get(path)).status_code == 200:
            waited = time.monotonic() - started
            # A liveness bound, not a timing check: generous for a loaded CI machine.
            assert waited < MODEL_REFRESH_SECONDS + 5 * SLACK_SECONDS, "the Model still takes it"
            await asyncio.sleep(0.2)

        assert refused.status_code == 303, refused.text
        assert refused.headers["location"] == f"/signin?next=/issues/{issue_id}%3Ftab%3Dhistory"
        assert there.cookies.get(DEV_COOKIE_NAME) != copied  # signed out in the browser too
        signin = await there.get(refused.headers["location"])
        assert signin.status_code == 200
        assert 'name="password"' in signin.text
    finally:
        world.stack.stop_service(trusting)


async def test_sign_out_everywhere_ends_the_sessions_of_every_device(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, second = replicas
    laptop, phone, colleague = (
        browser(browsers, first),
        browser(browsers, second),
        browser(browsers, second),
    )
    await sign_in(laptop, "carol")
    phone_cookie = await sign_in(phone, "carol")
    colleague_cookie = await sign_in(colleague, "bob")
    profile = await laptop.get("/users/carol")
    assert "Sign out everywhere" in profile.text

    response = await laptop.post("/signout/everywhere", data={"_csrf": csrf_of(profile.text)})

    assert response.status_code == 303
    await dead_within(second, phone_cookie, "/")
    await dead_within(first, phone_cookie, "/")
    assert (await page_as(first, colleague_cookie, "/")).status_code == 200


async def test_disabling_a_user_ends_their_web_sessions_and_tokens(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, second = replicas
    world.stack.add_user("leaver", PASSWORD)
    leaver = browser(browsers, second)
    cookie = await sign_in(leaver, "leaver")
    channel = world.stack.auth.channel()
    try:
        auth = v1.AuthenticatorStub(channel)
        admin = await call(
            auth.authenticate_password,
            v1.AuthenticatePasswordRequest(username="alice", password=PASSWORD),
        )
        token = (
            await call(
                auth.authenticate_password,
                v1.AuthenticatePasswordRequest(username="leaver", password=PASSWORD),
            )
        ).token
        assert (await page_as(first, cookie, "/")).status_code == 200

        await call(
            auth.set_user_disabled,
            v1.SetUserDisabledRequest(token=admin.token, username="leaver", disabled=True),
        )

        with pytest.raises(Unauthenticated, match=r"session has ended|disabled"):
            await call(auth.validate_token, v1.ValidateTokenRequest(token=token))
        await dead_within(first, cookie, "/")
        await dead_within(second, cookie, "/")
        # The browser itself lands on the sign-in page told why (before: the
        # page alone, nothing saying what had happened).
        landed = await leaver.get("/", follow_redirects=True)
        assert landed.url.path == "/signin"
        assert re.search(
            r'class="banner notice"[^>]*>You were signed out: this session has ended '
            r"\(signed out, or ended by an administrator\)",
            html.unescape(landed.text),
        ), landed.text
        assert "You were signed out" not in (await leaver.get("/signin")).text  # once only

        # Signing in again with the right password says why it fails; before,
        # it said "Wrong username or password." and the person reset a
        # password that was never the problem. A wrong password learns nothing.
        again = browser(browsers, first)
        form = await again.get("/signin")
        said = {}
        for password in (PASSWORD, "not-the-password"):
            refused = await again.post(
                "/signin",
                data={"username": "leaver", "password": password, "_csrf": csrf_of(form.text)},
            )
            assert refused.status_code == 401, refused.text
            said[password] = html.unescape(refused.text)
        assert "this account is disabled; ask a bugless administrator" in said[PASSWORD]
        assert "Wrong username or password." not in said[PASSWORD]
        assert "Wrong username or password." in said["not-the-password"]
        assert "disabled" not in said["not-the-password"]
    finally:
        channel.close()


async def test_a_refused_cross_site_post_leaves_the_cookie_alone(
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, _ = replicas
    bob = browser(browsers, first)
    cookie = await sign_in(bob, "bob")
    forged: dict[str, Any] = {"headers": {"sec-fetch-site": "cross-site"}, "data": {}}

    # As a browser sends it (SameSite=Lax: no cookie on a cross-site POST)...
    async with httpx.AsyncClient(base_url=str(first.url)) as other_site:
        without_cookie = await other_site.post("/signout", **forged)
    # ...and as a client that does send it.
    with_cookie = await bob.post("/signout", **forged)
    no_token = await bob.post("/signout", data={})

    for response in (without_cookie, with_cookie, no_token):
        assert response.status_code == 403, response.text
        assert "set-cookie" not in response.headers
    assert bob.cookies.get(DEV_COOKIE_NAME) == cookie
    assert (await bob.get("/")).status_code == 200


async def test_pages_are_not_stored_and_static_assets_are(
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, _ = replicas
    bob = browser(browsers, first)
    await sign_in(bob, "bob")
    for path in ("/", "/users/bob", "/components", "/issues/999999999", "/signin"):
        response = await bob.get(path)
        assert response.headers["cache-control"] == "no-store", path
    home = await bob.get("/")
    asset = next(part.split('"')[0] for part in home.text.split('href="')[1:] if "/static/" in part)
    assert "no-store" not in (await bob.get(asset)).headers["cache-control"]


async def test_a_throttled_sign_in_says_when_to_retry(
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, _ = replicas
    client = browser(browsers, first)
    page = await client.get("/signin")
    token = csrf_of(page.text)
    statuses: list[int] = []
    response = None
    for _ in range(12):  # the default allows 10 failures per (user, address)
        response = await client.post(
            "/signin", data={"username": "nobody-here", "password": "wrong", "_csrf": token}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break

    assert response is not None
    assert response.status_code == 429, statuses
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["cache-control"] == "no-store"


def test_an_opened_cookie_is_reused_until_its_age_passes_the_maximum() -> None:
    now = [time.time()]
    codec = SessionCodec(("key one",), max_age_seconds=60, clock=lambda: now[0])
    cookie = codec.seal(Session(token="tok", csrf="secret"))
    opened = codec.open(cookie)
    assert opened is not None
    assert (opened.token, opened.csrf, opened.modified) == ("tok", "secret", False)
    opened.update(token="changed")  # a page's change never reaches the next request's copy
    now[0] += 59
    again = codec.open(cookie)
    assert again is not None
    assert (again.token, again.csrf) == ("tok", "secret")
    now[0] += 2
    assert codec.open(cookie) is None
    assert codec.open(cookie[:-4] + "AAAA") is None
    other = SessionCodec(("another key",), max_age_seconds=60, clock=lambda: now[0])
    assert other.open(cookie) is None


_SESSION_ROW = re.compile(r'<tr data-session="([^"]+)"( class="current")?')


def listed_sessions(html: str) -> list[tuple[str, bool]]:
    """(session id, is this one) of each row of the sessions page, in order."""
    return [(m.group(1), bool(m.group(2))) for m in _SESSION_ROW.finditer(html)]


async def end_from_page(client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    page = await client.get("/settings/sessions")
    return await client.post(
        "/settings/sessions/end", data={"_csrf": csrf_of(page.text), "session_id": session_id}
    )


async def test_the_sessions_page_signs_out_another_device_on_every_replica(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, second = replicas
    world.stack.add_user("twodevices", PASSWORD)
    laptop, phone = browser(browsers, first), browser(browsers, second)
    phone_cookie = await sign_in(phone, "twodevices")
    await sign_in(laptop, "twodevices")
    assert (await page_as(first, phone_cookie, "/")).status_code == 200  # cached on `first`

    page = await laptop.get("/settings/sessions")

    assert page.status_code == 200, page.text
    rows = listed_sessions(page.text)
    assert [current for _, current in rows] == [True, False]  # newest (this one) first
    assert "This session" in page.text
    assert page.text.count('action="/settings/sessions/end"') == 1  # none for this one
    assert "127.0.0.1" in page.text  # where each signed in from
    forged = await laptop.get("/settings/sessions?page=forged")
    assert forged.status_code == 400
    assert "page_token" in forged.text
    response = await end_from_page(laptop, rows[1][0])

    assert response.status_code == 303
    assert response.headers["location"] == "/settings/sessions"
    after = await laptop.get("/settings/sessions")
    assert "Session signed out: its next request is refused (within 1 s" in after.text
    assert listed_sessions(after.text) == [rows[0]]
    await dead_within(second, phone_cookie, "/")
    await dead_within(first, phone_cookie, "/")


async def test_another_persons_session_cannot_be_ended_from_the_sessions_page(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, _ = replicas
    world.stack.add_user("victim", PASSWORD)
    world.stack.add_user("prober", PASSWORD)
    victim, prober = browser(browsers, first), browser(browsers, first)
    victim_cookie = await sign_in(victim, "victim")
    await sign_in(prober, "prober")
    [(victim_session, _)] = listed_sessions((await victim.get("/settings/sessions")).text)

    response = await end_from_page(prober, victim_session)

    assert response.status_code == 303
    page = await prober.get("/settings/sessions")
    assert "That session had already ended." in page.text  # as for an id nobody has
    assert victim_session not in page.text
    await asyncio.sleep(CACHE_SECONDS + 0.5)
    assert (await page_as(first, victim_cookie, "/")).status_code == 200
    forged = await prober.post("/settings/sessions/end", data={"session_id": victim_session})
    assert forged.status_code == 403  # no CSRF token: refused before anything is asked


async def test_ending_this_session_from_the_page_signs_the_browser_out(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    first, second = replicas
    world.stack.add_user("selfend", PASSWORD)
    client = browser(browsers, first)
    cookie = await sign_in(client, "selfend")
    [(own, _)] = listed_sessions((await client.get("/settings/sessions")).text)

    response = await end_from_page(client, own)

    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert client.cookies.get(DEV_COOKIE_NAME) != cookie
    await dead_within(second, cookie, "/")


async def test_services_acting_for_a_person_are_one_folded_line_each_still_endable(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    """The notifier makes a ~5-minute session a mail: they do not crowd the page."""
    first, _ = replicas
    world.stack.add_user("mailed", PASSWORD)
    person = browser(browsers, first)
    await sign_in(person, "mailed")
    await acting_for(world.stack, "mailed", 3)  # three mails about issues

    page = (await person.get("/settings/sessions")).text

    own, _, folded = page.partition('<details class="manage services-acting">')
    assert [current for _, current in listed_sessions(own)] == [True]  # only the browser's
    summary = re.search(r"<summary>Services acting for you: (\d+), latest at ", folded)
    assert summary is not None, folded
    assert summary.group(1) == "3"
    services = [session for session, _ in listed_sessions(folded)]
    assert len(services) == 3
    assert folded.count('action="/settings/sessions/end"') == 3

    assert (await end_from_page(person, services[0])).status_code == 303
    after = (await person.get("/settings/sessions")).text
    assert "Services acting for you: 2, latest at " in after
    assert services[0] not in after


async def test_the_small_print_says_how_late_last_use_is_from_the_settings(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    """The Authenticator's granularity (5 minutes) and the replicas'
    --token-cache-seconds (1) make the figure; the page used to say "about five
    minutes" whatever they were."""
    first, _ = replicas
    world.stack.add_user("smallprint", PASSWORD)
    person = browser(browsers, first)
    await sign_in(person, "smallprint")
    page = (await person.get("/settings/sessions")).text
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert (
        "“Last used” is recorded to within about 5 minutes: a use is noted at most every "
        "5 minutes, and this server checks a signed-in session again only every 1 second."
    ) in text
    assert "(a new connection, or now and then on a long one), at most every 60 seconds." in text


async def test_a_page_of_services_never_pushes_the_persons_own_sessions_off_the_page(
    world: World,
    replicas: tuple[RunningService, RunningService],
    browsers: list[httpx.AsyncClient],
) -> None:
    """More services' sessions than a page holds: the person's own stay on page one."""
    first, _ = replicas
    world.stack.add_user("busymail", PASSWORD)
    person = browser(browsers, first)
    await sign_in(person, "busymail")
    await acting_for(world.stack, "busymail", PAGE_SIZE + 2)  # all newer than the sign-in

    page = (await person.get("/settings/sessions")).text

    own, _, folded = page.partition('<details class="manage services-acting">')
    assert [current for _, current in listed_sessions(own)] == [True]
    assert 'rel="next">Older sessions' not in own  # the person's own fit one page
    # The real count, not the page's ("50+" before).
    assert f"Services acting for you: {PAGE_SIZE + 2}, latest at " in folded
    newest = [session for session, _ in listed_sessions(folded)]
    assert len(newest) == PAGE_SIZE
    older_link = re.search(r'href="(/settings/sessions\?services_page=[^"]+)" rel="next"', folded)
    assert older_link is not None, folded
    older = (await person.get(older_link.group(1).replace("&amp;", "&"))).text
    own_again, _, folded_older = older.partition('<details class="manage services-acting" open>')
    assert [current for _, current in listed_sessions(own_again)] == [True]
    rest = [session for session, _ in listed_sessions(folded_older)]
    assert len(rest) == 2
    assert not set(rest) & set(newest)
    assert f"Services acting for you: {PAGE_SIZE + 2}, older ones below" in folded_older
    forged = await person.get("/settings/sessions?services_page=forged")
    assert forged.status_code == 400
