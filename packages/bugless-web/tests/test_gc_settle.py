"""A serving web replica settles its garbage collector once it listens.

The settling itself is bugless_core's (``bugless_core.garbage_collector``,
tested there); this checks that the web tier's server calls it: a
:class:`~bugless_web.server.DrainingServer` started in a process of its own
has frozen what start-up built and raised the young generation's threshold
by the time it reports that it listens.
"""

from __future__ import annotations

import subprocess
import sys

from bugless_core.garbage_collector import GC_YOUNG_THRESHOLD

_PROBE = """
import asyncio, gc
import uvicorn
from bugless_web.server import DrainingServer

async def app(scope, receive, send):
    raise RuntimeError("no request is made")

async def main():
    before = gc.get_freeze_count(), gc.get_threshold()[0]
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = DrainingServer(config, None, 0.0)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(*before, gc.get_freeze_count(), gc.get_threshold()[0])
    server.should_exit = True
    await serving

asyncio.run(main())
"""


def test_the_web_server_settles_the_collector_once_it_listens() -> None:
    # In a process of its own: freezing this test process would keep its garbage.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    frozen_before, young_before, frozen, young = map(int, out)
    assert frozen_before == 0
    assert young_before != GC_YOUNG_THRESHOLD
    assert frozen > 1000  # the imported modules' objects at least
    assert young == GC_YOUNG_THRESHOLD
