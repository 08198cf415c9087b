"""The pytest plugin behind the conformance suites.

It does three things: registers the ``bugless_backend`` and
``requires_capability`` markers; deselects, at collection, every contract
test that needs a capability the marked backend does not declare (reporting
them at the end of the run, so the omission is visible without being a skip);
and serves the backend under test over a real gRPC socket, so contracts talk
to the Model exactly as the frontends do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from grpclib.client import Channel
from prometheus_client import CollectorRegistry

from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_core.model.backend import Capability, ModelBackend
from bugless_core.model.servicer import ModelServicer
from bugless_proto import v1

_DESELECTED_KEY = pytest.StashKey[list[tuple[str, str]]]()


def requires_capability(*capabilities: Capability) -> pytest.MarkDecorator:
    """Mark a contract test (or class) as needing backend capabilities."""
    return pytest.mark.requires_capability(*capabilities)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers so --strict-markers accepts them."""
    config.addinivalue_line(
        "markers", "bugless_backend(cls): the ModelBackend class this module's contracts run on"
    )
    config.addinivalue_line(
        "markers", "requires_capability(*caps): run only on backends declaring these capabilities"
    )
    config.stash[_DESELECTED_KEY] = []


def _missing_capabilities(item: pytest.Item) -> set[Capability]:
    backend_marker = item.get_closest_marker("bugless_backend")
    if backend_marker is None:
        return set()
    backend_cls: type[ModelBackend] = backend_marker.args[0]
    needed: set[Capability] = set()
    for marker in item.iter_markers("requires_capability"):
        needed.update(marker.args)
    return needed - set(backend_cls.capabilities)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect contracts for capabilities the backend does not declare."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        missing = _missing_capabilities(item)
        if missing:
            dropped.append(item)
            config.stash[_DESELECTED_KEY].append(
                (item.nodeid, ", ".join(sorted(c.value for c in missing)))
            )
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """List what was not run because the backend lacks a capability."""
    deselected = config.stash.get(_DESELECTED_KEY, [])
    if not deselected:
        return
    terminalreporter.section("bugless contracts not applicable to this backend")
    for nodeid, missing in deselected:
        terminalreporter.line(f"{nodeid}: backend lacks {missing}")


@pytest.fixture(scope="session")
async def bugless_model_backend() -> ModelBackend:
    """The backend under test: every backend's conftest overrides this."""
    msg = (
        "define a session-scoped `bugless_model_backend` fixture in your conftest "
        "that yields an open ModelBackend on a fresh database"
    )
    raise pytest.UsageError(msg)


class PeopleDirectory:
    """Who people are, for the served Model's ``CheckViewers``: what a contract says.

    The suite's Model believes the caller each request names (it serves
    without assertions, as under ``--insecure-local``); in the same way it
    takes the groups of the people ``CheckViewers`` judges from here, as a
    contract registers them, instead of from an Authenticator's
    ``GetUserGroups``. What the backend is held to is the rule it applies to
    them; the Authenticator's answers and the Model asking it over mTLS are
    proven by bugless-auth's and bugless-dev's tests on real servers.
    """

    def __init__(self) -> None:
        """An empty directory: every id is unknown until added."""
        self._people: dict[str, v1.UserGroups] = {}

    def add(self, caller: v1.Caller) -> v1.Caller:
        """Make ``caller`` (its user id, groups and ``admin``) an enabled user; returns it."""
        self._people[caller.user_id] = v1.UserGroups(
            user_id=caller.user_id,
            standing=v1.UserStanding.ACTIVE,
            groups=list(caller.groups),
            admin=caller.admin,
        )
        return caller

    def set_standing(self, user_id: str, standing: v1.UserStanding) -> None:
        """Make ``user_id`` disabled, a placeholder or unknown (no groups then)."""
        self._people[user_id] = v1.UserGroups(user_id=user_id, standing=standing)

    async def user_groups(self, user_ids: Sequence[str]) -> list[v1.UserGroups]:
        """Answer as ``GetUserGroups`` does: each id once, in request order."""
        return [
            self._people.get(u, v1.UserGroups(user_id=u, standing=v1.UserStanding.UNKNOWN))
            for u in dict.fromkeys(user_ids)
        ]


@pytest.fixture(scope="module")
def bugless_people() -> PeopleDirectory:
    """The people the served Model's ``CheckViewers`` knows (:class:`PeopleDirectory`)."""
    return PeopleDirectory()


@pytest.fixture(scope="module")
async def bugless_model_channel(
    bugless_model_backend: ModelBackend, bugless_people: PeopleDirectory
) -> AsyncIterator[Channel]:
    """A client channel to the backend, served by ModelServicer on a loopback socket.

    Module-scoped, not session-scoped: when one run collects several backends'
    tests (``pytest packages/bugless-model-*/tests``), each directory's conftest
    provides its own ``bugless_model_backend``, and a session-wide channel would
    keep serving whichever backend asked first.
    """
    runner = GrpcServiceRunner(
        [ModelServicer(bugless_model_backend, user_groups=bugless_people.user_groups)],
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=5),
        name="model-under-test",
        metrics_registry=CollectorRegistry(),
    )
    await runner.start()
    channel = Channel("127.0.0.1", runner.port)
    try:
        yield channel
    finally:
        channel.close()
        await runner.close()


@pytest.fixture
def model(bugless_model_channel: Channel) -> v1.ModelStub:
    """The Model service as the frontends see it."""
    return v1.ModelStub(bugless_model_channel)
