"""The conformance plugin deselects by capability; strict mode fails skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BACKEND_MODULE = """
import pytest
from bugless_core.model.backend import Capability, ModelBackend
from bugless_testing import requires_capability


class Plain(ModelBackend):
    name = "plain"
    capabilities = frozenset()


pytestmark = pytest.mark.bugless_backend.with_args(Plain)


class TestContract:
    def test_always(self):
        assert True

    @requires_capability(Capability.WATCH)
    def test_watch(self):
        raise AssertionError("must have been deselected")
"""


def test_contracts_for_missing_capabilities_are_deselected_and_listed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_backend=BACKEND_MODULE)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\n")
    result = pytester.runpytest("-p", "bugless_testing.plugin", "-p", "bugless_testing.strict")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        ["*bugless contracts not applicable to this backend*", "*test_watch: backend lacks watch*"]
    )


def test_strict_mode_fails_a_run_with_a_skipped_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_skips="""
        import pytest

        def test_ok():
            pass

        def test_skipped():
            pytest.skip("slapd is not installed")
        """
    )
    result = pytester.runpytest("-p", "no:asyncio", "-p", "bugless_testing.strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 test(s) skipped or xfailed*"])


def test_strict_mode_fails_a_run_that_collected_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_empty="")
    result = pytester.runpytest("-p", "no:asyncio", "-p", "bugless_testing.strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no test ran*"])
