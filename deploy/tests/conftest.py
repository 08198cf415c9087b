"""Fixtures of the deploy tests: the chart rendered with each shipped values file.

``postgres_server`` (a throwaway PostgreSQL) is there for the tests that run
the real services, started only when one of them asks for it.
"""

from __future__ import annotations

import pytest
from chart_rendering import VALUES_FILES, Manifest, rendered

pytest_plugins = ["bugless_testing.postgres"]


@pytest.fixture(params=VALUES_FILES)
def values_file(request: pytest.FixtureRequest) -> str:
    """Each shipped values file in turn."""
    name: str = request.param
    return name


@pytest.fixture
def manifests(values_file: str) -> list[Manifest]:
    """The chart rendered with ``values_file``."""
    return rendered(values_file)
