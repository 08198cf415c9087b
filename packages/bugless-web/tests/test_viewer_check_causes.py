"""A bulk edit's check of several components: why those it left out were not checked.

Real web backends, Model and Authenticator. The warning names each cause as
it was: a component whose check did not answer in time, and one whose check
ended in an error, which may have come at once and is not said to be slow.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from test_viewer_warnings import _signed_in
from web_support import World

from bugless_web import WebSettings
from bugless_web.backends import Backends
from bugless_web.viewer_warnings import CHECK_SECONDS, _not_checked, viewer_warning


async def test_a_check_that_fails_at_once_is_not_said_to_be_slow(
    world: World, web_settings: WebSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """bob's check of Secret, which he may not view, is refused at once (NotFound).

    His edit named carol in Platform (checked: she can view it, no sentence)
    and in Secret, whose check failed: the warning says it was not checked
    because its check failed, not that it did not answer within 3 s.
    """
    backends = Backends(dataclasses.replace(web_settings, call_timeout_seconds=30.0))
    try:
        viewer = await _signed_in(backends, "bob")
        carol = world.users["carol"]
        with caplog.at_level(logging.WARNING, logger="bugless.web"):
            warning = await viewer_warning(
                backends,
                viewer,
                {world.components["Platform"]: [carol], world.components["Secret"]: [carol]},
                issue_ids={world.components["Platform"]: [1], world.components["Secret"]: [2]},
            )
    finally:
        backends.close()

    assert warning == (
        "1 component not checked (the check of 1 failed): people it named may not be able "
        "to view its issues."
    )
    assert any("NotFound" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def test_each_cause_of_components_not_checked_is_worded_as_it_was() -> None:
    """Past the limit, no answer in time and a failed check, each said apart and counted."""
    assert _not_checked(0, 0, 0, after_others=False) == ""
    assert _not_checked(0, 2, 0, after_others=False) == (
        f"2 components not checked (2 did not answer within {CHECK_SECONDS:g} s): people it "
        "named may not be able to view their issues."
    )
    assert _not_checked(1, 2, 1, after_others=True) == (
        "4 more components not checked (a bulk edit is checked for its first 20 components, "
        f"2 did not answer within {CHECK_SECONDS:g} s and the check of 1 failed): people it "
        "named may not be able to view their issues either."
    )
