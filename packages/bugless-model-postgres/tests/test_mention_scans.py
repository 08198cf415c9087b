"""Migration 0028's mention scans on the PostgreSQL backend (bugless_testing.mention_scans)."""

from __future__ import annotations

import pytest

from bugless_model_postgres import PostgresBackend
from bugless_testing.mention_scans import MentionScanChecks, SqlBackendClass


@pytest.fixture
def mention_scan_backend() -> SqlBackendClass:
    """The backend whose ``migrate`` runs the scans."""
    return PostgresBackend


class TestMentionScans(MentionScanChecks):
    pass
