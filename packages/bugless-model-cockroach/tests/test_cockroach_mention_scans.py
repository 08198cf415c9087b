"""Migration 0028's mention scans on the cockroach backend (bugless_testing.mention_scans).

In compatibility mode (PostgreSQL at SERIALIZABLE) unless
``BUGLESS_TEST_COCKROACH_URL`` names a cluster; the statements the scans
send are recorded and checked against what CockroachDB 23.2 lacks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bugless_model_cockroach import CockroachBackend
from bugless_testing.cockroach_sql import StatementRecorder
from bugless_testing.mention_scans import MentionScanChecks, SqlBackendClass


@pytest.fixture
def mention_scan_backend() -> Iterator[SqlBackendClass]:
    """The backend whose ``migrate`` runs the scans, its statements checked."""
    with StatementRecorder() as recorder:
        yield CockroachBackend
    assert recorder.incompatibilities() == {}


class TestCockroachMentionScans(MentionScanChecks):
    pass
