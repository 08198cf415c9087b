"""Plugins every bugless-dev test folder shares.

pytest reads ``pytest_plugins`` only from the top conftest of a run, so the
trust tests' real-server fixtures are enabled here rather than in
``trust/conftest.py``.
"""

from __future__ import annotations

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.s3", "bugless_testing.stack"]
