"""A pytest plugin that fails the run when any test was skipped or none ran.

Every real component bugless tests against (PostgreSQL, slapd, the OIDC
provider, Chromium) is installable where CI runs, so a skip can only mean a
missing install step or a test that silently stopped testing anything. CI runs
with ``-p bugless_testing.strict`` to make both visible as failures.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Turn skips and xfails, and an empty run, into a failed run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", [])) + len(reporter.stats.get("xfailed", []))
    if skipped:
        reporter.write_line(
            f"bugless strict mode: {skipped} test(s) skipped or xfailed; "
            "CI must run every test (install the missing component instead)",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        reporter.write_line("bugless strict mode: no test ran", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
