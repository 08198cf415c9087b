"""The Python client has a public method for every call of the public API.

Bots should never need the raw stubs (or a private method) for an API call:
each RPC of ``bugless.v1`` Account, Issues, Components, Hotlists,
SavedSearches, Notifications and Webhooks must be made by some public method
of :class:`BuglessClient`, and every public coroutine method has a blocking twin on
:class:`SyncBuglessClient` (the async iterators excepted).
"""

from __future__ import annotations

import inspect
import re

from bugless_api.client import BuglessClient, SyncBuglessClient
from bugless_proto import v1

STUBS = {
    "account": v1.AccountStub,
    "issues": v1.IssuesStub,
    "components": v1.ComponentsStub,
    "hotlists": v1.HotlistsStub,
    "saved_searches": v1.SavedSearchesStub,
    "notifications": v1.NotificationsStub,
    "webhooks": v1.WebhooksStub,
}


def _rpcs(stub: type) -> set[str]:
    return {
        name
        for name, member in vars(stub).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def _public_methods() -> dict[str, str]:
    return {
        name: inspect.getsource(member)
        for name, member in inspect.getmembers(BuglessClient, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_api_call_has_a_public_client_method() -> None:
    sources = _public_methods()
    calls = {
        (stub, rpc)
        for source in sources.values()
        for stub, rpc in re.findall(r"self\.(\w+)\.(\w+)\b", source)
        if stub in STUBS
    }
    # A method that drives the stream itself names the route instead of the stub method.
    services = {stub.__name__.removesuffix("Stub"): attribute for attribute, stub in STUBS.items()}
    for source in sources.values():
        for service, method in re.findall(r'"/bugless\.v1\.(\w+)/(\w+)"', source):
            if service in services:
                calls.add((services[service], re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()))
    missing = {
        f"{attribute}.{rpc}"
        for attribute, stub in STUBS.items()
        for rpc in _rpcs(stub)
        if (attribute, rpc) not in calls
    }
    assert _rpcs(v1.IssuesStub) >= {"search_issues", "watch", "batch_change_issues"}
    assert not missing, f"API calls without a public client method: {sorted(missing)}"


def test_every_call_has_a_blocking_twin() -> None:
    coroutines = {
        name
        for name, member in inspect.getmembers(BuglessClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert {"create_issue", "batch_change_issues", "update_saved_search"} <= coroutines
    missing = {name for name in coroutines if not callable(getattr(SyncBuglessClient, name, None))}
    assert not missing, f"no SyncBuglessClient method for {sorted(missing)}"
