"""A mail's one-click unsubscribe link (RFC 8058) mutes its issue for its recipient, no session.

Real web app, Model and Authenticator; the tokens are signed by the
Authenticator for the notifier's identity, as for a mail.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_auth.tokens import load_key
from bugless_auth.unsubscribe import UnsubscribeTokens
from bugless_core.clients import call
from bugless_proto import v1


async def _token(world: World, username: str, issue_id: int) -> str:
    channel = world.stack.client_address("auth", identity="notify").channel()
    try:
        reply = await call(
            v1.AuthenticatorStub(channel).issue_unsubscribe_tokens,
            v1.IssueUnsubscribeTokensRequest(
                targets=[v1.UnsubscribeTarget(user_id=world.users[username], issue_id=issue_id)]
            ),
        )
    finally:
        channel.close()
    return reply.tokens[0]


async def _muted(model: v1.ModelStub, world: World, username: str) -> list[int]:
    found = await call(
        model.get_notification_settings,
        v1.GetNotificationSettingsRequest(caller=world.caller(username)),
    )
    return list(found.settings[0].muted_issue_ids)


async def test_the_link_shows_what_it_mutes_and_a_one_click_post_mutes_it_without_a_session(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """GET (a link scanner, a person) mutes nothing; the mail client's POST mutes that one issue.

    The POST carries no cookie and no CSRF token, as a mail client's does
    (``List-Unsubscribe=One-Click`` as the body). Another issue stays
    unmuted.
    """
    issue = await create_issue(model, world, f"Noisy {secrets.token_hex(3)}")
    other = await create_issue(model, world, f"Quiet {secrets.token_hex(3)}")
    token = await _token(world, "carol", issue.id)
    before = await _muted(model, world, "carol")

    page = await client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200, page.text
    assert f"Mute b/{issue.id}?" in page.text
    assert f'action="/unsubscribe/{token}"' in page.text
    assert await _muted(model, world, "carol") == before

    client.cookies.clear()
    done = await client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200, done.text
    assert f"Muted b/{issue.id}" in done.text
    now = await _muted(model, world, "carol")
    assert issue.id in now
    assert other.id not in now
    assert set(now) - {issue.id} == set(before) - {issue.id}
    # Pressed again (a second client, a reload): still muted, no error.
    again = await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200, again.text


async def test_a_forged_or_expired_link_is_a_400_page_saying_why_and_mutes_nothing(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, f"Kept {secrets.token_hex(3)}")
    token = await _token(world, "bob", issue.id)
    head, claims, signature = token.split(".")
    forged = f"{head}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    key = load_key(Path(world.stack.env["BUGLESS_AUTH_TOKEN_KEY_FILES"]))
    expired = UnsubscribeTokens((key,), issuer="bugless-auth").issue(
        world.users["bob"], issue.id, ttl_seconds=-60
    )
    before = await _muted(model, world, "bob")
    for bad, why in (
        (forged, "was not issued by this bugless"),
        ("x", "was not issued by this bugless"),
        (expired, "this unsubscribe link expired on"),
    ):
        for method in ("GET", "POST"):
            response = await client.request(
                method,
                f"/unsubscribe/{bad}",
                content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 400, (method, why, response.text)
            assert why in response.text
            assert "nothing was muted" in response.text
    assert await _muted(model, world, "bob") == before
    assert issue.id not in before


async def test_a_signed_in_viewer_sees_their_own_header_on_the_link_pages(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The confirm and done pages show who is signed in here, as every page does.

    Before, they showed the signed-out header (no menu, no Sign out) to
    someone signed in. The mute is still the link's person's.
    """
    issue = await create_issue(model, world, f"Chatty {secrets.token_hex(3)}")
    token = await _token(world, "bob", issue.id)
    await sign_in(client, "bob")

    for page in (
        await client.get(f"/unsubscribe/{token}"),
        await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
    ):
        assert page.status_code == 200, page.text
        assert 'action="/signout"' in page.text
        assert 'href="/settings/notifications" title="Notification settings"' in page.text
        assert "Bob Builder" in page.text
    assert issue.id in await _muted(model, world, "bob")


async def test_the_link_pages_name_no_one_and_tell_a_signed_in_viewer_whether_it_is_theirs(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Whoever holds a link learns from its pages no name; a signed-in viewer, whether it is theirs.

    The link sits in access logs, proxies' and link scanners' (docs/trust.md):
    its pages must not tell a reader of those whose mail about the issue it
    stops, which only the mail's ``To:`` said. Bob, signed in, opening a link
    from carol's forwarded mail is told it is not his and leaves his mail
    alone; carol opening her own is told it is hers. Before, the pages named
    the token's person (display name) to anyone, signed in or not.
    """
    issue = await create_issue(model, world, f"Forwarded {secrets.token_hex(3)}")
    token = await _token(world, "carol", issue.id)
    carol_before = await _muted(model, world, "carol")
    await sign_in(client, "bob")

    page = await client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200, page.text
    assert "to the person it was sent to, who is not you" in page.text
    assert carol_before == await _muted(model, world, "carol")
    done = await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert "It was not sent to you: your own mail about it is unchanged." in done.text
    assert "You will get no more mail" not in done.text
    assert issue.id in await _muted(model, world, "carol")
    assert issue.id not in await _muted(model, world, "bob")

    client.cookies.clear()
    mallory = await client.get(f"/unsubscribe/{await _token(world, 'mallory', issue.id)}")
    anonymous = await client.get(f"/unsubscribe/{token}")
    anonymous_done = await client.post(
        f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
    )
    for shown in (mallory, anonymous, anonymous_done):
        assert shown.status_code == 200, shown.text
        assert "the person it was sent to" in shown.text or "the person the link was sent to" in (
            shown.text.lower()
        )
        assert "who is not you" not in shown.text
    await sign_in(client, "carol")
    own = await client.get(f"/unsubscribe/{token}")
    own_done = await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert f'stops mail about <a href="/issues/{issue.id}">b/{issue.id}</a> to you.' in own.text
    assert "You will get no more mail about" in own_done.text

    for shown in (page, done, mallory, anonymous, anonymous_done):
        for detail in ("Carol Coder", "carol@example.com", ">carol<", "Mallory", "mallory"):
            assert detail not in shown.text, (detail, shown.text)
