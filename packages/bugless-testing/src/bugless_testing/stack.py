"""The real backend services, started for a frontend's test session (a pytest plugin).

Frontends (the web UI, the API gateway, the notifier) are tested against the
real Model on a real PostgreSQL and the real Authenticator, never against
fakes of them. This plugin starts both **as subprocesses through the
``bugless`` CLI**, the way an operator runs them, with the one local-stack
library (:mod:`bugless_dev.stack`) that ``bugless dev``, the HA drill and the
benchmarks use too. Enable it in a conftest::

    pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]

and ask for the session fixture ``bugless_stack``, a
:class:`~bugless_dev.stack.LocalStack` whose Model and Authenticator run:
``model`` and ``auth`` are their addresses, ``add_user`` creates password users
through ``bugless auth user add``, ``add_bot`` issues a client certificate
mapped in the ``tls`` backend (the Authenticator re-reads the mapping on its
next certificate check), and ``pki`` is the session's CA.

Tests that need an Authenticator configured otherwise (another policy, an
OIDC provider) start one more on the same database and keys with
``start_auth(...)``; the module-scoped fixture ``bugless_oidc_auth`` is one with
``local,tls,oidc`` trusting the mock provider of
:mod:`bugless_testing.oidc_provider` (list that plugin too). Every process is
stopped at the end of the session; their logs stay under the session's
temporary directory and are quoted when a service fails to start.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bugless_dev.pki import LocalPki
from bugless_dev.stack import TEST_POLICY, LocalStack, RunningService, StackConfig

if TYPE_CHECKING:
    from bugless_dev.postgres import ThrowawayPostgres
    from bugless_testing.oidc_provider import OidcProvider

#: The label of the OIDC sign-in button of :func:`bugless_oidc_auth`.
OIDC_LABEL = "Sign in with Mock SSO"

__all__ = [
    "OIDC_LABEL",
    "TEST_POLICY",
    "LocalStack",
    "RunningService",
    "bugless_oidc_auth",
    "bugless_stack",
    "paused",
    "start_stack",
]


def start_stack(postgres_server: ThrowawayPostgres, directory: Path) -> LocalStack:
    """Migrate two fresh databases and start the Model and the Authenticator.

    The caller stops the result (:meth:`LocalStack.stop`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=postgres_server.create_database("stack_model"),
            auth_database_url=postgres_server.create_database("stack_auth"),
        )
    )
    try:
        stack.migrate()
        stack.start_backends()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def bugless_stack(
    postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The Model and the Authenticator for this session; stopped at its end."""
    stack = start_stack(postgres_server, tmp_path_factory.mktemp("bugless-stack"))
    try:
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.stop()


@pytest.fixture(scope="module")
def bugless_oidc_auth(
    bugless_stack: LocalStack, oidc_provider: OidcProvider
) -> Iterator[RunningService]:
    """An Authenticator with ``local,tls,oidc``, the OIDC backend trusting the mock provider.

    Module-scoped and separate from the session's Authenticator, so only the
    modules that sign in through a provider pay for starting it. Needs the
    ``oidc_provider`` fixture: list ``bugless_testing.oidc_provider`` in
    ``pytest_plugins`` too. Its sign-in button reads :data:`OIDC_LABEL`; the
    provider's ``groups`` claim becomes the identity's groups (so a user whose
    claim says ``admins`` is a global admin under :data:`TEST_POLICY`).
    """
    from bugless_testing.oidc_provider import CLIENT_ID, CLIENT_SECRET  # noqa: PLC0415

    extra = bugless_stack.start_auth(
        name="auth-oidc",
        authenticators=("local", "tls", "oidc"),
        options={
            "oidc": {
                "issuer": oidc_provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "label": OIDC_LABEL,
                "groups_claim": "groups",
                "http_timeout": "5",
            }
        },
    )
    try:
        yield extra
    finally:
        bugless_stack.stop_service(extra)


@contextlib.contextmanager
def paused(replica: RunningService) -> Iterator[None]:
    """``replica`` stopped (SIGSTOP) inside the block, continued (SIGCONT) after it, always.

    A real service that takes no CPU for a while, as the kernel, a full
    disk's I/O or a long garbage collection can make one: how the tests make
    a Model stall without faking it.
    """
    replica.process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replica.process.signal(signal.SIGCONT)
