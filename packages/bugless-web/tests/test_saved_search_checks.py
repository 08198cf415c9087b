"""What a view of ``/searches`` costs: its subscribed searches are checked in one Model call.

The list says which subscribed search no longer runs (2170fb03), which
took one ``SearchIssues`` per subscribed search, up to 50, on every view.
Real web app, Authenticator and a Model replica of the test's own, whose
``/metrics`` count the calls this page made.
"""

from __future__ import annotations

import re
import secrets

from litestar.testing import AsyncTestClient
from web_support import PASSWORD, SESSION_KEY, World, grpc_calls, own_model_replica, sign_in

from bugless_core import limits
from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import WebSettings, create_app

_BROKEN = re.compile(r'<div class="error saved-search-broken">([^<]*)</div>')


async def _subscribed(model: v1.ModelStub, caller: v1.Caller, query: str) -> v1.SavedSearch:
    saved = await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=caller, name=f"Checked {secrets.token_hex(3)}", query=query
        ),
    )
    await call(
        model.set_saved_search_subscription,
        v1.SetSavedSearchSubscriptionRequest(
            caller=caller, saved_search_id=saved.id, subscribed=True
        ),
    )
    return saved


async def test_a_view_checks_every_subscribed_search_in_one_call_until_one_is_refused(
    world: World, model: v1.ModelStub
) -> None:
    """Six working searches: one ``SearchIssues``. With a refused one, each alone says which."""
    username = f"sam{secrets.token_hex(3)}"
    world.stack.add_user(username, PASSWORD, display_name="Sam Saver")
    channel = world.stack.auth.channel()
    try:
        found = await call(
            v1.AuthenticatorStub(channel).lookup_users,
            v1.LookupUsersRequest(usernames=[username]),
        )
    finally:
        channel.close()
    sam = v1.Caller(user_id=found.users[0].user_id)
    working = [
        "is:open",
        "p:p1 is:open",
        "a:me",
        f"componentid:{world.components['Platform']}+",
        "created>today-7",
        "title:disk status:new",
    ]
    for query in working:
        await _subscribed(model, sam, query)

    async with own_model_replica(world.stack, "model-saved-checks") as (address, port):
        settings = WebSettings(
            model=address, auth=world.stack.auth, session_keys=(SESSION_KEY,), dev=True
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as web:
            await sign_in(web, username)
            before = await grpc_calls(port, "SearchIssues")
            page = await web.get("/searches")
            one_call = await grpc_calls(port, "SearchIssues") - before

            await _subscribed(model, sam, "is:open componentid:999999")
            before_ok = await grpc_calls(port, "SearchIssues")
            before_refused = await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT")
            marked = await web.get("/searches")
            ok = await grpc_calls(port, "SearchIssues") - before_ok
            refused = await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT") - before_refused

    assert page.status_code == 200, page.text
    assert _BROKEN.findall(page.text) == []
    assert one_call == 1
    assert _BROKEN.findall(marked.text) == [
        "This search no longer runs, so its mail has stopped: "
        "at column 21: there is no component 999999 that you may view"
    ]
    # The one call refused, then each search alone: six run, one refused.
    assert (ok, refused) == (len(working), 2)


async def test_a_view_with_more_sort_keys_than_one_query_holds_checks_each_search_alone(
    world: World, model: v1.ModelStub
) -> None:
    """More distinct sort keys than a query may carry: each search alone, none refused.

    The one ``OR`` query carries every search's sort keys, and the Model
    refuses more than ``MAX_SORT_KEYS`` of them whatever the searches are: sent,
    that query was a refusal on every view (one more call, an INVALID_ARGUMENT
    in the Model's metrics) before the searches were checked one by one.
    Each search is still judged right: the broken one marked, the rest not.
    """
    username = f"sid{secrets.token_hex(3)}"
    world.stack.add_user(username, PASSWORD, display_name="Sid Sorter")
    channel = world.stack.auth.channel()
    try:
        found = await call(
            v1.AuthenticatorStub(channel).lookup_users,
            v1.LookupUsersRequest(usernames=[username]),
        )
    finally:
        channel.close()
    sid = v1.Caller(user_id=found.users[0].user_id)
    keys = ["id", "created", "modified", "priority", "severity", "status", "title", "stars", "-id"]
    assert len(keys) > limits.MAX_SORT_KEYS
    working = [f"is:open sort:{key}" for key in keys]
    for query in working:
        await _subscribed(model, sid, query)

    async with own_model_replica(world.stack, "model-sort-checks") as (address, port):
        settings = WebSettings(
            model=address, auth=world.stack.auth, session_keys=(SESSION_KEY,), dev=True
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as web:
            await sign_in(web, username)
            before_ok = await grpc_calls(port, "SearchIssues")
            before_refused = await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT")
            page = await web.get("/searches")
            ok = await grpc_calls(port, "SearchIssues") - before_ok
            refused = await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT") - before_refused

            await _subscribed(model, sid, "is:open componentid:999999 sort:-created")
            before_ok = await grpc_calls(port, "SearchIssues")
            before_refused = await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT")
            marked = await web.get("/searches")
            marked_ok = await grpc_calls(port, "SearchIssues") - before_ok
            marked_refused = (
                await grpc_calls(port, "SearchIssues", "INVALID_ARGUMENT") - before_refused
            )

    assert page.status_code == 200, page.text
    assert _BROKEN.findall(page.text) == []
    assert (ok, refused) == (len(working), 0)
    assert marked.status_code == 200, marked.text
    assert _BROKEN.findall(marked.text) == [
        "This search no longer runs, so its mail has stopped: "
        "at column 21: there is no component 999999 that you may view"
    ]
    assert (marked_ok, marked_refused) == (len(working), 1)  # only the broken one's own
