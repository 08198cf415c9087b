"""``migrate``'s passes after the files on the CockroachDB backend (bugless_testing.pass_halving).

The backend inherits the PostgreSQL package's ``migrate``: its mention scans
and folds halve a batch past ``statement_timeout`` as PostgreSQL's do.
"""

from __future__ import annotations

import pytest

from bugless_model_cockroach import CockroachBackend
from bugless_testing.mention_scans import SqlBackendClass
from bugless_testing.pass_halving import PassHalvingChecks


@pytest.fixture
def pass_halving_backend() -> SqlBackendClass:
    """The backend whose ``migrate`` runs the passes."""
    return CockroachBackend


class TestCockroachPassHalving(PassHalvingChecks):
    """The checks of :class:`PassHalvingChecks`, on this package's backend."""
