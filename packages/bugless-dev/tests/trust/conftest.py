"""A real stack (PostgreSQL, Model, Authenticator as subprocesses) for the trust tests."""

from __future__ import annotations

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]
