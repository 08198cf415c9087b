"""bugless-testing: the conformance suites every backend runs, and real-server fixtures.

A backend's tests enable the plugin and subclass the contract classes::

    # conftest.py
    pytest_plugins = ["bugless_testing.plugin"]

    @pytest.fixture(scope="session")
    async def bugless_model_backend():  # the one fixture a backend provides
        ...  # yield an open backend on a fresh, migrated database

    # test_conformance.py
    # with_args: a mark called with a lone class would decorate it instead
    pytestmark = pytest.mark.bugless_backend.with_args(PostgresBackend)

    class TestIssues(IssueContract): ...

Contracts that need a capability the backend does not declare are deselected
at collection (and listed in the run's summary), never skipped, so that CI can
treat every skip as a failure.
"""

from __future__ import annotations

import pytest

# Contract classes live in this package, not in test files: without this their
# plain asserts would fail with no detail.
pytest.register_assert_rewrite(
    "bugless_testing.model_contracts",
    "bugless_testing.auth_contracts",
    "bugless_testing.plugin",
    "bugless_testing.slapd",
    "bugless_testing.slapd_replica",
    "bugless_testing.smtp",
    "bugless_testing.blob_contracts",
    "bugless_testing.s3",
)

from bugless_testing.plugin import requires_capability  # noqa: E402

__all__ = ["requires_capability"]
