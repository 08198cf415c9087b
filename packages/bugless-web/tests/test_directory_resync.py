"""Identity changes in LDAP reach the web UI within the re-sync interval.

The real stack (Model, Authenticator subprocesses) plus one more
``bugless auth serve`` with the ``ldap`` backend on a real slapd and
``--authenticator-option ldap.resync_seconds=1``; the web app runs in-process
on it. A person signs in through the form and files an issue; the directory
renames them, then locks them out. Without any sign-in: the issue page shows
the new name, then their web session is refused; the issue keeps its
reporter (the opaque id), untouched.
"""

from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, csrf_of, sign_in

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.polling import eventually
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd, ssha
from bugless_web import WebSettings, create_app

#: Locked accounts carry employeeType=disabled; the filter leaves them out.
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))"
WITHIN_SECONDS = 20.0


@pytest.fixture(scope="module")
def ldap_auth(world: World, slapd_server: Slapd) -> Iterator[RunningService]:
    """An Authenticator with the ldap backend re-syncing every second."""
    extra = world.stack.start_auth(
        name="auth-ldap",
        authenticators=("local", "ldap"),
        options={
            "ldap": {
                "urls": slapd_server.url,
                "base_dn": PEOPLE_DN,
                "bind_dn": READER_DN,
                "bind_password": READER_PASSWORD,
                "user_filter": USER_FILTER,
                "resync_seconds": "1",
                "connect_timeout": "2",
                "operation_timeout": "2",
            }
        },
    )
    try:
        yield extra
    finally:
        world.stack.stop_service(extra)


@pytest.fixture
async def client(
    world: World, ldap_auth: RunningService
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    assert ldap_auth.address is not None
    settings = WebSettings(
        model=world.stack.model,
        auth=ldap_auth.address,
        session_keys=(SESSION_KEY,),
        dev=True,
        token_cache_seconds=1.0,
        user_cache_seconds=1.0,
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
        yield c


def change(server: Slapd, ldif: str) -> Awaitable[None]:
    return asyncio.to_thread(server.ldapmodify, ldif)


async def test_a_rename_shows_and_a_lock_signs_the_person_out_leaving_their_issues(
    world: World, ldap_auth: RunningService, slapd_server: Slapd, client: AsyncTestClient[Any]
) -> None:
    uid = f"dana-{secrets.token_hex(3)}"
    dn = f"uid={uid},{PEOPLE_DN}"
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Dana\nsn: Scully\n"
        f"displayName: Dana Scully\nmail: {uid}@example.test\nuserPassword: {ssha('dana-pw')}\n",
    )
    await sign_in(client, uid, "dana-pw")
    assert ldap_auth.address is not None
    channel = ldap_auth.address.channel()
    model_channel = world.stack.model.channel()
    try:
        auth = v1.AuthenticatorStub(channel)
        (person,) = (await call(auth.lookup_users, v1.LookupUsersRequest(usernames=[uid]))).users
        model = world.stack.acting_model(v1.ModelStub(model_channel))
        issue = await call(
            model.create_issue,
            v1.CreateIssueRequest(
                caller=v1.Caller(user_id=person.user_id),
                fields=v1.IssueFields(
                    title="Filed by Dana", component_id=world.components["Platform"]
                ),
                idempotency_key=secrets.token_hex(8),
            ),
        )
        page = await client.get(f"/issues/{issue.id}")
        assert "Dana Scully" in page.text

        await change(
            slapd_server,
            f"dn: {dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Dana Katherine\n",
        )

        async def renamed() -> bool:
            shown = await client.get(f"/issues/{issue.id}")
            return shown.status_code == 200 and "Dana Katherine" in shown.text

        await eventually(
            renamed, "the new name on the issue page", within=WITHIN_SECONDS, every=0.3
        )

        await change(
            slapd_server,
            f"dn: {dn}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
        )

        async def signed_out() -> bool:
            response = await client.get("/issues/new", follow_redirects=False)
            return response.status_code == 303 and "/signin" in response.headers["location"]

        await eventually(
            signed_out, "the locked person's web session refused", within=WITHIN_SECONDS, every=0.3
        )
        kept = await call(
            model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id)
        )
        assert kept.reporter == person.user_id
        assert kept.title == "Filed by Dana"
    finally:
        channel.close()
        model_channel.close()


async def test_a_directory_name_that_is_no_username_is_told_at_the_sign_in_form(
    slapd_server: Slapd, client: AsyncTestClient[Any]
) -> None:
    # The password is right; the name cannot be a bugless username: the form
    # says why (retyping cannot help), where a wrong password says only that.
    uid = f"ann smith-{secrets.token_hex(3)}"
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Ann\n"
        f"sn: Smith\nuserPassword: {ssha('ann-pw')}\n",
    )

    async def submit(password: str) -> Any:
        page = await client.get("/signin")
        return await client.post(
            "/signin",
            data={"username": uid, "password": password, "_csrf": csrf_of(page.text)},
            follow_redirects=False,
        )

    refused = await submit("ann-pw")
    assert refused.status_code == 401
    shown = html.unescape(refused.text)
    assert f"your username from ldap, {uid!r}, cannot be used in bugless" in shown
    assert "holds ' ' (U+0020 SPACE)" in shown
    wrong = await submit("not-it")
    assert wrong.status_code == 401
    assert "Wrong username or password." in wrong.text
    assert "cannot be used" not in wrong.text


async def test_a_directory_name_a_local_user_holds_is_told_at_the_sign_in_form(
    world: World, slapd_server: Slapd, client: AsyncTestClient[Any]
) -> None:
    # The password is right; the name is a local user's but for case, so
    # the Authenticator refuses (FAILED_PRECONDITION): the form says what an
    # administrator must fix, where it was the bare error page before.
    tag = secrets.token_hex(3)
    local = f"ben-{tag}"
    await asyncio.to_thread(world.stack.add_user, local, "local-pw-" + tag)
    uid = local.upper()
    await asyncio.to_thread(
        slapd_server.ldapadd,
        f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Ben\n"
        f"sn: Held\nuserPassword: {ssha('ben-pw')}\n",
    )
    page = await client.get("/signin")

    refused = await client.post(
        "/signin",
        data={"username": uid, "password": "ben-pw", "_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )

    assert refused.status_code == 409
    shown = html.unescape(refused.text)
    assert f"username {uid!r} already belongs to another bugless user (from local)" in shown
    assert f'name="username" value="{uid}"' in refused.text  # the form, filled in again
    signed_in = await client.get("/settings/api-access", follow_redirects=False)
    assert signed_in.status_code == 303  # still nobody's session
