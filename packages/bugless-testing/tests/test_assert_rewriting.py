"""Every module of bugless_testing has its asserts rewritten, however it is first imported.

Each run is a fresh ``pytest`` subprocess: in this process the package is
imported already, and whether a module was rewritten is decided on its
first import.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = session\n"


def test_a_plugin_imported_by_its_test_module_first_is_rewritten_without_a_warning(
    pytester: pytest.Pytester,
) -> None:
    """The core suite's shape: a test module imports from the stack plugin, then lists it."""
    pytester.makepyfile(
        test_imports_first="""
        from bugless_testing.stack import paused

        pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]


        def test_imported():
            assert callable(paused)
        """
    )
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "cannot be rewritten" not in result.stdout.str()


def test_an_assertion_helper_fails_with_the_values_it_compared(
    pytester: pytest.Pytester,
) -> None:
    """A helper's failing assert shows its operands, as a rewritten assert does."""
    pytester.makepyfile(
        test_helper_fails="""
        import asyncio

        from bugless_testing.metrics import metric_total


        def test_no_metrics_port():
            asyncio.run(metric_total(None, "bugless_calls_total"))
        """
    )
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the service was started without --metrics-port*"])
    result.stdout.fnmatch_lines(["*assert None is not None*"])
