"""What the Model cannot do reaches the bot as the Model said it, not as an outage.

Real services: an extra API frontend on a real ``bugless model serve`` whose
backend lacks the ``watch`` capability (``model_without_watch.py``), on the
stack's database and Authenticator. A Model of an earlier release that does
not serve a method is test_api_viewer_checks'
``test_a_model_before_check_viewers_is_named_to_be_upgraded_first``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, extra_api

from bugless_core.errors import CapabilityMissing
from bugless_dev.processes import spawn

#: ``bugless model serve`` on a backend without the watch capability.
WATCHLESS_MODEL = Path(__file__).with_name("model_without_watch.py")
SERVE = ("model", "serve", "--port", "0")


async def test_a_watch_on_a_backend_that_cannot_watch_is_unimplemented_saying_why(
    bots: Bots, connect_as: ConnectAs, tmp_path: Path
) -> None:
    """UNIMPLEMENTED with the Model's reason and the capability, as the Model answered.

    Before, the API passed the Model's UNIMPLEMENTED on as INTERNAL (a plain
    BuglessError): a bot could not tell a backend without watches from an
    outage, nor read which capability it lacks.
    """
    stack = bots.stack
    ready = tmp_path / "watchless-model.json"
    process = spawn(
        "model-watchless",
        [sys.executable, str(WATCHLESS_MODEL), *SERVE, "--ready-file", str(ready)],
        stack.env,
        tmp_path / "watchless-model.log",
        ready_file=ready,
    )
    watchless = await asyncio.to_thread(stack.wait_started, "model", process)
    try:
        address = stack.client_address("model", "api")
        model = dataclasses.replace(address, port=watchless.port)
        async with extra_api(bots, model=model) as api:
            robot = connect_as("robot", port=api.port)
            component = await robot.create_component(f"Watchless-{secrets.token_hex(3)}")
            issue = await robot.create_issue("Not watched", component.id)
            events = robot.watch(issue_id=issue.id, reconnect=False)
            with pytest.raises(CapabilityMissing) as refused:
                async with asyncio.timeout(30):
                    await anext(events)
            await events.aclose()
    finally:
        await asyncio.to_thread(stack.stop_service, watchless)
    assert refused.value.grpc_status.name == "UNIMPLEMENTED"
    assert refused.value.message == (
        "the postgres backend cannot watch for changes; "
        "check GetServerInfo capabilities before calling Watch"
    )
    assert refused.value.capability == "watch"
