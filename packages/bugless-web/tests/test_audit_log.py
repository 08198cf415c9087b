"""The web's audit line: one per change it made, whatever the change's details are called."""

from __future__ import annotations

import logging

import pytest

from bugless_proto import v1
from bugless_web.backends import Viewer
from bugless_web.frontend import audit


def test_a_detail_may_share_a_name_with_the_lines_own_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``target``/``action`` as details are logged, not a TypeError after the change was made.

    The audit line is written after the Model made the change: a clash of a
    detail's name with a parameter raised there and showed an error page for
    a change that had been made (webredact38's first draft of the
    attachment redaction route did exactly that).
    """
    viewer = Viewer(
        identity=v1.Identity(user=v1.User(user_id="u-ann", username="ann")),
        caller=v1.Caller(user_id="u-ann"),
        token="t",
    )
    with caplog.at_level(logging.INFO, logger="bugless.web.audit"):
        audit(viewer, "redacted", "attachment 3 of issue 7", target="description", action="x")
    (record,) = [r for r in caplog.records if r.name == "bugless.web.audit"]
    assert record.getMessage() == "ann redacted attachment 3 of issue 7"
    assert record.__dict__["target"] == "attachment 3 of issue 7"
    assert record.__dict__["audit_target"] == "description"
    assert record.__dict__["audit_action"] == "x"
