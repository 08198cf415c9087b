"""The web server's "serving HTTP on" line writes an IPv6 address in brackets.

Before, a replica bound to ``::1`` logged ``serving HTTP on ::1:PORT``, which
reads as one address. A :class:`~bugless_web.server.DrainingServer` runs in a
process of its own on ``::1`` (as ``test_gc_settle`` runs one).
"""

from __future__ import annotations

import re
import subprocess
import sys

_PROBE = """
import asyncio, logging
import uvicorn
from bugless_web.server import DrainingServer

async def app(scope, receive, send):
    raise RuntimeError("no request is made")

async def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = uvicorn.Config(app, host="::1", port=0, lifespan="off", log_config=None)
    server = DrainingServer(config, None, 0.0)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1])
    server.should_exit = True
    await serving

asyncio.run(main())
"""


def test_a_replica_on_ipv6_loopback_logs_its_address_in_brackets() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    port = int(done.stdout.split()[-1])
    assert re.search(rf"^serving HTTP on \[::1\]:{port}$", done.stderr, re.MULTILINE), done.stderr
