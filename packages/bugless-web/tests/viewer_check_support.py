"""Viewer check tests' signing in: a person's viewer, as the web makes one per request.

The viewer warning tests and the tests of what makes a check fail time
:func:`~bugless_web.viewer_warnings.viewer_warning` itself rather than a
whole save; shared here rather than one importing it from the other.
"""

from __future__ import annotations

from web_support import PASSWORD

from bugless_core.clients import CURRENT_ASSERTION, call
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer


async def signed_in_viewer(backends: Backends, username: str) -> Viewer:
    """``username`` signed in on ``backends``, their assertion on this task's Model calls.

    What the web does for each request (``optional_viewer``), for tests
    that time :func:`viewer_warning` itself rather than a whole save.
    """
    signed = await call(
        backends.auth.authenticate_password,
        v1.AuthenticatePasswordRequest(username=username, password=PASSWORD),
    )
    viewer = await backends.viewer(signed.token)
    CURRENT_ASSERTION.set(viewer.identity.assertion)
    return viewer
