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

import pkgutil

import pytest

# Every module of this package, not only the contracts, is rewritten: pytest
# plugins (``stack``, ``postgres``...) are often imported by a test module
# before pytest reads its ``pytest_plugins`` (which would warn "Module already
# imported so cannot be rewritten"), and assertion helpers (``lease_renewal``,
# ``events``...) fail with no detail unless rewritten. Registering here, before
# any submodule can be imported, holds whatever imports one first.
pytest.register_assert_rewrite(
    *(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__))
)

from bugless_testing.plugin import requires_capability  # noqa: E402

__all__ = ["requires_capability"]
